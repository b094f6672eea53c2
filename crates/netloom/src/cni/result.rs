//! CNI results: built from endpoints and leases, merged onto a chained
//! `prevResult`, and printed in the version the config asks for.
//!
//! Shapes: 0.3.x and 0.4.0 carry `"version": "4"|"6"` in every `ips` entry;
//! 1.x does not. Interface `mtu`, `socketPath` and `pciID` and route `mtu`,
//! `advmss`, `priority`, `table` and `scope` exist from 1.1.0 on.

use serde_json::{json, Map, Value};
use std::net::IpAddr;

use netloom_engine::model::Lease;

use super::config::{parse_version, RouteSpec};
use super::error::CniError;

/// A result being built: its lists as JSON values, so entries of a
/// prevResult pass through with every field they had.
#[derive(Debug, Clone, Default)]
pub struct CniResult {
    pub interfaces: Vec<Value>,
    pub ips: Vec<Value>,
    pub routes: Vec<Value>,
    pub dns: Map<String, Value>,
}

fn list(v: &Value, key: &str) -> Result<Vec<Value>, CniError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(other) => Err(CniError::config(format!(
            "prevResult.{key}: {other} is not an array; pass the previous plugin's result unchanged"
        ))),
    }
}

impl CniResult {
    /// A result starting from the previous plugin's (any supported shape).
    pub fn from_prev(prev: Option<&Value>) -> Result<CniResult, CniError> {
        let Some(prev) = prev else {
            return Ok(CniResult::default());
        };
        if !prev.is_object() {
            return Err(CniError::config(format!(
                "prevResult: {prev} is not an object; pass the previous plugin's result unchanged"
            )));
        }
        Ok(CniResult {
            interfaces: list(prev, "interfaces")?,
            ips: list(prev, "ips")?,
            routes: list(prev, "routes")?,
            dns: prev
                .get("dns")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// Appends an interface; returns its index in `interfaces`.
    pub fn add_interface(&mut self, iface: Value) -> usize {
        self.interfaces.push(iface);
        self.interfaces.len() - 1
    }

    /// Appends the leases as `ips` entries, on interface `iface` if given.
    pub fn add_leases(&mut self, leases: &[Lease], iface: Option<usize>) {
        for l in leases {
            let mut ip = json!({ "address": l.address });
            if let Some(gw) = l.gateway {
                ip["gateway"] = json!(gw.to_string());
            }
            if let Some(i) = iface {
                ip["interface"] = json!(i);
            }
            self.ips.push(ip);
        }
    }

    /// Appends a route unless an equal one is there.
    pub fn add_route(&mut self, r: &RouteSpec) {
        let mut v = json!({ "dst": r.dst.to_string() });
        if let Some(gw) = r.gw {
            v["gw"] = json!(gw.to_string());
        }
        if !self.routes.contains(&v) {
            self.routes.push(v);
        }
    }

    /// Adds the config's DNS settings to what a previous plugin reported.
    pub fn merge_dns(&mut self, dns: &Map<String, Value>) {
        for (k, v) in dns {
            self.dns.insert(k.clone(), v.clone());
        }
    }

    /// The result as printed for `version`.
    pub fn to_json(&self, version: &str) -> Value {
        let v = parse_version(version).unwrap_or((1, 1, 0));
        let legacy = v < (1, 0, 0);
        let v11 = v >= (1, 1, 0);
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut i = i.clone();
                if let (Some(o), false) = (i.as_object_mut(), v11) {
                    for k in ["mtu", "socketPath", "pciID"] {
                        o.remove(k);
                    }
                }
                i
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut ip = ip.clone();
                if let Some(o) = ip.as_object_mut() {
                    if legacy {
                        let family = o
                            .get("address")
                            .and_then(Value::as_str)
                            .and_then(|a| a.split('/').next())
                            .and_then(|a| a.parse::<IpAddr>().ok())
                            .map(|a| if a.is_ipv4() { "4" } else { "6" });
                        if let Some(f) = family {
                            o.insert("version".into(), json!(f));
                        }
                    } else {
                        o.remove("version");
                    }
                }
                ip
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let (Some(o), false) = (r.as_object_mut(), v11) {
                    for k in ["mtu", "advmss", "priority", "table", "scope"] {
                        o.remove(k);
                    }
                }
                r
            })
            .collect();
        let mut out = json!({ "cniVersion": version });
        if !interfaces.is_empty() {
            out["interfaces"] = Value::Array(interfaces);
        }
        out["ips"] = Value::Array(ips);
        if !routes.is_empty() {
            out["routes"] = Value::Array(routes);
        }
        if !self.dns.is_empty() {
            out["dns"] = Value::Object(self.dns.clone());
        }
        out
    }
}

/// An `ips` entry's address as (ip, prefix length).
pub fn ip_entry(v: &Value) -> Option<(IpAddr, u8)> {
    let (a, l) = v.get("address")?.as_str()?.split_once('/')?;
    Some((a.parse().ok()?, l.parse().ok()?))
}

/// A `routes` entry as (dst, gw).
pub fn route_entry(v: &Value) -> Option<(String, Option<IpAddr>)> {
    let dst = v.get("dst")?.as_str()?.to_string();
    let gw = match v.get("gw") {
        Some(Value::String(g)) => Some(g.parse().ok()?),
        _ => None,
    };
    Some((dst, gw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_per_version() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/x", "mtu": 1400}],
            "ips": [{"address": "10.1.0.5/24", "interface": 0}, {"address": "fd00::5/64", "version": "6"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}],
        });
        let r = CniResult::from_prev(Some(&prev)).unwrap();
        let old = r.to_json("0.4.0");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["interfaces"][0].get("mtu").is_none());
        assert!(old["routes"][0].get("priority").is_none());
        let new = r.to_json("1.1.0");
        assert!(new["ips"][1].get("version").is_none());
        assert_eq!(new["interfaces"][0]["mtu"], 1400);
        assert_eq!(new["routes"][0]["priority"], 5);
        assert_eq!(new["cniVersion"], "1.1.0");
        assert!(new.get("dns").is_none());
        assert_eq!(
            ip_entry(&new["ips"][0]),
            Some(("10.1.0.5".parse().unwrap(), 24))
        );
    }
}
