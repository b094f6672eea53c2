//! Drives the `netloom` binary as libcni does: CNI_* in the environment,
//! the plugin's network configuration on stdin, the result (or error
//! object) on stdout, the exit code. Kernel tests run it inside a throwaway
//! host (own network and mount namespaces, private /run); tests that only
//! touch the store (IPAM mode) may run it on the machine with a temporary
//! state directory.

#![allow(dead_code)]

use netloom_testhost::Host;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The versions netloom must speak.
pub const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Where the plugin keeps its state inside a throwaway host.
pub const STATE: &str = "/run/netloom-state";

/// What one plugin run gave back.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from(out: Output) -> Outcome {
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The JSON on stdout (stdout must hold nothing else).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// A success with a JSON result; the result.
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.code,
            Some(0),
            "plugin failed: {}\n{}",
            self.stdout,
            self.stderr
        );
        self.json()
    }

    /// A success that prints nothing (DEL, CHECK, GC, STATUS).
    pub fn ok_empty(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "plugin failed: {}\n{}",
            self.stdout,
            self.stderr
        );
        assert_eq!(
            self.stdout.trim(),
            "",
            "this command prints nothing on success"
        );
    }

    /// A failure with a CNI error object of `code`; the object.
    pub fn err(&self, code: u64) -> Value {
        assert_ne!(self.code, Some(0), "plugin should fail: {}", self.stdout);
        let v = self.json();
        assert_eq!(v["code"], code, "wrong error code: {v}\n{}", self.stderr);
        assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(v["cniVersion"].is_string(), "{v}");
        v
    }
}

/// One attachment as the runtime names it.
#[derive(Clone, Copy)]
pub struct Att<'a> {
    pub cid: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
}

/// Where the plugin runs: a throwaway host, or the machine (store only).
pub enum Place {
    Host(Host),
    Machine(PathBuf),
}

pub struct Cni {
    pub place: Place,
}

