//! 16 concurrent workers, each running 200 separate `netloom ipam allocate`
//! processes on one network: 3,200 distinct addresses, none lost, none
//! doubled, and `netloom check` clean.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const WORKERS: usize = 16;
const PER_WORKER: usize = 200;

#[test]
fn sixteen_processes_never_double_allocate() {
    let dir = PathBuf::from(if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    })
    .join(format!("netloom-concurrency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let netloom = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_netloom"))
            .env("NETLOOM_STATE_DIR", &dir)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(netloom(&[
        "network",
        "create",
        "--driver",
        "null",
        "big",
        "--subnet",
        "10.20.0.0/20",
        "--subnet",
        "fd00:20::/64"
    ])
    .status
    .success());

    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..PER_WORKER {
                    let owner = format!("w{w}-{i}");
                    let out = Command::new(env!("CARGO_BIN_EXE_netloom"))
                        .env("NETLOOM_STATE_DIR", &dir)
                        .args(["ipam", "allocate", "big", "--owner", &owner])
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{owner}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    let text = String::from_utf8(out.stdout).unwrap();
                    got.extend(text.lines().map(|l| (owner.clone(), l.to_string())));
                }
                got
            })
        })
        .collect();
    let all: Vec<(String, String)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        all.len(),
        WORKERS * PER_WORKER * 2,
        "one IPv4 and one IPv6 address each"
    );
    let distinct: BTreeSet<&str> = all.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(distinct.len(), all.len(), "an address was handed out twice");

    // What the processes printed is exactly what the store holds.
    let ls: serde_json::Value =
        serde_json::from_slice(&netloom(&["--json", "ipam", "ls", "big"]).stdout).unwrap();
    let stored: BTreeSet<String> = ls
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["owner"]["kind"] == "endpoint")
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    let printed: BTreeSet<String> = all
        .iter()
        .map(|(_, a)| a.split('/').next().unwrap().to_string())
        .collect();
    assert_eq!(stored, printed, "an allocation was lost or invented");

    let check = netloom(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(String::from_utf8(check.stdout).unwrap(), "clean\n");
    let _ = std::fs::remove_dir_all(&dir);
}
