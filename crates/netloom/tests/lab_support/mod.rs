//! Helpers for the lab tests: lab files in the test host, TCP and ping by
//! traffic with retries (the machine's ARP table is shared by every
//! namespace and may be briefly full under load), and what the kernel holds.

#![allow(dead_code)]

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::support::{World, STATE};

/// Writes a lab file under the host's private /run; returns its path.
pub fn lab_file(w: &World, name: &str, text: &str) -> String {
    let path = format!("/run/{name}.toml");
    w.host.enter(|| std::fs::write(&path, text)).unwrap();
    path
}

/// A lab of nodes with fixed addresses `172.18.0.(10+i)`.
pub fn fixed_lab(name: &str, nodes: &[&str]) -> String {
    let mut t = format!("name = \"{name}\"\n");
    for (i, n) in nodes.iter().enumerate() {
        t.push_str(&format!(
            "[[node]]\nname = \"{n}\"\naddress = \"172.18.0.{}\"\n",
            10 + i
        ));
    }
    t
}

/// A lab of `n` nodes named `n0`, `n1`, ... with addresses from the plan.
pub fn numbered_lab(name: &str, n: usize) -> String {
    let mut t = format!("name = \"{name}\"\n");
    for i in 0..n {
        t.push_str(&format!("[[node]]\nname = \"n{i}\"\n"));
    }
    t
}

/// `netloom lab exec LAB NODE -- ARGS`.
pub fn exec(w: &World, lab: &str, node: &str, args: &[&str]) -> Output {
    let mut a = vec!["lab", "exec", lab, node, "--"];
    a.extend_from_slice(args);
    w.netloom(&a)
}

/// Starts `netloom lab serve` on a node (answers `NODE.LAB`).
/// A child process killed and reaped when dropped, so a failing test
/// leaves no server behind holding the test's output open.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn serve(w: &World, lab: &str, node: &str, port: u16) -> KillOnDrop {
    let child = w
        .host
        .command(env!("CARGO_BIN_EXE_netloom"))
        .env("NETLOOM_STATE_DIR", STATE)
        .args([
            "lab",
            "exec",
            lab,
            node,
            "--",
            env!("CARGO_BIN_EXE_netloom"),
            "lab",
            "serve",
            "--port",
        ])
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Reads what a TCP server at HOST:PORT answers, from inside a lab node
/// (`Some((lab, node))`) or the host; retries for up to 3 s; `None` if it
/// never answered.
pub fn tcp_answer(w: &World, from: Option<(&str, &str)>, host: &str, port: u16) -> Option<String> {
    let script = format!("exec 3<>/dev/tcp/{host}/{port} && timeout 2 cat <&3");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = match from {
            Some((lab, node)) => exec(w, lab, node, &["timeout", "2", "bash", "-c", &script]),
            None => w.sh(&format!("timeout 2 bash -c '{script}'")),
        };
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.is_empty() {
            return Some(text);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a node gets a ping answer from `target` within 3 s of tries.
pub fn pings(w: &World, lab: &str, node: &str, target: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if exec(w, lab, node, &["ping", "-c1", "-W1", "-q", target])
            .status
            .success()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Named namespaces in the host's /run/netns.
pub fn namespaces(w: &World) -> Vec<String> {
    w.host
        .enter(|| {
            std::fs::read_dir("/run/netns").map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
        })
        .unwrap_or_default()
}

/// Lab names from `lab ls --json`.
pub fn labs(w: &World) -> Vec<String> {
    w.json(&["lab", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect()
}

/// Nothing of any lab is left: no namespace, no gateway link, no host
/// table, no record; `netloom check` is clean.
pub fn nothing_left(w: &World) {
    assert!(labs(w).is_empty(), "{:?}", labs(w));
    let ns = namespaces(w);
    assert!(ns.is_empty(), "namespaces left: {ns:?}");
    // `lab down` releases the namespaces and the kernel reaps them, with
    // their links, in the background: `check` is clean at once, and the
    // links are gone soon after.
    w.assert_clean();
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.host_links().iter().any(|l| l.starts_with("nl")) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !w.host_links().iter().any(|l| l.starts_with("nl")),
        "links left: {:?}",
        w.host_links()
    );
    let tables = w.sh("nft list tables");
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("netloom-lab"),
        "{}",
        String::from_utf8_lossy(&tables.stdout)
    );
    let nets = w.json(&["network", "ls"]);
    assert!(nets.as_array().unwrap().is_empty(), "{nets}");
    w.assert_clean();
}
