//! The main plugin (`"type": "netloom"`): ADD, DEL, GC and STATUS over
//! the engine and its drivers. CHECK is in `check.rs`.

use serde_json::{json, Value};
use std::net::IpAddr;
use std::path::Path;

use netloom_engine::model::{Endpoint, Family, Network};
use netloom_engine::{ConnectOptions, Engine};
use netloom_kernel::{IpPrefix, Netlink, Netns, Route};

use super::config::{Env, NetConf, NetworkSpec, RouteSpec};
use super::error::{code, CniError};
use super::network;
use super::result::CniResult;
use super::runtime::Runtime;

/// The endpoints CNI made for (container, ifname) on a network.
pub fn attachment(
    engine: &mut Engine,
    network: &str,
    container_id: &str,
    ifname: &str,
) -> Result<Vec<Endpoint>, CniError> {
    Ok(engine
        .container_endpoints(network, container_id)?
        .into_iter()
        .filter(|e| e.ifname == ifname)
        .collect())
}

/// The default route of a family, as CNI writes it.
fn default_dst(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "0.0.0.0/0"
    } else {
        "::/0"
    }
}

/// The routes the sandbox gets: default routes through the gateways (when
/// the network is a gateway and not internal), then the config's routes
/// (a route without `gw` goes through its family's gateway, if any).
pub fn routes_of(spec: &NetworkSpec, net: &Network, ep: &Endpoint) -> Vec<RouteSpec> {
    let mut out = Vec::new();
    let gateway_of = |f: Family| {
        ep.leases
            .iter()
            .find(|l| l.family == f)
            .and_then(|l| l.gateway)
    };
    if spec.is_gateway && !net.internal {
        for l in &ep.leases {
            if let Some(gw) = l.gateway {
                let dst = netloom_engine::model::Cidr::parse("route", default_dst(&gw))
                    .expect("default routes parse");
                out.push(RouteSpec { dst, gw: Some(gw) });
            }
        }
    }
    for r in &spec.routes {
        let gw = r.gw.or_else(|| gateway_of(r.dst.family()));
        let route = RouteSpec { dst: r.dst, gw };
        if !out.contains(&route) {
            out.push(route);
        }
    }
    out
}

fn kernel_err(what: String) -> impl FnOnce(netloom_kernel::Error) -> CniError {
    move |e| CniError::new(code::KERNEL, format!("{what}: {e}"))
}

/// Adds the config's routes inside the sandbox (one netlink socket there;
/// routes the driver already made are left as they are).
fn install_routes(netns: &str, ifname: &str, routes: &[RouteSpec]) -> Result<(), CniError> {
    if routes.is_empty() {
        return Ok(());
    }
    let what = format!("sandbox {netns}");
    let ns = Netns::open_path(netns).map_err(kernel_err(format!("{what}: open")))?;
    let mut nl = Netlink::open_in(&ns).map_err(kernel_err(format!("{what}: open netlink")))?;
    let idx = nl
        .link_index(ifname)
        .map_err(kernel_err(format!("{what}: find {ifname}")))?;
    for r in routes {
        let dst = IpPrefix::new(r.dst.addr(), r.dst.prefix()).expect("CIDRs are valid prefixes");
        let route = match r.gw {
            Some(gw) => Route::via(dst, gw).dev(idx),
            None => Route::on_link(dst, idx),
        };
        match nl.add_route(&route) {
            Ok(()) => {}
            Err(e) if e.is_already_exists() => {}
            Err(e) => {
                return Err(kernel_err(format!(
                    "{what}: add route {} via {}",
                    r.dst,
                    r.gw.map(|g| g.to_string())
                        .unwrap_or_else(|| ifname.to_string())
                ))(e))
            }
        }
    }
    Ok(())
}