impl Drop for Cni {
    fn drop(&mut self) {
        if let Place::Machine(dir) = &self.place {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A plugin configuration: `cniVersion`, `name`, `type` and `extra`'s keys.
pub fn conf(version: &str, name: &str, extra: Value) -> Value {
    let mut c = json!({ "cniVersion": version, "name": name, "type": "netloom" });
    for (k, v) in extra.as_object().expect("extra is an object") {
        c[k] = v.clone();
    }
    c
}

/// The configuration libcni passes on DEL and CHECK: with the cached result.
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}

impl Cni {
    /// A throwaway host, or None (after printing SKIP) when this process
    /// cannot make one.
    pub fn host() -> Option<Cni> {
        match Host::try_new() {
            Ok(host) => Some(Cni {
                place: Place::Host(host),
            }),
            Err(e) => {
                netloom_testhost::skip(e);
                None
            }
        }
    }

    /// The plugin on the machine itself with a fresh state directory: only
    /// for IPAM mode and errors raised before any kernel object is made.
    pub fn machine(tag: &str) -> Cni {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = PathBuf::from(base).join(format!("netloom-cni-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Cni {
            place: Place::Machine(dir),
        }
    }

    fn state(&self) -> String {
        match &self.place {
            Place::Host(_) => STATE.to_string(),
            Place::Machine(d) => d.display().to_string(),
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = match &self.place {
            Place::Host(h) => h.command(program),
            Place::Machine(_) => Command::new(program),
        };
        c.env("NETLOOM_STATE_DIR", self.state());
        c
    }

    /// Runs the plugin with exactly these CNI_* variables and stdin.
    pub fn run(&self, command: &str, vars: &[(&str, &str)], stdin: &[u8]) -> Outcome {
        let mut c = self.command(env!("CARGO_BIN_EXE_netloom"));
        for v in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            c.env_remove(v);
        }
        c.env("CNI_COMMAND", command)
            .env("CNI_PATH", "/opt/cni/bin");
        for (k, v) in vars {
            c.env(k, v);
        }
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netloom");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Outcome::from(child.wait_with_output().unwrap())
    }

    fn att_vars<'a>(att: &Att<'a>) -> Vec<(&'static str, &'a str)> {
        let mut v = vec![("CNI_CONTAINERID", att.cid), ("CNI_IFNAME", att.ifname)];
        if !att.netns.is_empty() {
            v.push(("CNI_NETNS", att.netns));
        }
        v
    }

    pub fn add(&self, conf: &Value, att: Att) -> Outcome {
        self.run("ADD", &Self::att_vars(&att), conf.to_string().as_bytes())
    }

    /// DEL as libcni sends it: with the cached result as prevResult
    /// (from 0.4.0 on; earlier versions never had it).
    pub fn del(&self, conf: &Value, prev: Option<&Value>, att: Att) -> Outcome {
        let c = match prev {
            Some(p) if conf["cniVersion"] != "0.3.0" && conf["cniVersion"] != "0.3.1" => {
                with_prev(conf, p)
            }
            _ => conf.clone(),
        };
        self.run("DEL", &Self::att_vars(&att), c.to_string().as_bytes())
    }

    pub fn check(&self, conf: &Value, prev: &Value, att: Att) -> Outcome {
        self.run(
            "CHECK",
            &Self::att_vars(&att),
            with_prev(conf, prev).to_string().as_bytes(),
        )
    }

    /// GC with `cni.dev/valid-attachments`.
    pub fn gc(&self, conf: &Value, valid: &[(&str, &str)]) -> Outcome {
        let mut c = conf.clone();
        c["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|(cid, ifname)| json!({ "containerID": cid, "ifname": ifname }))
            .collect();
        self.run("GC", &[], c.to_string().as_bytes())
    }

    pub fn status(&self, conf: &Value) -> Outcome {
        self.run("STATUS", &[], conf.to_string().as_bytes())
    }

    /// A `netloom` command on the same state, in the same place, to
    /// spawn or run as the caller likes.
    pub fn netloom_command(&self) -> Command {
        let mut c = self.command(env!("CARGO_BIN_EXE_netloom"));
        c.env_remove("CNI_COMMAND");
        c
    }

    /// The netloom CLI on the same state.
    pub fn netloom(&self, args: &[&str]) -> Output {
        self.command(env!("CARGO_BIN_EXE_netloom"))
            .env_remove("CNI_COMMAND")
            .args(args)
            .output()
            .unwrap()
    }

    /// `netloom --json ARGS`, which must succeed.
    pub fn netloom_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.netloom(&all);
        assert!(
            out.status.success(),
            "netloom {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `netloom check` reports no violation and no drift.
    pub fn assert_clean(&self) {
        let out = self.netloom(&["check"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "clean\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A shell command in the host; its output.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh").arg("-c").arg(script).output().unwrap()
    }

    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A fresh network namespace as a runtime makes one; its path.
    pub fn netns(&self, name: &str) -> String {
        self.sh_ok(&format!("ip netns add {name}"));
        format!("/run/netns/{name}")
    }

    /// `ip -j ARGS` inside a namespace (by name).
    pub fn ip_json(&self, ns: &str, args: &str) -> Value {
        let out = self.sh_ok(&format!("ip -n {ns} -j {args}"));
        serde_json::from_str(&out).unwrap_or(Value::Array(vec![]))
    }

    /// ADDR/LEN of the global addresses of an interface in a namespace.
    pub fn addrs(&self, ns: &str, ifname: &str) -> Vec<String> {
        self.ip_json(ns, &format!("addr show dev {ifname} scope global"))
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
            .collect()
    }

    /// Whether one ping from namespace `ns` to `ip` is answered.
    pub fn ping(&self, ns: &str, ip: &str) -> bool {
        self.sh(&format!("ip netns exec {ns} ping -c1 -W2 -q {ip}"))
            .status
            .success()
    }

    /// Names of the host's links.
    pub fn host_links(&self) -> Vec<String> {
        let out = self.sh_ok("ip -j link show");
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The endpoints netloom holds (CLI `endpoint ls`).
    pub fn endpoints(&self) -> Vec<Value> {
        self.netloom_json(&["endpoint", "ls"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every allocation on a network (CLI `ipam ls`), or none when the
    /// network does not exist.
    pub fn allocations(&self, network: &str) -> Vec<Value> {
        let out = self.netloom(&["--json", "ipam", "ls", network]);
        if !out.status.success() {
            return Vec::new();
        }
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Networks netloom holds (CLI `network ls`).
    pub fn networks(&self) -> Vec<Value> {
        self.netloom_json(&["network", "ls"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The address part of every `ips` entry.
pub fn ips_of(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect()
}

/// The bare IP of an `ADDR/LEN`.
pub fn bare(addr: &str) -> &str {
    addr.split('/').next().unwrap()
}
