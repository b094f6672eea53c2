//! CHECK for the main plugin: the attachment's record, then its interface,
//! addresses and routes read back from the sandbox's kernel state and
//! compared with prevResult.

use serde_json::Value;
use std::net::IpAddr;

use netloom_kernel::{Family as KFamily, Netlink, Netns};

use super::config::{Env, NetConf};
use super::error::{code, CniError};
use super::network;
use super::ops::attachment;
use super::result::{ip_entry, route_entry};

fn drift(msg: String) -> CniError {
    CniError::new(code::DRIFT, msg)
}

pub fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let netns = env.need("CNI_NETNS", &env.netns)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    let prev = conf.prev_result().ok_or_else(|| {
        CniError::config(
            "CHECK needs prevResult (the cached result of ADD); the runtime passes it".to_string(),
        )
    })?;
    let spec = conf.network_spec()?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    let net = network::find(&mut engine, &conf.name)?.ok_or_else(|| {
        CniError::new(
            code::UNKNOWN_CONTAINER,
            format!(
                "network {:?} does not exist, so container {cid:?} is not attached to it; ADD it again",
                conf.name
            ),
        )
    })?;
    network::compare(&net, &spec)?;
    let ep = attachment(&mut engine, &net.name, cid, ifname)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            CniError::new(
                code::UNKNOWN_CONTAINER,
                format!(
                    "container {cid:?} has no interface {ifname:?} on network {:?}; ADD it again",
                    net.name
                ),
            )
        })?;
    let what = format!("container {cid:?} interface {ifname:?} in {netns}");
    let kerr = |step: &str, e: netloom_kernel::Error| {
        CniError::new(code::KERNEL, format!("{what}: {step}: {e}"))
    };
    let ns = Netns::open_path(netns).map_err(|e| kerr("open the namespace", e))?;
    let mut nl = Netlink::open_in(&ns).map_err(|e| kerr("open netlink", e))?;
    let link = nl
        .get_link(ifname)
        .map_err(|e| kerr("read the interface", e))?
        .ok_or_else(|| drift(format!("{what}: the interface is missing")))?;
    let mac = link.mac.map(|m| m.to_string()).unwrap_or_default();
    // With mac_check=false a later plugin (tuning) may set the MAC; then
    // prevResult, checked below, is the only authority on it.
    let mac_checked = net.driver != "bridge"
        || netloom_engine::drivers::bridge::mac_checked(&net).unwrap_or(true);
    if mac_checked && !mac.eq_ignore_ascii_case(&ep.mac) {
        return Err(drift(format!(
            "{what}: MAC is {mac}, but netloom made it with {}",
            ep.mac
        )));
    }
    if !link.up {
        return Err(drift(format!("{what}: the interface is down")));
    }

    // The interface as prevResult names it, and its index there.
    let interfaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let our_index = interfaces.iter().position(|i| {
        i.get("name").and_then(Value::as_str) == Some(ifname)
            && i.get("sandbox")
                .and_then(Value::as_str)
                .is_none_or(|s| s == netns)
    });
    if let Some(i) = our_index {
        if let Some(m) = interfaces[i].get("mac").and_then(Value::as_str) {
            if !m.eq_ignore_ascii_case(&mac) {
                return Err(drift(format!(
                    "{what}: MAC is {mac}, but prevResult says {m}"
                )));
            }
        }
    }

    let have: Vec<(IpAddr, u8)> = nl
        .list_addresses(Some(link.index))
        .map_err(|e| kerr("read its addresses", e))?
        .iter()
        .map(|a| (a.prefix.addr(), a.prefix.prefix_len()))
        .collect();
    let ours = |v: &Value| match v.get("interface").and_then(Value::as_u64) {
        Some(i) => Some(i as usize) == our_index,
        // Without an interface index, an address in the network is ours.
        None => {
            ip_entry(v).is_some_and(|(ip, _)| net.subnets.iter().any(|s| s.subnet.contains(&ip)))
        }
    };
    let prev_ips = prev
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for v in prev_ips.iter().filter(|v| ours(v)) {
        let (ip, len) = ip_entry(v).ok_or_else(|| {
            CniError::config(format!("prevResult.ips: {v} has no valid \"address\""))
        })?;
        if !have.contains(&(ip, len)) {
            return Err(drift(format!(
                "{what}: address {ip}/{len} from prevResult is not on the interface (it has {})",
                have.iter()
                    .map(|(a, l)| format!("{a}/{l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    for l in &ep.leases {
        let (ip, len) = netloom_engine::drivers::bridge::lease_prefix(&l.address)?;
        if !have.contains(&(ip, len)) {
            return Err(drift(format!(
                "{what}: address {} that netloom allocated is not on the interface",
                l.address
            )));
        }
    }

    let mut routes = nl
        .list_routes(KFamily::Ipv4)
        .map_err(|e| kerr("read its routes", e))?;
    routes.extend(
        nl.list_routes(KFamily::Ipv6)
            .map_err(|e| kerr("read its routes", e))?,
    );
    for v in prev
        .get("routes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (dst, gw) = route_entry(v).ok_or_else(|| {
            CniError::config(format!(
                "prevResult.routes: {v} has no valid \"dst\"/\"gw\""
            ))
        })?;
        let (dst_ip, dst_len) = dst
            .split_once('/')
            .and_then(|(a, l)| Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?)))
            .ok_or_else(|| CniError::config(format!("prevResult.routes: {dst:?} is not a CIDR")))?;
        let found = routes.iter().any(|r| {
            r.dst.addr() == dst_ip
                && r.dst.prefix_len() == dst_len
                && gw.is_none_or(|g| r.gateway == Some(g))
        });
        if !found {
            return Err(drift(format!(
                "{what}: route to {dst}{} from prevResult is missing in the sandbox",
                gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}
