//! IPAM mode (`"ipam": {"type": "netloom"}` under another plugin): only
//! addresses, held in netloom's store on a network of driver `null` named
//! after the CNI network. The owner of an attachment's addresses is derived
//! from its container id and interface name.

use serde_json::Value;

use netloom_engine::model::{Lease, Owner};
use netloom_engine::Engine;

use super::config::{Env, NetConf};
use super::error::{code, CniError};
use super::network;
use super::ops::unavailable_if_exhausted;
use super::result::{ip_entry, CniResult};
use super::runtime::Runtime;

/// Prefix of every owner id this mode makes; GC touches only these.
const OWNER_PREFIX: &str = "cni-";

/// FNV-1a, 128 bits.
fn fnv128(bytes: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in bytes {
        h ^= u128::from(*b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// The owner id of (container id, ifname): `cni-` and 32 hex digits.
pub fn owner_id(container_id: &str, ifname: &str) -> String {
    let key = format!("{container_id}\n{ifname}");
    format!("{OWNER_PREFIX}{:032x}", fnv128(key.as_bytes()))
}

fn result_of(conf: &NetConf, leases: &[Lease]) -> Result<Value, CniError> {
    let spec = conf.network_spec()?;
    let mut r = CniResult::default();
    r.add_leases(leases, None);
    for route in &spec.routes {
        r.add_route(route);
    }
    r.merge_dns(&spec.dns);
    Ok(r.to_json(&conf.version))
}

pub fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    let spec = conf.network_spec()?;
    let rt = Runtime::parse(conf, env)?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    let net = network::ensure(&mut engine, &state, &spec)?;
    let owner = owner_id(cid, ifname);
    let held = engine.leases(&net.name, &owner)?;
    if !held.is_empty() {
        // A repeated ADD: the same addresses again.
        return result_of(conf, &held);
    }
    let (_lock, ips) = network::pick_ips(&mut engine, &state, &net, &spec.ranges, &rt.ips)?;
    let leases = engine.allocate(&net.name, &owner, &ips)?;
    result_of(conf, &leases)
}

pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    if network::find(&mut engine, &conf.name)?.is_some() {
        engine.release(&conf.name, &owner_id(cid, ifname))?;
    }
    Ok(())
}

/// The attachment holds addresses, and those prevResult lists in the
/// network's subnets are exactly among them.
pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    let prev = conf.prev_result().ok_or_else(|| {
        CniError::config("CHECK needs prevResult (the cached result of ADD); the runtime passes it")
    })?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    let unknown = || {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "container {cid:?} interface {ifname:?} holds no address on network {:?}; ADD it again",
                conf.name
            ),
        )
    };
    let net = network::find(&mut engine, &conf.name)?.ok_or_else(unknown)?;
    let held = engine.leases(&net.name, &owner_id(cid, ifname))?;
    if held.is_empty() {
        return Err(unknown());
    }
    for v in prev
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some((ip, _)) = ip_entry(v) else {
            return Err(CniError::config(format!(
                "prevResult.ips: {v} has no valid \"address\""
            )));
        };
        if net.subnets.iter().any(|s| s.subnet.contains(&ip)) && !held.iter().any(|l| l.ip == ip) {
            return Err(CniError::new(
                code::DRIFT,
                format!(
                    "container {cid:?} interface {ifname:?}: prevResult has {ip}, but netloom holds {} for it on network {:?}",
                    held.iter().map(|l| l.address.clone()).collect::<Vec<_>>().join(", "),
                    net.name
                ),
            ));
        }
    }
    Ok(())
}

/// Releases the addresses of every attachment this mode made on the
/// network that is not among the valid ones.
pub fn gc_owners(
    engine: &mut Engine,
    network: &str,
    valid: &[(String, String)],
) -> Result<(), CniError> {
    let keep: Vec<String> = valid.iter().map(|(c, i)| owner_id(c, i)).collect();
    let mut stale: Vec<String> = engine
        .allocations(network)?
        .into_iter()
        .filter_map(|a| match a.owner {
            Owner::Endpoint(o) if o.starts_with(OWNER_PREFIX) && !keep.contains(&o) => Some(o),
            _ => None,
        })
        .collect();
    stale.sort();
    stale.dedup();
    for o in stale {
        tracing::info!(network, owner = %o, "GC releases a stale attachment's addresses");
        engine.release(network, &o)?;
    }
    Ok(())
}

pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments()?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    if network::find(&mut engine, &conf.name)?.is_none() {
        return Ok(());
    }
    gc_owners(&mut engine, &conf.name, &valid)
}

pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let Some((mut engine, net, spec)) = network::for_status(conf)? else {
        return Ok(());
    };
    unavailable_if_exhausted(&mut engine, &net, &spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_are_valid_and_distinct() {
        let a = owner_id("c1", "eth0");
        assert_eq!(a.len(), 36);
        netloom_engine::model::network::check_name("owner id", &a).unwrap();
        assert_ne!(a, owner_id("c1", "eth1"));
        assert_ne!(owner_id("a.b", "c"), owner_id("a", "b.c"));
        assert_eq!(a, owner_id("c1", "eth0"));
    }
}
