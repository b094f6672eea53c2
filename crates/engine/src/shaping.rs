//! Bandwidth limits on endpoints (token bucket, both directions).
//!
//! Directions are seen from the container, as in the CNI `bandwidth`
//! capability: ingress is traffic towards the sandbox, egress traffic
//! leaving it. Ingress is shaped by a token bucket filter (TBF) as the root
//! qdisc of the host-side interface (the host transmits into the sandbox
//! through it); egress by one on the sandbox-side interface. Rates are in
//! bits per second and bursts in bits, as runtimes give them; 0 means
//! unlimited. Everything is netlink, in-process: no `tc` is spawned.
//!
//! The limits live in the kernel only: they go with the interfaces when the
//! endpoint is removed.

use serde::{Deserialize, Serialize};

use netloom_kernel::{Netlink, Tbf};
use netloom_model::{Endpoint, ModelError};

use crate::{Engine, EngineError};

/// How long a packet may wait for tokens before it is dropped; the queue
/// limit is what arrives at the rate in this time, plus one burst (as the
/// reference CNI bandwidth plugin sizes it).
pub const QUEUE_LATENCY_MS: u64 = 25;

/// Ethernet header bytes the qdisc counts on top of the MTU.
const ETH_HEADER: u64 = 14;

/// Bandwidth limits of one endpoint, as CNI's `runtimeConfig.bandwidth`
/// spells them: rates in bits per second, bursts in bits; 0 = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Bandwidth {
    /// Traffic towards the sandbox, bits per second.
    pub ingress_rate: u64,
    /// Bucket size for ingress, bits.
    pub ingress_burst: u64,
    /// Traffic leaving the sandbox, bits per second.
    pub egress_rate: u64,
    /// Bucket size for egress, bits.
    pub egress_burst: u64,
}

impl Bandwidth {
    /// No limit in either direction.
    pub fn is_unlimited(&self) -> bool {
        self.ingress_rate == 0 && self.egress_rate == 0
    }
}

/// One direction's limit in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    rate_bytes: u64,
    burst_bytes: u64,
    limit_bytes: u32,
}

/// Which way a limit applies, for messages.
#[derive(Debug, Clone, Copy)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Direction::Ingress => ("ingressRate", "ingressBurst"),
            Direction::Egress => ("egressRate", "egressBurst"),
        }
    }
}

/// Checks a direction's rate and burst (bits) and converts them to bytes;
/// `None` when the direction is unlimited.
fn bucket(
    object: &str,
    dir: Direction,
    rate_bits: u64,
    burst_bits: u64,
) -> Result<Option<Bucket>, ModelError> {
    let (rate_key, burst_key) = dir.keys();
    let invalid = |why: String, fix: String| ModelError::Invalid {
        object: object.to_string(),
        why,
        fix,
    };
    match (rate_bits, burst_bits) {
        (0, 0) => return Ok(None),
        (_, 0) => {
            return Err(invalid(
                format!("{rate_key} is {rate_bits} bit/s but {burst_key} is not set"),
                format!(
                    "give {burst_key} too (bits; at least one full packet, e.g. {})",
                    rate_bits.clamp(12_112, 4_000_000_000)
                ),
            ))
        }
        (0, _) => {
            return Err(invalid(
                format!("{burst_key} is {burst_bits} bits but {rate_key} is not set"),
                format!("give {rate_key} (bits per second) too, or drop {burst_key}"),
            ))
        }
        _ => {}
    }
    let rate_bytes = rate_bits / 8;
    let burst_bytes = burst_bits / 8;
    if rate_bytes == 0 {
        return Err(invalid(
            format!("{rate_key} of {rate_bits} bit/s is under one byte per second"),
            format!("give {rate_key} of at least 8 bit/s"),
        ));
    }
    if burst_bytes > u64::from(u32::MAX) {
        return Err(invalid(
            format!("{burst_key} of {burst_bits} bits is over the kernel's 4 GiB bucket limit"),
            format!(
                "give {burst_key} of at most {} bits",
                u64::from(u32::MAX) * 8
            ),
        ));
    }
    let limit = rate_bytes
        .saturating_mul(QUEUE_LATENCY_MS)
        .div_ceil(1000)
        .saturating_add(burst_bytes);
    Ok(Some(Bucket {
        rate_bytes,
        burst_bytes,
        limit_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
    }))
}

