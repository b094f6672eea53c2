//! The CNI environment and network configuration, read into what netloom
//! needs. Unknown keys are ignored, as the spec asks; a known key with a bad
//! value is refused with code 7 naming the key and the value.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use netloom_engine::model::addr::{to_u128, Cidr, Family};
use netloom_engine::model::endpoint::check_ifname;
use netloom_engine::model::network::check_name;
use netloom_engine::model::NetworkRequest;

use super::error::{code, CniError};

/// Versions of the spec netloom speaks, oldest first.
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest version: used when the config's version is unknown.
pub const LATEST: &str = "1.1.0";

/// A spec version, comparable.
pub type Version = (u32, u32, u32);

pub fn parse_version(text: &str) -> Option<Version> {
    let mut it = text.split('.').map(|p| p.parse::<u32>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

/// The CNI_* environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// `CNI_ARGS` as KEY=VALUE pairs.
    pub args: Vec<(String, String)>,
}

thread_local! {
    /// The variables of a plugin call served by `netloom serve`, read
    /// instead of the process's own environment.
    static SERVED_VARS: std::cell::RefCell<Option<BTreeMap<String, String>>> =
        const { std::cell::RefCell::new(None) };
}

/// The variables a plugin call reads (`CNI_*`, `NETLOOM_STATE_DIR`).
pub const VARS: [&str; 7] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "NETLOOM_STATE_DIR",
];

/// Runs `f` with `vars` as the calling thread's environment for [`var`].
pub fn with_vars<R>(vars: BTreeMap<String, String>, f: impl FnOnce() -> R) -> R {
    SERVED_VARS.with(|v| *v.borrow_mut() = Some(vars));
    let r = f();
    SERVED_VARS.with(|v| v.borrow_mut().take());
    r
}

pub fn var(name: &str) -> Option<String> {
    SERVED_VARS
        .with(|v| v.borrow().as_ref().map(|vars| vars.get(name).cloned()))
        .unwrap_or_else(|| std::env::var(name).ok())
        .filter(|v| !v.is_empty())
}

impl Env {
    pub fn read() -> Result<Env, CniError> {
        let mut env = Env {
            command: var("CNI_COMMAND").unwrap_or_default(),
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args: Vec::new(),
        };
        if let Some(args) = var("CNI_ARGS") {
            for pair in args.split(';').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| {
                    CniError::env(format!(
                        "CNI_ARGS: {pair:?} is not KEY=VALUE; give e.g. IgnoreUnknown=1;IP=10.88.0.5"
                    ))
                })?;
                env.args.push((k.to_string(), v.to_string()));
            }
        }
        if let Some(id) = &env.container_id {
            let ok = id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && id.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(CniError::env(format!(
                    "CNI_CONTAINERID {id:?} is invalid: it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'"
                )));
            }
        }
        if let Some(ifname) = &env.ifname {
            check_ifname(ifname).map_err(|e| {
                CniError::env(format!(
                    "CNI_IFNAME: {e}; give a valid interface name such as eth0"
                ))
            })?;
        }
        Ok(env)
    }

    /// A variable the command needs: refused with code 4 when unset.
    pub fn need<'a>(&'a self, name: &str, value: &'a Option<String>) -> Result<&'a str, CniError> {
        value.as_deref().ok_or_else(|| {
            CniError::env(format!(
                "{name} is not set; CNI_COMMAND={} needs it (the container runtime sets it)",
                self.command
            ))
        })
    }

    pub fn cni_arg(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The network configuration on stdin.
#[derive(Debug, Clone)]
pub struct NetConf {
    pub raw: Map<String, Value>,
    pub version: String,
    pub name: String,
    /// Whether netloom runs as the IPAM plugin of another plugin.
    pub ipam_mode: bool,
}

fn bad(key: &str, value: &Value, why: &str) -> CniError {
    CniError::config(format!("config key {key:?}: {value} is invalid: {why}"))
}

fn get_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(bad(key, v, "expected a string")),
    }
}

fn get_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(key, v, "expected true or false")),
    }
}

fn get_ip(obj: &Map<String, Value>, key: &str) -> Result<Option<IpAddr>, CniError> {
    match get_str(obj, key)? {
        None => Ok(None),
        Some(s) => s
            .parse::<IpAddr>()
            .map(Some)
            .map_err(|_| bad(key, &obj[key], "expected an IPv4 or IPv6 address")),
    }
}

