//! The netloom network behind a CNI network: created on first ADD from the
//! config, compared with the config on every later one, and the state lock
//! that makes concurrent plugin processes agree.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::net::IpAddr;
use std::path::Path;

use netloom_engine::model::addr::{from_u128, to_u128};
use netloom_engine::model::{Allocation, ModelError, Network};
use netloom_engine::{Engine, EngineError};
use nix::fcntl::{Flock, FlockArg};

use super::config::{AddrRange, NetConf, NetworkSpec};
use super::error::{code, CniError};

/// The lock file under the state directory.
const LOCK_FILE: &str = "cni.lock";

/// An exclusive lock on the state directory, held until dropped.
pub struct StateLock(#[allow(dead_code)] Flock<File>);

impl StateLock {
    pub fn take(state_dir: &Path) -> Result<StateLock, CniError> {
        let io = |what: &str, e: std::io::Error| {
            CniError::new(
                code::IO_FAILURE,
                format!(
                    "state directory {}: {what}: {e}; make it writable or choose another with \"stateDir\" or NETLOOM_STATE_DIR",
                    state_dir.display()
                ),
            )
        };
        std::fs::create_dir_all(state_dir).map_err(|e| io("create", e))?;
        let path = state_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(&format!("open {LOCK_FILE}"), e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(StateLock)
            .map_err(|(_, errno)| io(&format!("lock {LOCK_FILE}"), errno.into()))
    }
}

/// Opens the engine on the config's state directory (or, served by
/// `netloom serve`, takes the worker's open one).
pub fn open_engine(state_dir: &Path) -> Result<crate::service::EngineRef, CniError> {
    crate::service::engine(state_dir).map_err(CniError::from)
}

/// The network as stored, if it exists.
pub fn find(engine: &mut Engine, name: &str) -> Result<Option<Network>, CniError> {
    match engine.network(name) {
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.model(), Some(ModelError::NoSuchNetwork { .. })) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

thread_local! {
    /// Ids of networks this thread found in the store under the state lock,
    /// and so with their kernel objects made. Only a `netloom serve` worker
    /// lives to ask twice.
    static COMPLETE: std::cell::RefCell<std::collections::HashSet<String>> =
        std::cell::RefCell::new(std::collections::HashSet::new());
}

/// The network named by the config: created (store and kernel) when
/// missing, else checked to match the config. Safe when many plugin
/// processes race: looking up and creating happen under the state lock.
pub fn ensure(
    engine: &mut Engine,
    state_dir: &Path,
    spec: &NetworkSpec,
) -> Result<Network, CniError> {
    // A network this thread already found complete (see below) needs no
    // lock: its id names that network until it is removed, and a network
    // made anew under the same name has another id.
    let memo = COMPLETE.with(|c| !c.borrow().is_empty());
    if let Some(net) = memo
        .then(|| find(engine, &spec.request.name))
        .transpose()?
        .flatten()
    {
        if COMPLETE.with(|c| c.borrow().contains(&net.id)) {
            compare(&net, spec)?;
            return Ok(net);
        }
    }
    // Under the lock even when the network exists: a network another
    // process is creating is in the store before its kernel objects are
    // made, and must not be used until they are.
    let _lock = StateLock::take(state_dir)?;
    if let Some(net) = find(engine, &spec.request.name)? {
        compare(&net, spec)?;
        COMPLETE.with(|c| c.borrow_mut().insert(net.id.clone()));
        return Ok(net);
    }
    let net = engine.create_network(&spec.request).map_err(|e| {
        let mut err = CniError::from(e);
        if err.code == code::KERNEL {
            err.msg = format!("network {:?}: create: {}", spec.request.name, err.msg);
        }
        err
    })?;
    COMPLETE.with(|c| c.borrow_mut().insert(net.id.clone()));
    Ok(net)
}

/// Refuses (code 7) a stored network that differs from the config,
/// naming the difference.
pub fn compare(net: &Network, spec: &NetworkSpec) -> Result<(), CniError> {
    let req = &spec.request;
    let differ = |what: &str, stored: String, asked: String| {
        CniError::config(format!(
            "network {:?} exists with {what} {stored}, but the CNI config asks for {asked}; give the same {what} as the existing network, use another network name, or remove it with `netloom network rm {}`",
            net.name, net.name
        ))
    };
    let mut stored: Vec<String> = net.subnets.iter().map(|s| s.subnet.to_string()).collect();
    let mut asked = req.subnets.clone();
    stored.sort();
    asked.sort();
    if stored != asked {
        return Err(differ("subnets", stored.join(", "), asked.join(", ")));
    }
    if net.driver != req.driver {
        return Err(differ(
            "driver",
            format!("{:?}", net.driver),
            format!("{:?}", req.driver),
        ));
    }
    for gw in &req.gateways {
        let ip: IpAddr = gw.parse().expect("gateways were parsed");
        if !net.subnets.iter().any(|s| s.gateway == Some(ip)) {
            let held: Vec<String> = net
                .subnets
                .iter()
                .filter_map(|s| s.gateway.map(|g| g.to_string()))
                .collect();
            return Err(differ("gateways", held.join(", "), gw.clone()));
        }
    }
    if net.internal != req.internal {
        return Err(differ(
            "internal",
            net.internal.to_string(),
            req.internal.to_string(),
        ));
    }
    for (k, v) in &req.options {
        let have = net.options.get(k).map(String::as_str).unwrap_or("(unset)");
        if have != v {
            return Err(differ(&format!("option {k}"), have.to_string(), v.clone()));
        }
    }
    Ok(())
}

/// The addresses to allocate for an attachment: `requested`, and the picks
/// of [`pick_in_ranges`] for the other families. When `ranges` is not empty
/// the state lock is taken first and returned with them: allocate before
/// dropping it, so that picking and allocating do not interleave with
/// another process doing the same.
pub fn pick_ips(
    engine: &mut Engine,
    state_dir: &Path,
    net: &Network,
    ranges: &[AddrRange],
    requested: &[IpAddr],
) -> Result<(Option<StateLock>, Vec<IpAddr>), CniError> {
    let lock = if ranges.is_empty() {
        None
    } else {
        Some(StateLock::take(state_dir)?)
    };
    let mut ips = requested.to_vec();
    ips.extend(pick_in_ranges(engine, net, ranges, requested)?);
    Ok((lock, ips))
}

/// For each family restricted by `rangeStart`/`rangeEnd` and not already
/// requested, the lowest free address of its range. Call under the state
/// lock, and allocate before releasing it.
pub fn pick_in_ranges(
    engine: &mut Engine,
    net: &Network,
    ranges: &[AddrRange],
    requested: &[IpAddr],
) -> Result<Vec<IpAddr>, CniError> {
    let mut picks = Vec::new();
    let mut allocs: Option<Vec<Allocation>> = None;
    for fam in net.families() {
        if requested
            .iter()
            .any(|ip| netloom_engine::model::Family::of(ip) == fam)
        {
            continue;
        }
        let fam_ranges: Vec<&AddrRange> =
            ranges.iter().filter(|r| r.subnet.family() == fam).collect();
        if fam_ranges.is_empty() {
            continue;
        }
        if allocs.is_none() {
            allocs = Some(engine.allocations(&net.name)?);
        }
        // A set: the scan below looks up every address it passes, and a
        // range's low end fills first.
        let taken: HashSet<u128> = allocs
            .as_ref()
            .expect("just read")
            .iter()
            .map(|a| to_u128(a.address))
            .collect();
        let pick = fam_ranges.iter().find_map(|r| {
            (r.start..=r.end)
                .find(|n| {
                    !taken.contains(n) && {
                        let ip = from_u128(fam, *n);
                        net.check_static(ip).is_ok()
                    }
                })
                .map(|n| from_u128(fam, n))
        });
        match pick {
            Some(ip) => picks.push(ip),
            None => {
                return Err(CniError::new(
                    code::TRY_AGAIN,
                    format!(
                        "network {:?}: no free {fam} address between rangeStart and rangeEnd ({}); release some (DEL or GC) or widen the range",
                        net.name,
                        fam_ranges
                            .iter()
                            .map(|r| format!("{}-{}", from_u128(fam, r.start), from_u128(fam, r.end)))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            }
        }
    }
    Ok(picks)
}

/// How many addresses are still free for dynamic allocation, per family,
/// honouring the config's ranges (for STATUS).
pub fn free_per_family(
    engine: &mut Engine,
    net: &Network,
    ranges: &[AddrRange],
) -> Result<Vec<(netloom_engine::model::Family, u128)>, EngineError> {
    let allocs = engine.allocations(&net.name)?;
    let mut out = Vec::new();
    for fam in net.families() {
        let mut free: u128 = 0;
        let fam_ranges: Vec<&AddrRange> =
            ranges.iter().filter(|r| r.subnet.family() == fam).collect();
        let bounds: Vec<(u128, u128)> = if fam_ranges.is_empty() {
            net.subnets
                .iter()
                .filter(|s| s.family() == fam)
                .map(|s| s.pool_bounds())
                .collect()
        } else {
            fam_ranges.iter().map(|r| (r.start, r.end)).collect()
        };
        for (lo, hi) in bounds {
            if lo > hi {
                continue;
            }
            let used = allocs
                .iter()
                .map(|a| to_u128(a.address))
                .filter(|n| *n >= lo && *n <= hi)
                .count() as u128;
            free = free.saturating_add((hi - lo + 1).saturating_sub(used));
        }
        out.push((fam, free));
    }
    Ok(out)
}

/// STATUS's first steps, shared by both roles: the store opens and reads
/// (else code 50), and the network, if it exists yet, is the one the
/// config describes. `None` when the network does not exist yet.
pub fn for_status(
    conf: &NetConf,
) -> Result<Option<(crate::service::EngineRef, Network, NetworkSpec)>, CniError> {
    let spec = conf.network_spec()?;
    let state = conf.state_dir()?;
    let not_available = |e: CniError| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("netloom cannot serve ADD: {}", e.msg),
        )
    };
    let mut engine = open_engine(&state).map_err(not_available)?;
    let Some(net) = find(&mut engine, &conf.name).map_err(not_available)? else {
        return Ok(None);
    };
    compare(&net, &spec)?;
    Ok(Some((engine, net, spec)))
}