pub fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let netns = env.need("CNI_NETNS", &env.netns)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    if !Path::new(netns).exists() {
        return Err(CniError::env(format!(
            "CNI_NETNS {netns:?} does not exist; give the path of the container's network namespace"
        )));
    }
    let spec = conf.network_spec()?;
    let rt = Runtime::parse(conf, env)?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    // A connect follows (unless refused below).
    engine.get_ready();
    let net = network::ensure(&mut engine, &state, &spec)?;
    if let Some(old) = attachment(&mut engine, &net.name, cid, ifname)?.first() {
        return Err(CniError::config(format!(
            "container {cid:?} already has interface {ifname:?} on network {:?} (in {}); DEL it first, or use another CNI_IFNAME",
            net.name, old.sandbox
        )));
    }
    let ep = {
        // Picking inside a range and allocating must not interleave with
        // another process doing the same.
        let (_lock, ips) = network::pick_ips(&mut engine, &state, &net, &spec.ranges, &rt.ips)?;
        let opts = ConnectOptions {
            ips,
            mac: rt.mac.clone(),
            ifname: Some(ifname.to_string()),
            aliases: rt.aliases.clone(),
            ports: rt.ports.clone(),
            container_id: Some(cid.to_string()),
        };
        engine.connect_to(&net, netns, &opts)?
    };
    let routes = routes_of(&spec, &net, &ep);
    let extra: Vec<RouteSpec> = routes
        .iter()
        .filter(|r| spec.routes.iter().any(|s| s.dst == r.dst))
        .cloned()
        .collect();
    if let Err(e) =
        install_routes(netns, ifname, &extra).and_then(|()| shape(&mut engine, &ep, &rt))
    {
        if let Err(undo) = engine.disconnect_endpoint(&ep) {
            tracing::warn!("undo ADD of {cid}: {undo}; `netloom gc` will finish it");
        }
        return Err(e);
    }

    let mut result = CniResult::from_prev(conf.prev_result())?;
    if let Some(host) = &ep.host_ifname {
        let mut iface = json!({ "name": host });
        if let Some(mac) = engine.host_link_mac(host) {
            iface["mac"] = json!(mac);
        }
        result.add_interface(iface);
    }
    let mut inside = json!({ "name": ifname, "mac": ep.mac, "sandbox": netns });
    if let Some(mtu) = net.options.get("mtu").and_then(|m| m.parse::<u32>().ok()) {
        inside["mtu"] = json!(mtu);
    }
    let idx = result.add_interface(inside);
    result.add_leases(&ep.leases, Some(idx));
    for r in &routes {
        result.add_route(r);
    }
    result.merge_dns(&spec.dns);
    Ok(result.to_json(&conf.version))
}

/// Applies the `bandwidth` capability's limits to the endpoint.
fn shape(engine: &mut Engine, ep: &Endpoint, rt: &Runtime) -> Result<(), CniError> {
    let Some(l) = rt.bandwidth else {
        return Ok(());
    };
    let bw = netloom_engine::shaping::Bandwidth {
        ingress_rate: l.ingress_rate,
        ingress_burst: l.ingress_burst,
        egress_rate: l.egress_rate,
        egress_burst: l.egress_burst,
    };
    engine.shape_endpoint(&ep.id, &bw).map_err(CniError::from)
}

pub fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let cid = env.need("CNI_CONTAINERID", &env.container_id)?;
    let ifname = env.need("CNI_IFNAME", &env.ifname)?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    if network::find(&mut engine, &conf.name)?.is_none() {
        return Ok(());
    }
    for ep in attachment(&mut engine, &conf.name, cid, ifname)? {
        engine.disconnect_endpoint(&ep)?;
    }
    Ok(())
}

/// Removes every endpoint CNI made on the network whose (container id,
/// ifname) is not among the valid attachments. Endpoints made otherwise
/// (the CLI, Docker) are left alone.
pub fn gc(conf: &NetConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments()?;
    let state = conf.state_dir()?;
    let mut engine = network::open_engine(&state)?;
    if network::find(&mut engine, &conf.name)?.is_none() {
        return Ok(());
    }
    for ep in engine.endpoints(Some(&conf.name))? {
        let Some(cid) = ep.container_id.as_deref() else {
            continue;
        };
        if !valid.iter().any(|(c, i)| c == cid && *i == ep.ifname) {
            tracing::info!(network = %conf.name, container = cid, ifname = %ep.ifname, "GC removes a stale attachment");
            engine.disconnect_endpoint(&ep)?;
        }
    }
    super::ipam::gc_owners(&mut engine, &conf.name, &valid)
}

/// Whether ADD can be served: the store opens and reads, the network (if
/// it exists) still has its bridge, and addresses are left.
pub fn status(conf: &NetConf) -> Result<(), CniError> {
    let Some((mut engine, net, spec)) = network::for_status(conf)? else {
        return Ok(());
    };
    if net.driver == "bridge" {
        let br = netloom_engine::drivers::bridge::bridge_name(&net);
        let present = Netlink::open_current()
            .ok()
            .and_then(|mut nl| nl.get_link(br.as_str()).ok())
            .flatten()
            .is_some();
        if !present {
            return Err(CniError::new(
                code::LIMITED,
                format!(
                    "network {:?}: its bridge {br} is gone, so attached containers are cut off; `netloom check` shows the drift, and removing and re-adding the network restores it",
                    net.name
                ),
            ));
        }
    }
    unavailable_if_exhausted(&mut engine, &net, &spec)
}

/// STATUS's answer when a family has no free address left: code 50, as
/// ADD cannot be served; the containers already attached are not
/// affected, which is what 51 would say.
pub fn unavailable_if_exhausted(
    engine: &mut Engine,
    net: &Network,
    spec: &NetworkSpec,
) -> Result<(), CniError> {
    let free = network::free_per_family(engine, net, &spec.ranges).map_err(|e| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("netloom cannot serve ADD: {e}"),
        )
    })?;
    if let Some((fam, _)) = free.iter().find(|(_, n)| *n == 0) {
        return Err(CniError::new(
            code::NOT_AVAILABLE,
            format!(
                "network {:?}: no free {fam} address is left, so ADD would fail; DEL or GC unused attachments, or widen the range",
                net.name
            ),
        ));
    }
    Ok(())
}
