//! Per-attachment requests: `runtimeConfig` capabilities (`ips`, `mac`,
//! `portMappings`, `aliases`, `bandwidth`) and the legacy `CNI_ARGS` keys
//! `IP` and `MAC`.

use serde_json::{Map, Value};
use std::net::IpAddr;

use netloom_engine::model::{PortMapping, Proto};

use super::config::{Env, NetConf};
use super::error::CniError;

/// Bandwidth limits in bits per second and bits (0 = unlimited), as CNI's
/// `bandwidth` capability gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.ingress_rate == 0 && self.egress_rate == 0
    }
}

#[derive(Debug, Clone, Default)]
pub struct Runtime {
    pub ips: Vec<IpAddr>,
    pub mac: Option<String>,
    pub ports: Vec<PortMapping>,
    pub aliases: Vec<String>,
    pub bandwidth: Option<Limits>,
}

fn bad(key: &str, v: &Value, why: &str) -> CniError {
    CniError::config(format!("runtimeConfig.{key}: {v} is invalid: {why}"))
}

/// The `aliases` capability: this network's names, either as an array or
/// (as Podman sends them) in a map from network name to names.
fn aliases(v: &Value, network: &str) -> Result<Vec<String>, CniError> {
    let list = match v {
        Value::Array(list) => list,
        Value::Object(by_network) => match by_network.get(network) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(bad(
                    "aliases",
                    other,
                    &format!("expected an array of names for network {network:?}"),
                ))
            }
        },
        _ => {
            return Err(bad(
                "aliases",
                v,
                "expected an array of names, or a map from network name to names",
            ))
        }
    };
    list.iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("aliases", a, "expected a string"))
        })
        .collect()
}

/// `10.88.0.5` or `10.88.0.5/24` (the length is the network's business).
fn parse_ip(key: &str, text: &str) -> Result<IpAddr, CniError> {
    text.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|_| {
            bad(
                key,
                &Value::String(text.into()),
                "expected an IP address, e.g. 10.88.0.5 or 10.88.0.5/24",
            )
        })
}

fn port(key: &str, o: &Map<String, Value>, field: &str) -> Result<u16, CniError> {
    match o.get(field).and_then(Value::as_u64) {
        Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(bad(
            key,
            &Value::Object(o.clone()),
            &format!("{field} must be a port number from 1 to 65535"),
        )),
    }
}

fn limit(o: &Map<String, Value>, field: &str) -> Result<u64, CniError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad(
                "bandwidth",
                &Value::Object(o.clone()),
                &format!("{field} must be a non-negative whole number"),
            )
        }),
    }
}

impl Runtime {
    pub fn parse(conf: &NetConf, env: &Env) -> Result<Runtime, CniError> {
        let rc = conf.runtime_config();
        let mut rt = Runtime::default();
        if let Some(v) = rc.get("ips").filter(|v| !v.is_null()) {
            let list = v
                .as_array()
                .ok_or_else(|| bad("ips", v, "expected an array of addresses"))?;
            for ip in list {
                let s = ip
                    .as_str()
                    .ok_or_else(|| bad("ips", ip, "expected a string"))?;
                rt.ips.push(parse_ip("ips", s)?);
            }
        }
        if rt.ips.is_empty() {
            if let Some(list) = env.cni_arg("IP") {
                for s in list.split(',') {
                    rt.ips.push(parse_ip("ips (CNI_ARGS IP)", s)?);
                }
            }
        }
        rt.mac = match rc.get("mac") {
            Some(Value::String(m)) if !m.is_empty() => Some(m.clone()),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                env.cni_arg("MAC").map(str::to_string)
            }
            Some(v) => return Err(bad("mac", v, "expected a string such as 02:42:ac:11:00:02")),
        };
        if let Some(v) = rc.get("portMappings").filter(|v| !v.is_null()) {
            let list = v
                .as_array()
                .ok_or_else(|| bad("portMappings", v, "expected an array"))?;
            for m in list {
                let o = m
                    .as_object()
                    .ok_or_else(|| bad("portMappings", m, "expected an object"))?;
                let proto = match o.get("protocol").and_then(Value::as_str).unwrap_or("tcp") {
                    "tcp" | "TCP" => Proto::Tcp,
                    "udp" | "UDP" => Proto::Udp,
                    "sctp" | "SCTP" => Proto::Sctp,
                    _ => return Err(bad("portMappings", m, "protocol must be tcp, udp or sctp")),
                };
                let host_ip = match o.get("hostIP").and_then(Value::as_str) {
                    None | Some("") => None,
                    Some(s) => Some(parse_ip("portMappings.hostIP", s)?),
                };
                rt.ports.push(PortMapping {
                    host_ip,
                    host_port: port("portMappings", o, "hostPort")?,
                    container_port: port("portMappings", o, "containerPort")?,
                    proto,
                });
            }
        }
        if let Some(v) = rc.get("aliases").filter(|v| !v.is_null()) {
            rt.aliases = aliases(v, &conf.name)?;
        }
        if let Some(v) = rc.get("bandwidth").filter(|v| !v.is_null()) {
            let o = v
                .as_object()
                .ok_or_else(|| bad("bandwidth", v, "expected an object"))?;
            let l = Limits {
                ingress_rate: limit(o, "ingressRate")?,
                ingress_burst: limit(o, "ingressBurst")?,
                egress_rate: limit(o, "egressRate")?,
                egress_burst: limit(o, "egressBurst")?,
            };
            if (l.ingress_rate > 0 && l.ingress_burst == 0)
                || (l.egress_rate > 0 && l.egress_burst == 0)
            {
                return Err(bad(
                    "bandwidth",
                    v,
                    "a rate needs its burst (ingressBurst/egressBurst, in bits)",
                ));
            }
            rt.bandwidth = Some(l).filter(|l| !l.is_unlimited());
        }
        Ok(rt)
    }
}

#[cfg(test)]
mod alias_tests {
    use super::aliases;
    use serde_json::json;

    #[test]
    fn aliases_come_as_a_list_or_by_network() {
        assert_eq!(aliases(&json!(["a", "b"]), "web").unwrap(), ["a", "b"]);
        assert_eq!(
            aliases(&json!({"web": ["c1"], "db": ["x"]}), "web").unwrap(),
            ["c1"]
        );
        assert!(aliases(&json!({"db": ["x"]}), "web").unwrap().is_empty());
        let e = aliases(&json!("web"), "web").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("runtimeConfig.aliases"), "{e}");
        assert!(aliases(&json!({"web": "c1"}), "web").is_err());
        assert!(aliases(&json!([1]), "web").is_err());
    }
}
