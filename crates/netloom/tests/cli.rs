//! The CLI as a user and a script see it: exit codes, text, JSON shapes.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct State(PathBuf);

impl State {
    pub fn new(tag: &str) -> State {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("netloom-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        State(dir)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_netloom"))
            .env("NETLOOM_STATE_DIR", &self.0)
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail with exit 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "a failed command prints nothing on stdout"
        );
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.starts_with("netloom: error: "), "{err}");
        err
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn network_lifecycle_and_json_shapes() {
    let s = State::new("life");
    let created = s.json(&[
        "network",
        "create",
        "--driver",
        "null",
        "web",
        "--subnet",
        "10.88.0.0/24",
        "--subnet",
        "fd00:88::/64",
        "--ip-range",
        "10.88.0.128/25",
        "--aux-address",
        "router=10.88.0.2",
        "--ipam-policy",
        "lowest",
    ]);
    assert_eq!(created["name"], "web");
    assert_eq!(created["driver"], "null");
    assert_eq!(created["address_space"], "local");
    assert_eq!(created["ipam_policy"], "lowest");
    assert_eq!(created["mode"], "shared");
    assert_eq!(created["id"].as_str().unwrap().len(), 64);
    assert_eq!(created["subnets"][0]["subnet"], "10.88.0.0/24");
    assert_eq!(created["subnets"][0]["gateway"], "10.88.0.1");
    assert_eq!(created["subnets"][0]["ip_range"], "10.88.0.128/25");
    assert_eq!(
        created["subnets"][0]["aux_addresses"]["router"],
        "10.88.0.2"
    );
    assert_eq!(created["subnets"][1]["gateway"], "fd00:88::1");

    let lease = s.json(&["ipam", "allocate", "web", "--owner", "c1"]);
    assert_eq!(lease["network"], "web");
    assert_eq!(lease["owner"], "c1");
    assert_eq!(lease["leases"][0]["family"], "v4");
    assert_eq!(lease["leases"][0]["address"], "10.88.0.128/24");
    assert_eq!(lease["leases"][0]["gateway"], "10.88.0.1");
    assert_eq!(lease["leases"][0]["subnet"], "10.88.0.0/24");
    assert_eq!(lease["leases"][1]["family"], "v6");
    assert_eq!(lease["leases"][1]["address"], "fd00:88::2/64");

    // Text mode prints the addresses, one per line.
    assert_eq!(
        s.ok(&[
            "ipam",
            "allocate",
            "web",
            "--owner",
            "c2",
            "--ip",
            "10.88.0.9"
        ]),
        "10.88.0.9/24\nfd00:88::3/64\n"
    );

    let ls = s.json(&["ipam", "ls", "web"]);
    let rows = ls.as_array().unwrap();
    assert_eq!(
        rows.len(),
        7,
        "2 gateways, 1 reservation, 4 endpoint addresses: {ls}"
    );
    assert!(rows.iter().any(|r| r["address"] == "10.88.0.2"
        && r["owner"]["kind"] == "reserved"
        && r["owner"]["id"] == "router"));
    assert!(rows
        .iter()
        .any(|r| r["address"] == "10.88.0.1" && r["owner"]["kind"] == "gateway"));
    assert!(rows.iter().any(|r| r["address"] == "10.88.0.9"
        && r["owner"] == serde_json::json!({"kind": "endpoint", "id": "c2"})));

    let inspect = s.json(&["network", "inspect", "web"]);
    assert_eq!(inspect["owners"], 2);
    assert_eq!(inspect["usage"][0]["pool"], "10.88.0.128/25");
    assert_eq!(inspect["usage"][0]["pool_size"], "127");
    assert_eq!(inspect["usage"][0]["allocated_in_pool"], 1);
    assert_eq!(inspect["usage"][1]["pool_size"], "18446744073709551615");

    let nets = s.json(&["network", "ls"]);
    assert_eq!(nets.as_array().unwrap().len(), 1);
    assert!(s.ok(&["network", "ls"]).contains("web"));

    let released = s.json(&["ipam", "release", "web", "--owner", "c1"]);
    assert_eq!(
        released["released"],
        serde_json::json!(["10.88.0.128", "fd00:88::2"])
    );
    let again = s.json(&["ipam", "release", "web", "--owner", "c1"]);
    assert_eq!(again["released"], serde_json::json!([]));

    let err = s.fails(&["network", "rm", "web"]);
    assert!(err.contains("\"c2\"") && err.contains("--force"), "{err}");
    assert_eq!(
        s.json(&["check"]),
        serde_json::json!({"clean": true, "violations": []})
    );
    assert!(s
        .ok(&["network", "rm", "web", "--force"])
        .contains("removed network web"));
    assert_eq!(s.json(&["network", "ls"]), serde_json::json!([]));
    assert_eq!(s.ok(&["check"]), "clean\n");
}