impl Engine {
    /// Limits an endpoint's bandwidth: `bw.ingress_*` (towards the sandbox)
    /// on the host-side interface, `bw.egress_*` (leaving it) on the
    /// sandbox-side interface. A direction at rate 0 has its limit removed.
    /// Replaces earlier limits; all or nothing.
    pub fn shape_endpoint(&mut self, endpoint_id: &str, bw: &Bandwidth) -> Result<(), EngineError> {
        let ep = self.store.endpoint(endpoint_id)?;
        let object = endpoint_label(&ep);
        let ingress = bucket(
            &object,
            Direction::Ingress,
            bw.ingress_rate,
            bw.ingress_burst,
        )?;
        let egress = bucket(&object, Direction::Egress, bw.egress_rate, bw.egress_burst)?;

        let host_ifname = match (&ep.host_ifname, ingress) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(_)) => {
                let driver = self
                    .store
                    .network(&ep.network)
                    .map(|n| n.driver)
                    .unwrap_or_else(|_| "?".into());
                return Err(ModelError::Invalid {
                    object,
                    why: format!(
                        "its network {:?} (driver {driver}) gives it no host-side interface, \
                         so traffic towards the sandbox (ingressRate) cannot be shaped",
                        ep.network
                    ),
                    fix: "limit only egress (egressRate/egressBurst), or use a bridge or ptp \
                          network"
                        .into(),
                }
                .into());
            }
            (None, None) => None,
        };

        let ns = crate::sandbox::open_if_same(&ep.sandbox, ep.sandbox_inode).ok_or_else(|| {
            ModelError::Invalid {
                object: object.clone(),
                why: format!("its sandbox {} no longer exists", ep.sandbox),
                fix: "connect the sandbox again; `netloom gc` removes the stale endpoint".into(),
            }
        })?;
        let mut inside = self.kernel.inside(&ns)?;
        let sb_index = link_of(&mut inside, &ep.ifname, &object, "sandbox-side")?;

        // Host side first; if the sandbox side then fails, the host side
        // gets back what it had.
        let mut host_before = None;
        if let Some(name) = &host_ifname {
            let host = self.kernel.host()?;
            let index = link_of(host, name, &object, "host-side")?;
            host_before = Some((index, current_tbf(host, index, &object)?));
            apply(host, index, name, ingress, &object, Direction::Ingress)?;
        }
        if let Err(e) = apply(
            &mut inside,
            sb_index,
            &ep.ifname,
            egress,
            &object,
            Direction::Egress,
        ) {
            if let Some((index, before)) = host_before {
                if let Ok(host) = self.kernel.host() {
                    let undo = match before {
                        Some(t) => host.set_tbf(index, t.rate, t.burst, t.limit),
                        None => host.delete_root_qdisc(index).map(|_| ()),
                    };
                    if let Err(undo) = undo {
                        tracing::warn!("{object}: could not restore the ingress limit: {undo}");
                    }
                }
            }
            return Err(e);
        }
        tracing::info!(endpoint = %&ep.id[..12.min(ep.id.len())], ?bw, "bandwidth shaped");
        Ok(())
    }

    /// The limits the kernel holds for an endpoint (0 where unlimited),
    /// in the units of [`Bandwidth`]. Bursts read back to within a few
    /// bits (the kernel keeps the bucket as time).
    pub fn endpoint_bandwidth(&mut self, endpoint_id: &str) -> Result<Bandwidth, EngineError> {
        let ep = self.store.endpoint(endpoint_id)?;
        let object = endpoint_label(&ep);
        let mut bw = Bandwidth::default();
        if let Some(name) = &ep.host_ifname {
            let host = self.kernel.host()?;
            let index = link_of(host, name, &object, "host-side")?;
            if let Some(t) = current_tbf(host, index, &object)? {
                bw.ingress_rate = t.rate * 8;
                bw.ingress_burst = t.burst * 8;
            }
        }
        if let Some(ns) = crate::sandbox::open_if_same(&ep.sandbox, ep.sandbox_inode) {
            let mut inside = self.kernel.inside(&ns)?;
            let index = link_of(&mut inside, &ep.ifname, &object, "sandbox-side")?;
            if let Some(t) = current_tbf(&mut inside, index, &object)? {
                bw.egress_rate = t.rate * 8;
                bw.egress_burst = t.burst * 8;
            }
        }
        Ok(bw)
    }
}

fn endpoint_label(ep: &Endpoint) -> String {
    format!(
        "endpoint {} ({} on network {:?})",
        &ep.id[..12.min(ep.id.len())],
        ep.ifname,
        ep.network
    )
}

