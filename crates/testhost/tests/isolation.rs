//! The host is really isolated from the machine, and cleans up after itself.

use std::path::Path;
use std::process::Command;

use netloom_testhost::{host_or_skip, Host};

/// A short name unique to this process and call site.
fn unique(tag: &str) -> String {
    format!("th{}{tag}", std::process::id() % 100_000)
}

fn links_on_machine() -> String {
    // `ip link` here runs in the test process's own namespace, the machine's.
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ip link show failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn link_made_inside_is_invisible_outside() {
    let host = host_or_skip!();
    let name = unique("br");
    let status = host
        .command("ip")
        .args(["link", "add", &name, "type", "bridge"])
        .status()
        .unwrap();
    assert!(status.success(), "ip link add inside the host failed");

    let inside = host
        .command("ip")
        .args(["-o", "link", "show", &name])
        .output()
        .unwrap();
    assert!(
        inside.status.success(),
        "the link is missing inside the host"
    );
    assert!(String::from_utf8_lossy(&inside.stdout).contains(&name));
    assert!(host.enter(|| Path::new("/sys/class/net").join(&name).exists()));

    assert!(
        !links_on_machine().contains(&name),
        "link {name} leaked onto the machine"
    );
    assert!(!Path::new("/sys/class/net").join(&name).exists());
}

#[test]
fn loopback_is_up_and_alone() {
    let host = host_or_skip!();
    let names: Vec<String> = host.enter(|| {
        std::fs::read_dir("/sys/class/net")
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    });
    assert_eq!(names, vec!["lo".to_string()]);
    let flags = host.enter(|| std::fs::read_to_string("/sys/class/net/lo/flags").unwrap());
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is not up inside the host");
    let ping = host
        .command("ping")
        .args(["-c1", "-W1", "127.0.0.1"])
        .output();
    match ping {
        Ok(out) => assert!(out.status.success(), "ping 127.0.0.1 in host: {out:?}"),
        Err(e) => netloom_testhost::skip(format!("ping part: cannot run ping: {e}")),
    }
}

#[test]
fn run_is_private() {
    let host = host_or_skip!();
    let file = format!("/run/netns/{}", unique("file"));
    // /run/netns exists and is empty inside; a file made there (both by a
    // thread and by a command) stays inside.
    let listed = host.enter(|| {
        let before: Vec<_> = std::fs::read_dir("/run/netns").unwrap().collect();
        std::fs::write(&file, b"inside").unwrap();
        before.len()
    });
    assert_eq!(listed, 0);
    let made_by_command = format!("{file}.cmd");
    assert!(host
        .command("touch")
        .arg(&made_by_command)
        .status()
        .unwrap()
        .success());

    assert!(host.enter(|| Path::new(&file).exists()));
    assert!(host.enter(|| Path::new(&made_by_command).exists()));
    assert!(!Path::new(&file).exists(), "{file} leaked onto the machine");
    assert!(!Path::new(&made_by_command).exists());

    // A named netns made by `ip netns add` inside is invisible outside.
    let ns = unique("ns");
    assert!(host
        .command("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let listed = host.command("ip").args(["netns", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&ns));
    assert!(!Path::new("/run/netns").join(&ns).exists());
}

#[test]
fn hosts_are_separate_from_each_other() {
    let a = host_or_skip!();
    let b = Host::new();
    let name = unique("sep");
    assert!(a
        .command("ip")
        .args(["link", "add", &name, "type", "bridge"])
        .status()
        .unwrap()
        .success());
    assert!(a.enter(|| Path::new("/sys/class/net").join(&name).exists()));
    assert!(!b.enter(|| Path::new("/sys/class/net").join(&name).exists()));
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    assert_ne!(ino(a.netns_path()), ino(b.netns_path()));
    assert_ne!(ino(a.netns_path()), ino(Path::new("/proc/self/ns/net")));
}

#[test]
fn many_hosts_in_parallel() {
    netloom_testhost::require_root!();
    let hosts: Vec<Host> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| s.spawn(|| (0..4).map(|_| Host::new()).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(hosts.len(), 32);
    // Hosts made on threads that have exited still live (the holder is tied
    // to the process, not to the thread that asked for it).
    for host in &hosts {
        assert!(Path::new(&format!("/proc/{}", host.pid())).exists());
        assert_eq!(
            host.enter(|| std::fs::read_dir("/sys/class/net").unwrap().count()),
            1
        );
    }
    let mut inodes: Vec<u64> = hosts
        .iter()
        .map(|h| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(h.netns_path()).unwrap()))
        .collect();
    inodes.sort_unstable();
    inodes.dedup();
    assert_eq!(inodes.len(), 32, "two hosts share a network namespace");
}

#[test]
fn drop_leaves_no_holder() {
    let host = host_or_skip!();
    let pid = host.pid();
    let proc_dir = format!("/proc/{pid}");
    let cmdline = std::fs::read(format!("{proc_dir}/cmdline")).unwrap();
    assert_eq!(cmdline, b"sleep\0infinity\0");
    drop(host);
    // Reaped, so the pid is gone (or, very unlikely, reused by another program).
    match std::fs::read(format!("{proc_dir}/cmdline")) {
        Err(_) => {}
        Ok(other) => assert_ne!(other, cmdline, "holder {pid} still runs after drop"),
    }
}

#[test]
fn panics_in_enter_reach_the_caller() {
    let host = host_or_skip!();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        host.enter(|| panic!("boom inside"));
    }));
    assert!(caught.is_err());
    // The calling thread is still in the machine's namespace.
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    // /proc/self is the main thread, which no test ever moves.
    let machine = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_eq!(ours, machine);
}
