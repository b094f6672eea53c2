//! netloom chained with the reference CNI plugins (Debian's
//! containernetworking-plugins in /usr/lib/cni), driven the way libcni
//! drives a conflist: CNI_* variables in the environment; on stdin each
//! plugin's own config with the list's `name` and `cniVersion`, the
//! `runtimeConfig` of the capabilities it declares, and the previous
//! plugin's result as `prevResult`; CNI_PATH holding a directory with the
//! netloom binary (named `netloom`) and /usr/lib/cni. ADD runs the list in
//! order, CHECK in order and DEL in reverse, both with the cached result.
//! Everything runs inside throwaway hosts.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netloom_kernel::Netns;
use serde_json::{json, Value};
use support::{World, STATE};

const REFERENCE: &str = "/usr/lib/cni";
const VERSION: &str = "1.0.0";

/// A directory holding `netloom` (a symlink to the binary under test), the
/// first entry of CNI_PATH. Removed when dropped.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(test: &str) -> PluginDir {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cni-chain-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_netloom"), dir.join("netloom")).unwrap();
        PluginDir(dir)
    }

    fn cni_path(&self) -> String {
        format!("{}:{REFERENCE}", self.0.display())
    }

    /// The executable of plugin `ptype`, found along CNI_PATH as a runtime
    /// finds it.
    fn find(&self, ptype: &str) -> PathBuf {
        std::iter::once(self.0.clone())
            .chain(std::iter::once(PathBuf::from(REFERENCE)))
            .map(|d| d.join(ptype))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("plugin {ptype:?} is not on CNI_PATH"))
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the reference plugins this test needs are installed; prints
/// SKIP naming what is missing when not.
fn have_reference(plugins: &[&str]) -> bool {
    let missing: Vec<&str> = plugins
        .iter()
        .copied()
        .filter(|p| !Path::new(REFERENCE).join(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    netloom_testhost::skip(format!(
        "reference CNI plugins {missing:?} are missing from {REFERENCE}; \
         apt-get install containernetworking-plugins"
    ));
    false
}

/// A conflist and the container it is run for.
struct Chain<'a> {
    w: &'a World,
    dir: &'a PluginDir,
    name: &'static str,
    plugins: Vec<Value>,
    runtime_config: Value,
    container_id: String,
    netns: String,
}

impl Chain<'_> {
    /// The stdin of one plugin, as libcni builds it.
    fn stdin(&self, plugin: &Value, prev: Option<&Value>) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(self.name);
        conf["cniVersion"] = json!(VERSION);
        if let Some(caps) = plugin.get("capabilities").and_then(Value::as_object) {
            let mut rc = serde_json::Map::new();
            for (cap, on) in caps {
                if on == &json!(true) {
                    if let Some(v) = self.runtime_config.get(cap) {
                        rc.insert(cap.clone(), v.clone());
                    }
                }
            }
            if !rc.is_empty() {
                conf["runtimeConfig"] = Value::Object(rc);
            }
        }
        if let Some(prev) = prev {
            conf["prevResult"] = prev.clone();
        }
        conf
    }

    /// Runs one plugin; its stdout parsed (Null when empty), or the error
    /// text with the plugin's type, exit status, stdout and stderr.
    fn call(&self, command: &str, plugin: &Value, prev: Option<&Value>) -> Result<Value, String> {
        let ptype = plugin["type"].as_str().unwrap();
        let stdin = self.stdin(plugin, prev);
        let mut child = self
            .w
            .host
            .command(self.dir.find(ptype))
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &self.container_id)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.dir.cni_path())
            .env("NETLOOM_STATE_DIR", STATE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {ptype}: {e}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "{ptype} {command} failed ({}): stdout {stdout} stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| format!("{ptype} {command}: bad JSON {e}: {stdout}"))
    }

    /// ADD through the list; the final result.
    fn add(&self) -> Value {
        let mut prev: Option<Value> = None;
        for p in &self.plugins {
            let result = self
                .call("ADD", p, prev.as_ref())
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(result["cniVersion"], VERSION, "{result}");
            prev = Some(result);
        }
        prev.unwrap()
    }

    /// CHECK through the list with the cached result.
    ///
    /// portmap 1.1 (Debian's containernetworking-plugins) fails CHECK for
    /// every container without IPv6 port rules, looking for IPv6 rules it
    /// never made (containernetworking/plugins#819); that one failure is
    /// reported and passed over, any other fails.
    fn check(&self, cached: &Value) -> Result<(), String> {
        for p in &self.plugins {
            match self.call("CHECK", p, Some(cached)) {
                Err(e) if p["type"] == "portmap" && e.contains("could not check ipv6 dnat") => {
                    eprintln!("note: portmap CHECK hit containernetworking/plugins#819: {e}");
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// DEL through the list in reverse with the cached result.
    fn del(&self, cached: Option<&Value>) {
        for p in self.plugins.iter().rev() {
            self.call("DEL", p, cached)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// The container's IPv4 address in the result (from `ips`).
fn result_ip(result: &Value) -> Ipv4Addr {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["address"].as_str()?.split('/').next()?.parse().ok())
        .next()
        .unwrap_or_else(|| panic!("no IPv4 address in result {result}"))
}

fn netns(w: &World, name: &str) -> (Netns, String) {
    w.sh_ok(&format!(
        "ip netns add {name} && ip -n {name} link set lo up"
    ));
    let ns = w.host.enter(|| Netns::open_named(name)).unwrap();
    (ns, format!("/run/netns/{name}"))
}

/// A TCP connection from the host to `addr:port` gets the answer of a
/// listener on port 80 inside `ns`; `tries` connection attempts, a second
/// apart.
///
/// Right after ADD a new veth may drop traffic for a moment: the kernel
/// activates its queue only when its link watcher handles the carrier-on
/// event, which it does at most once a second (longer on a busy machine),
/// for the reference plugins' interfaces as for netloom's.
fn published_port_reaches(
    w: &World,
    ns: &Netns,
    addr: IpAddr,
    port: u16,
    tries: u32,
) -> Result<(), String> {
    let listener = ns
        .run(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)))
        .unwrap()
        .map_err(|e| format!("listen on :80 in the container: {e}"))?;
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(b"from the container");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };
    let mut last = String::new();
    for attempt in 0..tries {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let got = w.host.enter(|| -> Result<String, String> {
            let mut c = TcpStream::connect_timeout(&(addr, port).into(), Duration::from_secs(1))
                .map_err(|e| format!("connect {addr}:{port}: {e}"))?;
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut s = String::new();
            c.read_to_string(&mut s)
                .map_err(|e| format!("read from {addr}:{port}: {e}"))?;
            Ok(s)
        });
        match got {
            Ok(s) if s == "from the container" => {
                last.clear();
                break;
            }
            Ok(s) => last = format!("{addr}:{port} answered {s:?}"),
            Err(e) => last = e,
        }
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    if last.is_empty() {
        Ok(())
    } else {
        Err(last)
    }
}

/// Whether `sandbox` gets an answer from `ip` within a few tries (see
/// [`published_port_reaches`] for why one may not do right after ADD).
fn ping(w: &World, sandbox: &str, ip: &str) -> bool {
    (0..5).any(|_| w.ping(sandbox, ip))
}

/// Why traffic may fail for reasons outside the test: the kernel's IPv4
/// neighbour table is shared by every namespace on the machine, and when
/// other work fills it past `gc_thresh3` new neighbours cannot be made
/// (sends fail with ENOBUFS). Empty when that is not the case.
fn neighbour_table_note(w: &World) -> String {
    let out = w.sh("ip -s ntable show name arp_cache");
    let text = String::from_utf8_lossy(&out.stdout);
    let num = |key: &str| -> Option<u64> {
        let mut words = text.split_whitespace();
        words.find(|w| *w == key)?;
        words.next()?.parse().ok()
    };
    match (num("entries"), num("thresh3")) {
        (Some(n), Some(max)) if n + 16 >= max => format!(
            " (note: the machine's IPv4 neighbour table holds {n} entries of at most {max}, \
             shared by all namespaces; when full, new neighbours fail with ENOBUFS: \
             rerun when the machine is quieter)"
        ),
        _ => String::new(),
    }
}

/// Links in the host of a given kind (`veth`, `bridge`).
fn host_links_of_kind(w: &World, kind: &str) -> Vec<String> {
    w.ip_json(None, &format!("link show type {kind}"))
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect()
}

fn sysctl_in(w: &World, netns: &str, key: &str) -> String {
    let out = w.sh(&format!("ip netns exec {netns} sysctl -n {key}"));
    assert!(out.status.success(), "sysctl {key} in {netns}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// netloom, then portmap publishing `host_port`, then tuning with
/// `tuning` (its own keys); ADD, proof, CHECK, DEL, and nothing left.
/// `mac` is the MAC tuning is told to set, if any.
fn netloom_portmap_tuning(octet: u8, host_port: u16, tuning: Value, mac: Option<&str>) {
    if !have_reference(&["portmap", "tuning"]) {
        return;
    }
    let Some(w) = World::new() else { return };
    let dir = PluginDir::new(&format!("chain{octet}"));
    let (ns, path) = netns(&w, "c1");
    let mut tuning_conf = tuning;
    tuning_conf["type"] = json!("tuning");
    let chain = Chain {
        w: &w,
        dir: &dir,
        name: "chained",
        plugins: vec![
            // A MAC set later by tuning needs netloom's MAC check off;
            // source addresses stay checked.
            json!({"type": "netloom", "driver": "bridge", "macspoofchk": mac.is_none(),
                   "subnets": [format!("10.{octet}.0.0/24")], "stateDir": STATE}),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            tuning_conf,
        ],
        runtime_config: json!({"portMappings": [
            {"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]}),
        container_id: format!("chain{octet}"),
        netns: path.clone(),
    };

    let result = chain.add();
    // netloom's part of the result went through the chain: its host-side
    // interface, the container's interface and its address.
    let ip = result_ip(&result);
    assert!(
        ip.octets()[..3] == [10, octet, 0] && ip.octets()[3] > 1,
        "{result}"
    );
    let names: Vec<&str> = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("nlv-")), "{result}");
    let eth0 = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0" && i["sandbox"] == path.as_str())
        .unwrap_or_else(|| panic!("no eth0 in {result}"))
        .clone();
    // tuning's effects, read back from the container (and, for the MAC, in
    // the final result).
    assert_eq!(sysctl_in(&w, "c1", "net.ipv4.conf.eth0.proxy_arp"), "1");
    let link = w.ip_json(Some("c1"), "link show dev eth0");
    if let Some(mac) = mac {
        assert_eq!(link[0]["address"], mac, "{link}");
        assert_eq!(
            eth0["mac"], mac,
            "tuning's MAC in the final result: {result}"
        );
    } else {
        assert_eq!(link[0]["address"], eth0["mac"], "{link} vs {result}");
    }
    // The container reaches its gateway, and portmap's host port reaches
    // the container.
    let gw = format!("10.{octet}.0.1");
    assert!(
        ping(&w, "c1", &gw),
        "c1 cannot reach its gateway {gw}{}",
        neighbour_table_note(&w)
    );
    let gw: IpAddr = gw.parse().unwrap();
    if let Err(e) = published_port_reaches(&w, &ns, gw, host_port, 5) {
        panic!("{e}{}", neighbour_table_note(&w));
    }

    chain
        .check(&result)
        .unwrap_or_else(|e| panic!("CHECK after ADD: {e}"));

    chain.del(Some(&result));
    // Nothing of the container is left: no veth, no portmap chain, no
    // netloom endpoint, and the port no longer answers.
    assert_eq!(host_links_of_kind(&w, "veth"), Vec::<String>::new());
    let nat = w.sh("iptables-save -t nat");
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(!nat.contains("CNI-DN-"), "portmap rules left:\n{nat}");
    assert!(
        !nat.contains(&host_port.to_string()),
        "port {host_port} left in the nat table:\n{nat}"
    );
    assert_eq!(w.json(&["endpoint", "ls"]), json!([]));
    assert!(published_port_reaches(&w, &ns, gw, host_port, 1).is_err());
    w.assert_clean();
    // A second DEL (a runtime retrying) is fine.
    chain.del(Some(&result));
}

#[test]
fn netloom_then_portmap_then_tuning() {
    netloom_portmap_tuning(
        70,
        18080,
        json!({"sysctl": {"net.ipv4.conf.eth0.proxy_arp": "1"}}),
        None,
    );
}

/// tuning may give the container interface another MAC after netloom made
/// it; the container must stay reachable and CHECK must accept the MAC the
/// final result reports.
#[test]
fn tuning_mac_after_netloom_keeps_the_container_reachable() {
    let mac = "c2:b0:57:49:47:f1";
    netloom_portmap_tuning(
        72,
        18082,
        json!({"mac": mac, "sysctl": {"net.ipv4.conf.eth0.proxy_arp": "1"}}),
        Some(mac),
    );
}

#[test]
fn reference_bridge_with_netloom_ipam() {
    if !have_reference(&["bridge"]) {
        return;
    }
    let Some(w) = World::new() else { return };
    let dir = PluginDir::new("ipam");
    let plugin = json!({
        "type": "bridge", "bridge": "cni-nl0", "isGateway": true, "ipMasq": false,
        "ipam": {"type": "netloom", "stateDir": STATE,
                 "ranges": [[{"subnet": "10.71.0.0/24", "gateway": "10.71.0.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]}
    });
    let mut chains = Vec::new();
    let mut results = Vec::new();
    for (i, name) in ["d1", "d2"].into_iter().enumerate() {
        let (_ns, path) = netns(&w, name);
        chains.push(Chain {
            w: &w,
            dir: &dir,
            name: "refbr",
            plugins: vec![plugin.clone()],
            runtime_config: json!({}),
            container_id: format!("ipam000{i}"),
            netns: path,
        });
    }
    for c in &chains {
        results.push(c.add());
    }
    let ips: Vec<Ipv4Addr> = results.iter().map(result_ip).collect();
    assert_ne!(ips[0], ips[1], "two containers, one address");
    for (r, name) in results.iter().zip(["d1", "d2"]) {
        let ip = result_ip(r);
        assert!(ip.octets()[..3] == [10, 71, 0] && ip.octets()[3] > 1, "{r}");
        // The bridge plugin put netloom's address and route in the container.
        assert!(
            w.addrs(name, "eth0").contains(&format!("{ip}/24")),
            "{name}: {:?}",
            w.addrs(name, "eth0")
        );
        let routes = w.ip_json(Some(name), "route show default");
        assert_eq!(routes[0]["gateway"], "10.71.0.1", "{routes}");
        assert!(
            ping(&w, name, "10.71.0.1"),
            "{name} cannot reach the bridge's gateway{}",
            neighbour_table_note(&w)
        );
    }
    assert!(
        ping(&w, "d1", &ips[1].to_string()),
        "d1 cannot reach d2{}",
        neighbour_table_note(&w)
    );
    // netloom recorded both addresses (and the gateway) for the network.
    let allocs = w.json(&["ipam", "ls", "refbr"]).to_string();
    for ip in &ips {
        assert!(allocs.contains(&ip.to_string()), "{ip} not in {allocs}");
    }

    for (c, r) in chains.iter().zip(&results) {
        c.check(r)
            .unwrap_or_else(|e| panic!("CHECK after ADD: {e}"));
    }
    // CHECK notices a container that lost its address.
    w.sh_ok(&format!("ip -n d2 addr del {}/24 dev eth0", ips[1]));
    assert!(
        chains[1].check(&results[1]).is_err(),
        "CHECK passed with the address gone"
    );

    for (c, r) in chains.iter().zip(&results) {
        c.del(Some(r));
    }
    assert_eq!(host_links_of_kind(&w, "veth"), Vec::<String>::new());
    let allocs = w.json(&["ipam", "ls", "refbr"]).to_string();
    for ip in &ips {
        assert!(
            !allocs.contains(&ip.to_string()),
            "{ip} still allocated: {allocs}"
        );
    }
    w.assert_clean();
    // DEL without prevResult (a runtime that lost its cache) is fine too.
    chains[0].del(None);
}

/// The root qdisc of `dev` (in the host, or inside `netns`) as
/// `tc -j qdisc show` reports it.
fn root_qdisc(w: &World, netns: Option<&str>, dev: &str) -> Value {
    let prefix = netns
        .map(|n| format!("ip netns exec {n} "))
        .unwrap_or_default();
    let out = w.sh(&format!("{prefix}tc -j qdisc show dev {dev} root"));
    assert!(out.status.success(), "tc qdisc show dev {dev}: {out:?}");
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// The host-side interface netloom reported in a result.
fn host_side(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .unwrap_or_else(|| panic!("no host-side interface in {result}"))
        .to_string()
}

/// netloom's own `bandwidth` capability: token buckets on both sides of the
/// veth, and a burst too small to pass a packet refused with nothing left.
#[test]
fn netloom_bandwidth_capability() {
    let Some(w) = World::new() else { return };
    let dir = PluginDir::new("bw");
    let (_ns, path) = netns(&w, "c1");
    let plugin = json!({"type": "netloom", "subnets": ["10.73.0.0/24"], "stateDir": STATE,
                        "capabilities": {"bandwidth": true}});
    let mut chain = Chain {
        w: &w,
        dir: &dir,
        name: "shaped",
        plugins: vec![plugin],
        runtime_config: json!({"bandwidth": {
            "ingressRate": 8_000_000, "ingressBurst": 160_000,
            "egressRate": 16_000_000, "egressBurst": 320_000}}),
        container_id: "bw0001".into(),
        netns: path,
    };
    let result = chain.add();
    let host_if = host_side(&result);
    let ingress = root_qdisc(&w, None, &host_if);
    assert_eq!(ingress["kind"], "tbf", "{ingress}");
    assert_eq!(ingress["options"]["rate"], 1_000_000, "8 Mbit/s: {ingress}");
    assert_eq!(ingress["options"]["burst"], 20_000, "{ingress}");
    let egress = root_qdisc(&w, Some("c1"), "eth0");
    assert_eq!(egress["kind"], "tbf", "{egress}");
    assert_eq!(egress["options"]["rate"], 2_000_000, "16 Mbit/s: {egress}");
    chain
        .check(&result)
        .unwrap_or_else(|e| panic!("CHECK after ADD: {e}"));
    chain.del(Some(&result));
    assert_eq!(host_links_of_kind(&w, "veth"), Vec::<String>::new());

    // A burst under one full packet: refused (code 7) naming the fix, and
    // the attachment is not left half made.
    chain.runtime_config = json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 8_000}});
    let err = chain
        .call("ADD", &chain.plugins[0], None)
        .expect_err("ADD with a burst under one packet must fail");
    assert!(
        err.contains("\"code\": 7") || err.contains("\"code\":7"),
        "{err}"
    );
    assert!(err.contains("12112"), "names the smallest burst: {err}");
    assert_eq!(host_links_of_kind(&w, "veth"), Vec::<String>::new());
    assert_eq!(w.json(&["endpoint", "ls"]), json!([]));
    w.assert_clean();
}

/// The reference `bandwidth` plugin after netloom: it finds netloom's
/// host-side interface in prevResult and shapes it (TBF, and an ifb device
/// for the container's egress); DEL takes the ifb away again.
#[test]
fn netloom_then_reference_bandwidth() {
    if !have_reference(&["bandwidth"]) {
        return;
    }
    let Some(w) = World::new() else { return };
    let dir = PluginDir::new("refbw");
    let (_ns, path) = netns(&w, "c1");
    let chain = Chain {
        w: &w,
        dir: &dir,
        name: "refshaped",
        plugins: vec![
            json!({"type": "netloom", "subnets": ["10.74.0.0/24"], "stateDir": STATE}),
            json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
        ],
        runtime_config: json!({"bandwidth": {
            "ingressRate": 8_000_000, "ingressBurst": 160_000,
            "egressRate": 8_000_000, "egressBurst": 160_000}}),
        container_id: "refbw0001".into(),
        netns: path,
    };
    let result = match chain.plugins.iter().try_fold(None::<Value>, |prev, p| {
        chain.call("ADD", p, prev.as_ref()).map(Some)
    }) {
        Ok(r) => r.unwrap(),
        Err(e) if e.contains("bandwidth") && e.contains("not supported") => {
            netloom_testhost::skip(format!(
                "the kernel lacks what the bandwidth plugin needs: {e}"
            ));
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let host_if = host_side(&result);
    let ingress = root_qdisc(&w, None, &host_if);
    assert_eq!(ingress["kind"], "tbf", "{ingress}");
    assert_eq!(ingress["options"]["rate"], 1_000_000, "{ingress}");
    let ifbs = host_links_of_kind(&w, "ifb");
    assert_eq!(
        ifbs.len(),
        1,
        "one ifb for the container's egress: {ifbs:?}"
    );
    chain
        .check(&result)
        .unwrap_or_else(|e| panic!("CHECK after ADD: {e}"));
    chain.del(Some(&result));
    assert_eq!(host_links_of_kind(&w, "ifb"), Vec::<String>::new());
    assert_eq!(host_links_of_kind(&w, "veth"), Vec::<String>::new());
    w.assert_clean();
}