/// The index of interface `name`, with an error that says which side of
/// which endpoint is missing.
fn link_of(nl: &mut Netlink, name: &str, object: &str, side: &str) -> Result<u32, EngineError> {
    nl.link_index(name).map_err(|e| {
        if e.is_not_found() {
            ModelError::Invalid {
                object: object.to_string(),
                why: format!("its {side} interface {name:?} is missing from the kernel"),
                fix: "`netloom check` reports the drift; reconnect the sandbox".into(),
            }
            .into()
        } else {
            EngineError::kernel(&format!("{object}: find {side} interface {name:?}"), e)
        }
    })
}

/// The TBF now on `index`, if its root qdisc is one.
fn current_tbf(nl: &mut Netlink, index: u32, object: &str) -> Result<Option<Tbf>, EngineError> {
    nl.root_qdisc(index)
        .map(|q| q.and_then(|q| q.tbf))
        .map_err(|e| EngineError::kernel(&format!("{object}: read qdisc"), e))
}

/// Installs (or removes, for `None`) the limit of one direction.
fn apply(
    nl: &mut Netlink,
    index: u32,
    ifname: &str,
    bucket: Option<Bucket>,
    object: &str,
    dir: Direction,
) -> Result<(), EngineError> {
    let (rate_key, burst_key) = dir.keys();
    let Some(b) = bucket else {
        // Unlimited: remove a TBF of ours; leave any other qdisc alone.
        if current_tbf(nl, index, object)?.is_some() {
            nl.delete_root_qdisc(index).map_err(|e| {
                EngineError::kernel(&format!("{object}: remove the {rate_key} limit"), e)
            })?;
        }
        return Ok(());
    };
    let mtu = nl
        .get_link(index)
        .map_err(|e| EngineError::kernel(&format!("{object}: read interface {ifname:?}"), e))?
        .map(|l| u64::from(l.mtu))
        .unwrap_or(1500);
    let packet = mtu + ETH_HEADER;
    if b.burst_bytes < packet {
        return Err(ModelError::Invalid {
            object: object.to_string(),
            why: format!(
                "{burst_key} of {} bits ({} bytes) is smaller than one full packet on \
                 {ifname:?} (MTU {mtu} + {ETH_HEADER} byte header), so every full-size \
                 packet would be dropped",
                b.burst_bytes * 8,
                b.burst_bytes
            ),
            fix: format!("give {burst_key} of at least {} bits", packet * 8),
        }
        .into());
    }
    nl.set_tbf(index, b.rate_bytes, b.burst_bytes, b.limit_bytes)
        .map_err(|e| {
            EngineError::kernel(
                &format!(
                    "{object}: limit {} to {} bit/s on {ifname:?}",
                    match dir {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    },
                    b.rate_bytes * 8
                ),
                e,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cni_runtime_config_keys() {
        let bw: Bandwidth = serde_json::from_str(
            r#"{"ingressRate": 8000000, "ingressBurst": 160000, "egressRate": 16000000}"#,
        )
        .unwrap();
        assert_eq!(
            bw,
            Bandwidth {
                ingress_rate: 8_000_000,
                ingress_burst: 160_000,
                egress_rate: 16_000_000,
                egress_burst: 0,
            }
        );
        assert!(!bw.is_unlimited());
        assert!(Bandwidth::default().is_unlimited());
        let back = serde_json::to_value(bw).unwrap();
        assert_eq!(back["egressRate"], 16_000_000);
    }

    #[test]
    fn converts_bits_to_bytes_and_sizes_the_queue() {
        let b = bucket("ep", Direction::Ingress, 8_000_000, 160_000)
            .unwrap()
            .unwrap();
        assert_eq!(b.rate_bytes, 1_000_000);
        assert_eq!(b.burst_bytes, 20_000);
        // 25 ms at 1 MB/s plus one burst.
        assert_eq!(b.limit_bytes, 25_000 + 20_000);
        assert_eq!(bucket("ep", Direction::Egress, 0, 0).unwrap(), None);
    }

    #[test]
    fn refuses_half_given_limits_naming_the_keys() {
        let e = bucket("ep", Direction::Ingress, 8_000_000, 0).unwrap_err();
        assert!(e.to_string().contains("ingressBurst is not set"), "{e}");
        let e = bucket("ep", Direction::Egress, 0, 80_000).unwrap_err();
        assert!(e.to_string().contains("egressRate is not set"), "{e}");
        let e = bucket("ep", Direction::Egress, 4, 80_000).unwrap_err();
        assert!(e.to_string().contains("under one byte"), "{e}");
        let e = bucket("ep", Direction::Egress, 1000, u64::MAX).unwrap_err();
        assert!(e.to_string().contains("4 GiB"), "{e}");
    }
}