fn get_array<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], CniError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(bad(key, v, "expected an array")),
    }
}

fn as_object<'a>(key: &str, v: &'a Value) -> Result<&'a Map<String, Value>, CniError> {
    v.as_object()
        .ok_or_else(|| bad(key, v, "expected an object"))
}

/// A restriction of dynamic allocation to `[start, end]` inside a subnet
/// (`rangeStart`/`rangeEnd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrRange {
    pub subnet: Cidr,
    pub start: u128,
    pub end: u128,
}

/// One route a config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: Cidr,
    pub gw: Option<IpAddr>,
}

/// What the config says about the network.
#[derive(Debug, Clone)]
pub struct NetworkSpec {
    pub request: NetworkRequest,
    /// Ranges narrower than their subnet.
    pub ranges: Vec<AddrRange>,
    pub routes: Vec<RouteSpec>,
    /// The result's `dns` object (empty when the config has none).
    pub dns: Map<String, Value>,
    /// Whether sandboxes get a default route through the gateway.
    pub is_gateway: bool,
}

impl NetConf {
    pub fn parse(stdin: &[u8]) -> Result<NetConf, CniError> {
        let v: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("the network configuration on stdin is not JSON: {e}"),
            )
        })?;
        let Value::Object(raw) = v else {
            return Err(CniError::new(
                code::DECODE,
                "the network configuration on stdin is not a JSON object",
            ));
        };
        let version = match raw.get("cniVersion") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => {
                return Err(CniError::new(
                    code::INCOMPATIBLE_VERSION,
                    format!(
                        "the network configuration has no cniVersion; give one of {}",
                        SUPPORTED.join(", ")
                    ),
                ))
            }
            Some(v) => return Err(bad("cniVersion", v, "expected a string such as \"1.1.0\"")),
        };
        if !SUPPORTED.contains(&version.as_str()) {
            return Err(CniError::new(
                code::INCOMPATIBLE_VERSION,
                format!(
                    "incompatible CNI version {version:?}: netloom supports {}",
                    SUPPORTED.join(", ")
                ),
            ));
        }
        let name = get_str(&raw, "name")?
            .ok_or_else(|| {
                CniError::config(
                    "the network configuration has no \"name\"; give the network's name",
                )
            })?
            .to_string();
        check_name("network name", &name)
            .map_err(|e| CniError::config(format!("config key \"name\": {e}")))?;
        let plugin = get_str(&raw, "type")?.unwrap_or("netloom");
        let ipam_type = match raw.get("ipam") {
            Some(Value::Object(ipam)) => get_str(ipam, "type")?.map(str::to_string),
            None | Some(Value::Null) => None,
            Some(v) => return Err(bad("ipam", v, "expected an object")),
        };
        let ipam_mode = plugin != "netloom" && ipam_type.as_deref() == Some("netloom");
        if !ipam_mode {
            if let Some(t) = ipam_type.filter(|t| t != "netloom") {
                return Err(CniError::config(format!(
                    "config key \"ipam\": type {t:?} is not supported under netloom, which allocates addresses itself; drop \"ipam\" or give \"type\": \"netloom\""
                )));
            }
        }
        Ok(NetConf {
            raw,
            version,
            name,
            ipam_mode,
        })
    }

    pub fn at_least(&self, v: Version) -> bool {
        parse_version(&self.version).is_some_and(|c| c >= v)
    }

    /// The `ipam` object, or an empty one.
    pub fn ipam(&self) -> Map<String, Value> {
        match self.raw.get("ipam") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    /// `stateDir` (in `ipam` in IPAM mode, or top level), else
    /// `NETLOOM_STATE_DIR`, else the default.
    pub fn state_dir(&self) -> Result<PathBuf, CniError> {
        let ipam = self.ipam();
        let given = match get_str(&ipam, "stateDir")? {
            Some(d) => Some(d.to_string()),
            None => get_str(&self.raw, "stateDir")?.map(str::to_string),
        };
        Ok(PathBuf::from(
            given
                .or_else(|| var("NETLOOM_STATE_DIR"))
                .unwrap_or_else(|| netloom_engine::DEFAULT_STATE_DIR.to_string()),
        ))
    }

    pub fn prev_result(&self) -> Option<&Value> {
        self.raw.get("prevResult").filter(|v| !v.is_null())
    }

    pub fn runtime_config(&self) -> Map<String, Value> {
        match self.raw.get("runtimeConfig") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    /// GC's `cni.dev/valid-attachments` (or the older `cni.dev/attachments`):
    /// (container id, ifname) pairs.
    pub fn valid_attachments(&self) -> Result<Vec<(String, String)>, CniError> {
        let key = if self.raw.contains_key("cni.dev/valid-attachments") {
            "cni.dev/valid-attachments"
        } else {
            "cni.dev/attachments"
        };
        let mut out = Vec::new();
        for a in get_array(&self.raw, key)? {
            let o = as_object(key, a)?;
            let cid = get_str(o, "containerID")?
                .ok_or_else(|| bad(key, a, "each attachment needs \"containerID\""))?;
            let ifname = get_str(o, "ifname")?
                .ok_or_else(|| bad(key, a, "each attachment needs \"ifname\""))?;
            out.push((cid.to_string(), ifname.to_string()));
        }
        Ok(out)
    }

    /// The network as the config describes it. Address keys (`subnets`,
    /// `subnet`, `ranges`, `gateway`, `routes`) are read from `ipam` when it
    /// has them, else from the top level; `runtimeConfig.ipRanges` replaces
    /// the ranges.
    pub fn network_spec(&self) -> Result<NetworkSpec, CniError> {
        let ipam = self.ipam();
        let has_addr_keys = |o: &Map<String, Value>| {
            ["subnets", "subnet", "ranges"]
                .iter()
                .any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
        };
        let addr = if has_addr_keys(&ipam) || self.ipam_mode {
            &ipam
        } else {
            &self.raw
        };
        let mut req = NetworkRequest {
            name: self.name.clone(),
            ..Default::default()
        };
        let mut ranges = Vec::new();
        let rc = self.runtime_config();
        let range_sets: Vec<Value> = match rc.get("ipRanges") {
            Some(Value::Array(a)) if !a.is_empty() => a.clone(),
            _ => get_array(addr, "ranges")?.to_vec(),
        };
        let mut entries: Vec<Map<String, Value>> = Vec::new();
        let mut set_families: Vec<Family> = Vec::new();
        for set in &range_sets {
            let list = set.as_array().ok_or_else(|| {
                bad(
                    "ranges",
                    set,
                    "expected an array of range sets, each an array of ranges",
                )
            })?;
            let mut fam: Option<Family> = None;
            for r in list {
                let o = as_object("ranges", r)?.clone();
                let s = get_str(&o, "subnet")?
                    .ok_or_else(|| bad("ranges", r, "each range needs \"subnet\""))?;
                let c = Cidr::parse("subnet", s)
                    .map_err(|e| CniError::config(format!("config key \"ranges\": {e}")))?;
                if fam.is_some_and(|f| f != c.family()) {
                    return Err(bad("ranges", set, "a range set mixes IPv4 and IPv6"));
                }
                fam = Some(c.family());
                entries.push(o);
            }
            if let Some(f) = fam {
                if set_families.contains(&f) {
                    return Err(bad(
                        "ranges",
                        &Value::Array(range_sets.clone()),
                        &format!("two {f} range sets: netloom gives one address per family; put the {f} ranges in one set"),
                    ));
                }
                set_families.push(f);
            }
        }
        for s in get_array(addr, "subnets")? {
            match s {
                Value::String(_) => {
                    let mut o = Map::new();
                    o.insert("subnet".into(), s.clone());
                    entries.push(o);
                }
                Value::Object(o) => entries.push(o.clone()),
                v => {
                    return Err(bad(
                        "subnets",
                        v,
                        "expected subnet strings or {\"subnet\": ...} objects",
                    ))
                }
            }
        }
        if let Some(s) = get_str(addr, "subnet")? {
            let mut o = Map::new();
            o.insert("subnet".into(), Value::String(s.to_string()));
            if let Some(g) = addr.get("gateway") {
                o.insert("gateway".into(), g.clone());
            }
            for k in ["rangeStart", "rangeEnd"] {
                if let Some(v) = addr.get(k) {
                    o.insert(k.into(), v.clone());
                }
            }
            entries.push(o);
        }
        if entries.is_empty() {
            return Err(CniError::config(format!(
                "network {:?}: the config gives no subnet; add e.g. \"subnets\": [\"10.88.0.0/24\"] (or \"ranges\": [[{{\"subnet\": \"10.88.0.0/24\"}}]])",
                self.name
            )));
        }
        for o in &entries {
            let text = get_str(o, "subnet")?.ok_or_else(|| {
                bad(
                    "subnets",
                    &Value::Object(o.clone()),
                    "each entry needs \"subnet\"",
                )
            })?;
            let subnet = Cidr::parse("subnet", text)
                .map_err(|e| CniError::config(format!("config key \"subnet\": {e}")))?;
            req.subnets.push(subnet.to_string());
            if let Some(gw) = get_ip(o, "gateway")? {
                req.gateways.push(gw.to_string());
            }
            let start = get_ip(o, "rangeStart")?;
            let end = get_ip(o, "rangeEnd")?;
            if start.is_some() || end.is_some() {
                let (lo, hi) = subnet.host_bounds();
                let check = |key: &str, ip: IpAddr| -> Result<u128, CniError> {
                    let n = to_u128(ip);
                    if !subnet.contains(&ip) || n < lo || n > hi {
                        return Err(bad(
                            key,
                            &Value::String(ip.to_string()),
                            &format!("it is not a host address of subnet {subnet}"),
                        ));
                    }
                    Ok(n)
                };
                let a = start
                    .map(|ip| check("rangeStart", ip))
                    .transpose()?
                    .unwrap_or(lo);
                let b = end
                    .map(|ip| check("rangeEnd", ip))
                    .transpose()?
                    .unwrap_or(hi);
                if a > b {
                    return Err(bad(
                        "rangeEnd",
                        &Value::String(end.map(|e| e.to_string()).unwrap_or_default()),
                        "it comes before rangeStart",
                    ));
                }
                ranges.push(AddrRange {
                    subnet,
                    start: a,
                    end: b,
                });
            }
        }
        if let Some(gw) = get_ip(addr, "gateway")? {
            if get_str(addr, "subnet")?.is_none() && !req.gateways.contains(&gw.to_string()) {
                req.gateways.push(gw.to_string());
            }
        }
        let mut routes = Vec::new();
        for r in get_array(addr, "routes")? {
            let o = as_object("routes", r)?;
            let dst =
                get_str(o, "dst")?.ok_or_else(|| bad("routes", r, "each route needs \"dst\""))?;
            let dst = Cidr::parse("route destination", dst)
                .map_err(|e| CniError::config(format!("config key \"routes\": {e}")))?;
            let gw = get_ip(o, "gw")?;
            if gw.is_some_and(|g| Family::of(&g) != dst.family()) {
                return Err(bad("routes", r, "dst and gw are of different families"));
            }
            routes.push(RouteSpec { dst, gw });
        }

        req.driver = if self.ipam_mode {
            "null".into()
        } else {
            get_str(&self.raw, "driver")?
                .unwrap_or("bridge")
                .to_string()
        };
        if !self.ipam_mode && !["bridge", "ptp", "macvlan", "ipvlan"].contains(&req.driver.as_str())
        {
            return Err(bad(
                "driver",
                &self.raw["driver"],
                "use \"bridge\", \"ptp\", \"macvlan\" or \"ipvlan\"",
            ));
        }
        let mut options = BTreeMap::new();
        let mut is_gateway = true;
        if !self.ipam_mode {
            req.internal = get_bool(&self.raw, "internal")?.unwrap_or(false);
            match self.raw.get("mtu") {
                None | Some(Value::Null) => {}
                Some(Value::Number(n)) if n.as_u64().is_some_and(|m| (68..=65535).contains(&m)) => {
                    options.insert("mtu".into(), n.to_string());
                }
                Some(v) => return Err(bad("mtu", v, "expected a number from 68 to 65535")),
            }
            for (key, option) in [("master", "parent"), ("mode", "mode")] {
                if let Some(v) = get_str(&self.raw, key)? {
                    if matches!(req.driver.as_str(), "macvlan" | "ipvlan") {
                        options.insert(option.to_string(), v.to_string());
                    }
                }
            }
            let bridge = req.driver == "bridge";
            for (key, option) in [
                ("isolate", "isolate"),
                ("ipMasq", "masquerade"),
                ("isGateway", "gateway"),
                ("macspoofchk", "mac_check"),
            ] {
                if let Some(b) = get_bool(&self.raw, key)? {
                    if !bridge {
                        return Err(bad(key, &Value::Bool(b), &format!("only the bridge driver has it (this network's driver is {:?}); drop the key", req.driver)));
                    }
                    options.insert(option.to_string(), b.to_string());
                    if key == "isGateway" {
                        is_gateway = b;
                    }
                }
            }
        }
        req.options = options;
        let mut dns = match self.raw.get("dns") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(Value::Object(d)) = rc.get("dns") {
            for (from, to) in [
                ("servers", "nameservers"),
                ("searches", "search"),
                ("options", "options"),
            ] {
                if let Some(v) = d
                    .get(from)
                    .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                {
                    dns.insert(to.into(), v.clone());
                }
            }
            if let Some(v) = d.get("domain") {
                dns.insert("domain".into(), v.clone());
            }
        }
        Ok(NetworkSpec {
            request: req,
            ranges,
            routes,
            dns,
            is_gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> Result<NetConf, CniError> {
        NetConf::parse(text.as_bytes())
    }

    #[test]
    fn versions_and_modes() {
        assert_eq!(parse_version("1.1.0"), Some((1, 1, 0)));
        assert_eq!(parse_version("1.1"), None);
        let c = conf(r#"{"cniVersion":"0.4.0","name":"n","type":"netloom"}"#).unwrap();
        assert!(!c.ipam_mode && c.at_least((0, 4, 0)) && !c.at_least((1, 0, 0)));
        let c =
            conf(r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","ipam":{"type":"netloom"}}"#)
                .unwrap();
        assert!(c.ipam_mode);
        let e = conf(r#"{"cniVersion":"0.2.0","name":"n"}"#).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("0.2.0"), "{e}");
        assert_eq!(conf("{").unwrap_err().code, 6);
        let e = conf(r#"{"cniVersion":"1.0.0","name":"bad name"}"#).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("bad name"), "{e}");
    }

    #[test]
    fn address_keys_map_to_a_network_request() {
        let c = conf(
            r#"{"cniVersion":"1.1.0","name":"web","type":"netloom","ipMasq":false,"mtu":1400,
               "ipam":{"type":"netloom","ranges":[[{"subnet":"10.9.0.0/24","rangeStart":"10.9.0.10","rangeEnd":"10.9.0.20","gateway":"10.9.0.254"}],[{"subnet":"fd00:9::/64"}]],
               "routes":[{"dst":"0.0.0.0/0"},{"dst":"192.168.0.0/16","gw":"10.9.0.254"}]},"unknownKey":{"x":1}}"#,
        )
        .unwrap();
        let s = c.network_spec().unwrap();
        assert_eq!(s.request.subnets, ["10.9.0.0/24", "fd00:9::/64"]);
        assert_eq!(s.request.gateways, ["10.9.0.254"]);
        assert_eq!(s.request.options["masquerade"], "false");
        assert_eq!(s.request.options["mtu"], "1400");
        assert_eq!(s.ranges.len(), 1);
        assert_eq!(s.ranges[0].end - s.ranges[0].start, 10);
        assert_eq!(s.routes.len(), 2);
        assert_eq!(s.request.driver, "bridge");
    }

    #[test]
    fn bad_values_are_named() {
        for (text, needle) in [
            (r#""subnets":["10.9.0.1/24"]"#, "10.9.0.1/24"),
            (r#""subnets":["10.9.0.0/24"],"mtu":9"#, "mtu"),
            (r#""subnets":["10.9.0.0/24"],"driver":"vxlan""#, "driver"),
            (
                r#""subnet":"10.9.0.0/24","rangeStart":"10.8.0.1""#,
                "rangeStart",
            ),
            (r#""subnets":["10.9.0.0/24"],"ipMasq":"yes""#, "ipMasq"),
            (r#""name2":1"#, "no subnet"),
        ] {
            let c = conf(&format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"netloom",{text}}}"#
            ))
            .unwrap();
            let e = c.network_spec().unwrap_err();
            assert_eq!(e.code, 7, "{text}");
            assert!(e.msg.contains(needle), "{text}: {e}");
        }
    }
}