#[test]
fn refusals_exit_1_and_change_nothing() {
    let s = State::new("refuse");
    s.ok(&[
        "network",
        "create",
        "--driver",
        "null",
        "web",
        "--subnet",
        "10.1.0.0/24",
    ]);
    s.ok(&["ipam", "allocate", "web", "--owner", "c1"]);
    let before = s.ok(&["--json", "ipam", "ls", "web"]);
    for (args, needle) in [
        (
            vec![
                "ipam", "allocate", "web", "--owner", "c2", "--ip", "10.1.0.2",
            ],
            "already allocated to owner \"c1\"",
        ),
        (
            vec![
                "ipam", "allocate", "web", "--owner", "c2", "--ip", "fd00::5",
            ],
            "no IPv6 subnet",
        ),
        (
            vec![
                "ipam",
                "allocate",
                "web",
                "--owner",
                "c2",
                "--ip",
                "10.1.0.300",
            ],
            "invalid requested address \"10.1.0.300\"",
        ),
        (
            vec![
                "network",
                "create",
                "--driver",
                "null",
                "db",
                "--subnet",
                "10.0.0.0/8",
            ],
            "overlaps network \"web\"",
        ),
        (
            vec![
                "network",
                "create",
                "db",
                "--subnet",
                "10.2.0.0/24",
                "--driver",
                "warp",
            ],
            "unknown driver \"warp\"",
        ),
        (
            vec!["network", "create", "--driver", "null", "db"],
            "no subnet given",
        ),
        (
            vec!["network", "inspect", "nope"],
            "network \"nope\" does not exist",
        ),
    ] {
        let err = s.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(s.ok(&["--json", "ipam", "ls", "web"]), before);
    // A usage error is clap's exit 2, not a refusal.
    assert_eq!(s.run(&["ipam", "allocate", "web"]).status.code(), Some(2));
}

#[test]
fn pooled_mode_gives_host_prefix_and_own_gateway() {
    let s = State::new("pooled");
    s.ok(&[
        "network",
        "create",
        "--driver",
        "null",
        "routed",
        "--mode",
        "pooled",
        "--subnet",
        "10.9.0.0/29",
    ]);
    let l = s.json(&["ipam", "allocate", "routed", "--owner", "a"]);
    assert_eq!(l["leases"][0]["address"], "10.9.0.1/32");
    assert_eq!(l["leases"][0]["gateway"], "10.9.0.2");
    let l = s.json(&["ipam", "allocate", "routed", "--owner", "b"]);
    assert_eq!(l["leases"][0]["address"], "10.9.0.3/32");
    assert_eq!(l["leases"][0]["gateway"], "10.9.0.4");
    assert_eq!(s.ok(&["check"]), "clean\n");
}

#[test]
fn check_reports_each_violation_and_exits_1() {
    let s = State::new("check");
    s.ok(&[
        "network",
        "create",
        "--driver",
        "null",
        "web",
        "--subnet",
        "10.1.0.0/24",
    ]);
    s.ok(&["ipam", "allocate", "web", "--owner", "c1"]);
    s.ok(&["ipam", "allocate", "web", "--owner", "c2"]);
    // Break the state behind netloom's back: c2 onto the broadcast address,
    // and a second IPv4 address for c1 outside the subnet.
    let db = rusqlite::Connection::open(s.0.join("state.db")).unwrap();
    let bcast = u128::from(u32::from(std::net::Ipv4Addr::new(10, 1, 0, 255))).to_be_bytes();
    let outside = u128::from(u32::from(std::net::Ipv4Addr::new(10, 2, 0, 5))).to_be_bytes();
    db.execute(
        "UPDATE allocations SET addr = ?1 WHERE owner = 'c2'",
        [&bcast[..]],
    )
    .unwrap();
    db.execute(
        "INSERT INTO allocations SELECT net, family, ?1, subnet_idx, 'peer-gateway', 'c1' FROM allocations WHERE owner = 'c1'",
        [&outside[..]],
    )
    .unwrap();
    drop(db);
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("invariant 1:")
            && l.contains("10.1.0.255")
            && l.contains("broadcast")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("invariant 2:")
            && l.contains("10.2.0.5")
            && l.contains("outside")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("invariant 4:") && l.contains("shared")),
        "{text}"
    );
    let j = s.json_any(&["check"]);
    assert_eq!(j["clean"], false);
    assert_eq!(j["violations"].as_array().unwrap().len(), lines.len());
}

impl State {
    /// JSON output of a command whatever its exit code.
    fn json_any(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_slice(&self.run(&all).stdout).unwrap()
    }
}

#[test]
fn help_teaches() {
    let s = State::new("help");
    let top = s.ok(&["--help"]);
    for word in [
        "network",
        "ipam",
        "check",
        "--state-dir",
        "NETLOOM_STATE_DIR",
        "--json",
        "Examples",
    ] {
        assert!(top.contains(word), "--help lacks {word}: {top}");
    }
    let create = s.ok(&["network", "create", "--driver", "null", "--help"]);
    for word in [
        "--subnet",
        "--gateway",
        "--ip-range",
        "--aux-address",
        "--address-space",
        "--ipam-policy",
        "sequential",
        "lowest",
        "Examples",
    ] {
        assert!(create.contains(word), "network create --help lacks {word}");
    }
}

/// netloom starts without Rust's own start-up code (see its `main`); what
/// it keeps of it holds: a write to a pipe nobody reads is an error, not
/// death by SIGPIPE.
#[test]
fn a_write_to_a_closed_pipe_is_an_error_not_a_signal() {
    use std::os::unix::process::ExitStatusExt;
    let s = State::new("sigpipe");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_netloom"))
        .env("NETLOOM_STATE_DIR", &s.0)
        .args(["network", "ls"])
        .stdout(writer)
        .status()
        .unwrap();
    assert_eq!(status.signal(), None, "killed by a signal: {status}");
    assert!(!status.success(), "a write to a closed pipe went unnoticed");
}
