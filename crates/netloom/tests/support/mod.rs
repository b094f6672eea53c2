//! Runs the real `netloom` binary inside a throwaway host (its own network
//! and mount namespaces, private /run), with its state under that /run.

#![allow(dead_code)]

use netloom_testhost::Host;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::time::Duration;

pub struct World {
    pub host: Host,
}

pub const STATE: &str = "/run/netloom-state";

impl World {
    /// A fresh world, or None (after printing SKIP) when this process cannot
    /// make one.
    pub fn new() -> Option<World> {
        match Host::try_new() {
            Ok(host) => Some(World { host }),
            Err(e) => {
                netloom_testhost::skip(e);
                None
            }
        }
    }

    pub fn netloom(&self, args: &[&str]) -> Output {
        self.host
            .command(env!("CARGO_BIN_EXE_netloom"))
            .env("NETLOOM_STATE_DIR", STATE)
            .args(args)
            .output()
            .unwrap()
    }

    /// A netloom command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.netloom(args);
        assert!(
            out.status.success(),
            "netloom {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A netloom command that must fail with exit 1; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.netloom(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "netloom {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// A shell command in the host; its output.
    pub fn sh(&self, script: &str) -> Output {
        self.host
            .command("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    /// A shell command in the host that must succeed.
    pub fn sh_ok(&self, script: &str) {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A world whose host has parent link `up0`, the other end of a veth
    /// pair in namespace `outside` that holds `{v4}.1/24` and `{v6}::1/64`
    /// (a stand-in for a LAN with a router), and sandboxes `a` and `b`.
    pub fn with_lan(v4: &str, v6: &str) -> Option<World> {
        let w = World::new()?;
        w.sh_ok(&format!(
            "ip link add up0 type veth peer name up1 \
             && ip netns add outside \
             && ip link set up1 netns outside \
             && ip -n outside link set lo up \
             && ip -n outside addr add {v4}.1/24 dev up1 \
             && ip -n outside addr add {v6}::1/64 dev up1 nodad \
             && ip -n outside link set up1 up \
             && ip link set up0 up"
        ));
        w.ok(&["sandbox", "create", "a"]);
        w.ok(&["sandbox", "create", "b"]);
        Some(w)
    }

    /// Whether one ping from `sandbox` to `ip` gets an answer within 3 s
    /// (generous: other tests may load the machine).
    pub fn ping(&self, sandbox: &str, ip: &str) -> bool {
        self.netloom(&["exec", sandbox, "--", "ping", "-c1", "-W1", "-q", ip])
            .status
            .success()
    }

    /// `ip -j ARGS` inside a sandbox (or the host when `sandbox` is None).
    pub fn ip_json(&self, sandbox: Option<&str>, args: &str) -> serde_json::Value {
        let out = match sandbox {
            Some(s) => {
                let mut a = vec!["exec", s, "--", "ip", "-j"];
                a.extend(args.split_whitespace());
                self.netloom(&a)
            }
            None => self.sh(&format!("ip -j {args}")),
        };
        assert!(
            out.status.success(),
            "ip -j {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Array(vec![]))
    }

    /// Names of the host's links.
    pub fn host_links(&self) -> Vec<String> {
        self.ip_json(None, "link show")
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// Link names in a sandbox (or the host when `sandbox` is None), each
    /// with whether it is on its way out: retired (`nlx…`, the sandbox end
    /// of a removed endpoint's veth) or marked as being deleted (the host
    /// end), both deleted in the background.
    pub fn links_with_state(&self, sandbox: Option<&str>) -> Vec<(String, bool)> {
        self.ip_json(sandbox, "link show")
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                let name = l["ifname"].as_str().unwrap().to_string();
                let leaving = name.starts_with("nlx") || l["ifalias"] == "netloom: being deleted";
                (name, leaving)
            })
            .collect()
    }

    /// Link names in a sandbox (or the host) but those on their way out.
    pub fn links_in_service(&self, sandbox: Option<&str>) -> Vec<String> {
        self.links_with_state(sandbox)
            .into_iter()
            .filter(|(_, leaving)| !leaving)
            .map(|(n, _)| n)
            .collect()
    }

    /// Link names in a sandbox (or the host) once those on their way out
    /// are gone; fails after 10 s.
    pub fn links_once_reaped(&self, sandbox: Option<&str>) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let links = self.links_with_state(sandbox);
            if links.iter().all(|(_, leaving)| !leaving) {
                return links.into_iter().map(|(n, _)| n).collect();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "links on their way out still there after 10 s in {}: {links:?}",
                sandbox.unwrap_or("the host")
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Addresses (ADDR/LEN) of an interface inside a sandbox.
    pub fn addrs(&self, sandbox: &str, ifname: &str) -> Vec<String> {
        let v = self.ip_json(Some(sandbox), &format!("addr show dev {ifname}"));
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
            .collect()
    }

    pub fn assert_clean(&self) {
        assert_eq!(self.ok(&["check"]), "clean\n");
    }
}

/// Runs `f` inside named namespace `ns` of the world (or the world's host).
pub fn inside<T: Send>(w: &World, ns: Option<&str>, f: impl FnOnce() -> T + Send) -> T {
    w.host.enter(|| match ns {
        Some(n) => netloom_kernel::Netns::open_named(n)
            .unwrap()
            .run(f)
            .unwrap(),
        None => f(),
    })
}

/// A TCP server in a sandbox answering every connection with `name` and
/// the address it saw the client come from.
pub fn serve_tcp(w: &World, ns: &str, port: u16, name: &'static str) {
    let l = inside(w, Some(ns), || TcpListener::bind(("::", port)).unwrap());
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let peer = c.peer_addr().unwrap().ip().to_canonical();
            let _ = write!(c, "{name} {peer}");
        }
    });
}

/// What a TCP server at `to` answers a client in sandbox `from` (or the
/// world's host); None when it cannot be reached within 2 s.
pub fn ask_tcp(w: &World, from: Option<&str>, to: &str) -> Option<String> {
    let addr: SocketAddr = to.parse().unwrap();
    inside(w, from, || {
        let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut s = String::new();
        c.read_to_string(&mut s).ok()?;
        Some(s)
    })
}
