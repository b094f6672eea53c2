//! `netloom serve`: commands handed to a resident netloom do the same work
//! and print the same things as commands that do it themselves; commands
//! that cannot be served (no service, another binary, other namespaces)
//! do the work themselves, or fail under NETLOOM_SERVICE=require. In
//! throwaway hosts, asserted by traffic, kernel state and exit codes.

mod cni_support;
mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};

use serde_json::json;
use support::{ask_tcp, serve_tcp, World, STATE};

const BIN: &str = env!("CARGO_BIN_EXE_netloom");

/// A running `netloom serve`.
struct Service {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    /// What it said as it started.
    line: String,
}

impl Service {
    /// Starts `command` (a `netloom ... serve`) and waits until it listens.
    fn start(mut command: Command) -> Service {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // A binary copied just now is busy while a process another test
        // thread forks meanwhile still holds the copy's descriptor (until
        // it execs); that passes within milliseconds.
        let mut tries = 0;
        let mut child = loop {
            match command.spawn() {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => break other.expect("start netloom serve"),
            }
        };
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        // Its log lines (when it logs at debug level) may come first.
        let mut said = String::new();
        let mut line = String::new();
        while !line.contains("serving") {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            said.push_str(&line);
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!("netloom serve did not start: {said:?}");
            }
        }
        Service {
            child,
            stderr,
            line,
        }
    }

    /// SIGTERM; it must exit 0 saying it stopped. What it said after it
    /// started.
    fn stop(mut self) -> String {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        assert!(
            status.success(),
            "netloom serve exited with {status}: {rest}"
        );
        assert!(rest.contains("stopped serving"), "{rest}");
        rest
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn in_world(w: &World, mode: &str, args: &[&str]) -> Output {
    w.host
        .command(BIN)
        .env("NETLOOM_STATE_DIR", STATE)
        .env("NETLOOM_SERVICE", mode)
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn served_connects_and_disconnects_do_the_work_and_answer_alike() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "a"]);
    w.ok(&["sandbox", "create", "b"]);
    let mut serve = w.host.command(BIN);
    serve.env("NETLOOM_STATE_DIR", STATE).arg("serve");
    let svc = Service::start(serve);

    // --json output, as a direct connect gives it.
    let out = in_world(
        &w,
        "require",
        &["--json", "connect", "web", "a", "--publish", "8080:80"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(a["state"], "ready");
    assert_eq!(a["leases"][0]["address"], "10.88.0.2/24");
    assert_eq!(a["ports"][0]["host_port"], 8080, "{a}");
    // Text output.
    let out = in_world(
        &w,
        "require",
        &["connect", "web", "b", "--ip", "10.88.0.50"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("eth0 10.88.0.50/24 "),
        "{}",
        text(&out)
    );
    // The work is done: traffic passes, the published port is in the rules.
    assert!(w.ping("a", "10.88.0.50"), "a -> b");
    assert!(w.ping("b", "10.88.0.2"), "b -> a");
    assert!(w.sh("nft list ruleset | grep -q 8080").status.success());
    w.assert_clean();

    // Errors come back with the direct command's text and exit code, and
    // the service goes on serving.
    let out = in_world(&w, "require", &["connect", "nope", "a"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("network \"nope\" does not exist"), "{err}");
    let direct = in_world(&w, "off", &["connect", "nope", "a"]);
    assert_eq!(out.stderr, direct.stderr);
    // An address another endpoint holds.
    let out = in_world(
        &w,
        "require",
        &["connect", "web", "a", "--ip", "10.88.0.50"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("10.88.0.50"),
        "{}",
        text(&out)
    );

    let out = in_world(&w, "require", &["--json", "disconnect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["disconnected"].as_array().unwrap().len(), 1, "{d}");
    assert!(!w.ping("b", "10.88.0.2"), "a is gone");
    assert!(!w.sh("nft list ruleset | grep -q 8080").status.success());
    w.assert_clean();

    // Stopped: the socket is gone; required service fails, auto does the
    // work itself.
    let _ = svc.stop();
    assert!(!w
        .sh(&format!("test -e {STATE}/netloom.sock"))
        .status
        .success());
    let out = in_world(&w, "require", &["disconnect", "web", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no `netloom serve` listens"), "{err}");
    assert!(w.links_in_service(Some("b")).contains(&"eth0".to_string()));
    let out = in_world(&w, "auto", &["disconnect", "web", "b"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!w.links_in_service(Some("b")).contains(&"eth0".to_string()));
    w.assert_clean();
}

/// The service makes an endpoint's links on its second thread while it
/// records the endpoint. A connect the store refuses (a host port another
/// endpoint publishes) takes away only the links it made, not the rule
/// of the endpoint that holds the port; a connect the kernel refuses (an
/// interface name the sandbox already uses outside netloom) takes its
/// record and rules away too. Nothing is left either way.
#[test]
fn a_served_connect_refused_by_the_store_or_the_kernel_leaves_nothing() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    for s in ["a", "b", "c"] {
        w.ok(&["sandbox", "create", s]);
    }
    let mut serve = w.host.command(BIN);
    serve.env("NETLOOM_STATE_DIR", STATE).arg("serve");
    let _svc = Service::start(serve);
    let out = in_world(
        &w,
        "require",
        &["connect", "web", "a", "--publish", "8080:80"],
    );
    assert!(out.status.success(), "{}", text(&out));
    serve_tcp(&w, "a", 80, "a");
    assert!(ask_tcp(&w, None, "10.88.0.1:8080").is_some_and(|r| r.starts_with("a ")));
    let links = w.links_in_service(None);

    // The store refuses: the port is a's.
    let out = in_world(
        &w,
        "require",
        &["connect", "web", "b", "--publish", "8080:80"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("host port 8080/tcp is already published by sandbox \"a\""),
        "{}",
        text(&out)
    );
    assert!(ask_tcp(&w, None, "10.88.0.1:8080").is_some_and(|r| r.starts_with("a ")));
    assert!(!w.links_once_reaped(Some("b")).contains(&"eth0".to_string()));
    assert_eq!(w.links_once_reaped(None), links);
    w.assert_clean();

    // The kernel refuses: c has an eth0 that netloom did not make.
    w.sh_ok("ip -n c link add eth0 type veth peer name peer0");
    let out = in_world(
        &w,
        "require",
        &["connect", "web", "c", "--publish", "9090:80"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("eth0"),
        "{}",
        text(&out)
    );
    let eps = w.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().unwrap().len(), 1, "only a's: {eps}");
    assert!(!w.sh("nft list ruleset | grep -q 9090").status.success());
    assert_eq!(w.links_once_reaped(None), links);
    assert!(w.links_in_service(Some("c")).contains(&"eth0".to_string()));
    w.assert_clean();

    // And it serves on: c under another name, b without the port.
    let out = in_world(&w, "require", &["connect", "web", "c", "--ifname", "eth1"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = in_world(&w, "require", &["connect", "web", "b"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(w.ping("b", "10.88.0.2"), "b -> a");
    assert!(w.ping("c", "10.88.0.2"), "c -> a");
    w.assert_clean();
}

/// The service keeps its state database open for as long as it runs:
/// between requests it folds the write-ahead log into the database, so
/// the log stays a few hundred KiB however many requests it serves (each
/// connect and disconnect adds some 80 KiB, which without that piled up
/// until the service stopped).
#[test]
fn a_long_running_service_keeps_its_write_ahead_log_small() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "a"]);
    let mut serve = w.host.command(BIN);
    serve.env("NETLOOM_STATE_DIR", STATE).arg("serve");
    let svc = Service::start(serve);
    let wal = || -> u64 {
        let out = w.sh(&format!("stat -c %s {STATE}/state.db-wal"));
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    let mut max = 0;
    for _ in 0..60 {
        for args in [
            &["connect", "web", "a", "--publish", "8080:80"][..],
            &["disconnect", "web", "a"][..],
        ] {
            let out = in_world(&w, "require", args);
            assert!(out.status.success(), "{}", text(&out));
        }
        max = max.max(wal());
    }
    assert!(max < 2 << 20, "the log grew to {max} bytes");
    let _ = svc.stop();
    w.assert_clean();
}

/// `binary` with the first byte of its GNU build ID changed.
fn with_another_build_id(binary: &[u8]) -> Vec<u8> {
    let mut bytes = binary.to_vec();
    // An NT_GNU_BUILD_ID note: name size 4, a descriptor of some size,
    // type 3, name "GNU\0", then the ID.
    let at = (8..=32u32)
        .find_map(|len| {
            let mut head = Vec::new();
            for w in [4u32, len, 3] {
                head.extend_from_slice(&w.to_ne_bytes());
            }
            head.extend_from_slice(b"GNU\0");
            bytes
                .windows(head.len())
                .position(|w| w == head.as_slice())
                .map(|i| i + head.len())
        })
        .expect("the netloom binary has a GNU build ID note");
    bytes[at] ^= 0xff;
    bytes
}

/// Sends `request` as one frame to the service socket at `path`; the reply.
fn raw_exchange(path: &std::path::Path, request: &serde_json::Value) -> serde_json::Value {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    let body = serde_json::to_vec(request).unwrap();
    s.write_all(&(body.len() as u32).to_le_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    serde_json::from_slice(&reply).unwrap()
}

#[test]
fn a_service_of_other_namespaces_or_another_binary_is_not_used() {
    let (Some(here), Some(there)) = (World::new(), World::new()) else {
        return;
    };
    // One state directory both hosts see (/tmp is shared between them).
    let dir = std::env::temp_dir().join(format!("netloom-service-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let state = state.to_str().unwrap();
    let cli = |w: &World, mode: &str, args: &[&str]| {
        w.host
            .command(BIN)
            .env("NETLOOM_STATE_DIR", state)
            .env("NETLOOM_SERVICE", mode)
            .args(args)
            .output()
            .unwrap()
    };
    // A service of `binary` in `w` on the shared state; what a required
    // connect from `here` says, which must fail.
    let refused_by = |w: &World, binary: &std::path::Path| {
        let mut serve = w.host.command(binary);
        serve.env("NETLOOM_STATE_DIR", state).arg("serve");
        let svc = Service::start(serve);
        let out = cli(&here, "require", &["connect", "web", "a"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        (svc, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (svc, err) = refused_by(&there, std::path::Path::new(BIN));
    assert!(err.contains("another network namespace"), "{err}");
    let _ = svc.stop();

    // A binary of another build (its build ID changed) is another binary.
    let other = dir.join("netloom-other");
    std::fs::write(&other, with_another_build_id(&std::fs::read(BIN).unwrap())).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (svc, err) = refused_by(&here, &other);
    assert!(err.contains("another netloom binary"), "{err}");
    // A request it cannot read (here: an identity of an older form) is
    // refused as coming from another binary, not left unanswered.
    let old_request = json!({
        "identity": {"exe": [1, 2, 3, 4, 5], "namespaces": [1, 2, 3]},
        "job": {"Disconnect": {"json": false, "network": "web", "sandbox": "a", "ifname": null}}
    });
    let reply = raw_exchange(&dir.join("state/netloom.sock"), &old_request);
    let why = reply["Refused"].as_str().unwrap_or_default();
    assert!(why.contains("another netloom binary"), "{reply}");
    // Not required: the command does the work itself, and it is done.
    assert!(cli(
        &here,
        "auto",
        &["network", "create", "web", "--subnet", "10.88.0.0/24"]
    )
    .status
    .success());
    assert!(cli(&here, "auto", &["sandbox", "create", "a"])
        .status
        .success());
    let out = cli(&here, "auto", &["connect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    let addrs = here.addrs("a", "eth0");
    assert!(addrs.contains(&"10.88.0.2/24".to_string()), "{addrs:?}");
    let _ = svc.stop();
    // A byte-for-byte copy runs the same code: it serves.
    let copy = dir.join("netloom-copy");
    std::fs::copy(BIN, &copy).unwrap();
    let mut serve = here.host.command(&copy);
    serve.env("NETLOOM_STATE_DIR", state).arg("serve");
    let svc = Service::start(serve);
    // A command in another mount namespace, in the same network one, is
    // not served.
    let out = here
        .host
        .command("unshare")
        .args(["--mount", "--propagation", "private", BIN])
        .args(["connect", "web", "a"])
        .env("NETLOOM_STATE_DIR", state)
        .env("NETLOOM_SERVICE", "require")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another mount namespace"), "{err}");
    let out = cli(&here, "require", &["disconnect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    let _ = svc.stop();
    let out = cli(&here, "off", &["check"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "clean\n",
        "{}",
        text(&out)
    );
    assert!(cli(&here, "off", &["network", "rm", "web"])
        .status
        .success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cni_add_check_del_are_served() {
    let Some(c) = cni_support::Cni::host() else {
        return;
    };
    let mut serve = c.netloom_command();
    serve.env("NETLOOM_LOG", "debug").arg("serve");
    let svc = Service::start(serve);
    let conf = cni_support::conf(
        "1.1.0",
        "web",
        json!({ "driver": "bridge", "subnets": ["10.88.0.0/24"] }),
    );
    let req = ("NETLOOM_SERVICE", "require");
    let mut results = Vec::new();
    for cid in ["c1", "c2"] {
        let ns = c.netns(cid);
        let vars = [
            ("CNI_CONTAINERID", cid),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ns.as_str()),
            req,
        ];
        let r = c.run("ADD", &vars, conf.to_string().as_bytes()).ok();
        assert_eq!(r["cniVersion"], "1.1.0");
        let check = cni_support::with_prev(&conf, &r);
        c.run("CHECK", &vars, check.to_string().as_bytes())
            .ok_empty();
        results.push((cid, ns, r));
    }
    let ips: Vec<String> = results
        .iter()
        .map(|(_, _, r)| cni_support::ips_of(r)[0].clone())
        .collect();
    assert_ne!(ips[0], ips[1]);
    assert!(c.ping("c1", cni_support::bare(&ips[1])), "c1 -> c2");
    // An error comes back as the spec's error object, with its code.
    let vars = [
        ("CNI_CONTAINERID", "c1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", results[0].1.as_str()),
        req,
    ];
    let again = c.run("ADD", &vars, conf.to_string().as_bytes());
    let e = again.err(7);
    assert!(
        e["msg"].as_str().unwrap().contains("already has interface"),
        "{e}"
    );
    for (cid, ns, r) in &results {
        let vars = [
            ("CNI_CONTAINERID", *cid),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ns.as_str()),
            req,
        ];
        let del = cni_support::with_prev(&conf, r);
        c.run("DEL", &vars, del.to_string().as_bytes()).ok_empty();
    }
    assert!(!c.ping("c1", cni_support::bare(&ips[1])), "c2 is gone");
    // IPAM mode (netloom under another plugin, such as the reference
    // bridge, which passes its whole config) is served as well.
    let ipam_conf = json!({
        "cniVersion": "1.1.0", "name": "refbr", "type": "bridge",
        "ipam": {"type": "netloom", "ranges": [[{"subnet": "10.71.0.0/24", "gateway": "10.71.0.1"}]]}
    });
    let ns = c.netns("i1");
    let vars = [
        ("CNI_CONTAINERID", "i1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", ns.as_str()),
        req,
    ];
    let r = c.run("ADD", &vars, ipam_conf.to_string().as_bytes()).ok();
    assert_eq!(
        cni_support::ips_of(&r),
        vec!["10.71.0.2/24".to_string()],
        "{r}"
    );
    c.run("DEL", &vars, ipam_conf.to_string().as_bytes())
        .ok_empty();
    c.assert_clean();
    // Each call went out from the bare entry and was served: two ADDs, two
    // CHECKs, the failing ADD and two DELs; the IPAM ADD and DEL.
    let said = svc.stop();
    assert_eq!(
        said.matches("a request from the bare entry: served")
            .count(),
        9,
        "{said}"
    );
    // No service: required, ADD fails with "try again later" (11).
    let ns = c.netns("c3");
    let vars = [
        ("CNI_CONTAINERID", "c3"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", ns.as_str()),
        req,
    ];
    let e = c.run("ADD", &vars, conf.to_string().as_bytes()).err(11);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("no `netloom serve` listens"),
        "{e}"
    );
    c.assert_clean();
}

#[test]
fn parallel_cni_calls_through_a_service_with_two_workers() {
    const N: usize = 24;
    let Some(c) = cni_support::Cni::host() else {
        return;
    };
    let mut serve = c.netloom_command();
    serve.args(["serve", "--workers", "2"]);
    let svc = Service::start(serve);
    assert!(svc.line.contains("2 workers"), "{}", svc.line);
    let conf = cni_support::conf("1.1.0", "swarm", json!({ "subnets": ["10.55.0.0/24"] }));
    let names: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    let paths: Vec<String> = names.iter().map(|n| c.netns(n)).collect();
    let call = |cmd: &str, i: usize, stdin: String| {
        let vars = [
            ("CNI_CONTAINERID", names[i].as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", paths[i].as_str()),
            ("NETLOOM_SERVICE", "require"),
        ];
        c.run(cmd, &vars, stdin.as_bytes())
    };
    let results: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (call, conf) = (&call, &conf);
                s.spawn(move || call("ADD", i, conf.to_string()).ok())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(c.networks().len(), 1, "one network, created once");
    let addrs: Vec<String> = results
        .iter()
        .map(|r| cni_support::ips_of(r)[0].clone())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = addrs.iter().collect();
    assert_eq!(
        distinct.len(),
        N,
        "an address was handed out twice: {addrs:?}"
    );
    for (n, a) in names.iter().zip(&addrs) {
        assert_eq!(c.addrs(n, "eth0"), std::slice::from_ref(a), "{n}");
    }
    assert!(
        c.ping("s0", cni_support::bare(&addrs[N - 1])),
        "s0 -> s{}",
        N - 1
    );
    assert!(
        c.ping(&names[N - 1], cni_support::bare(&addrs[0])),
        "s{} -> s0",
        N - 1
    );
    c.assert_clean();
    std::thread::scope(|s| {
        for (i, r) in results.iter().enumerate() {
            let (call, conf) = (&call, &conf);
            s.spawn(move || call("DEL", i, cni_support::with_prev(conf, r).to_string()).ok_empty());
        }
    });
    assert!(c.endpoints().is_empty(), "{:?}", c.endpoints());
    c.assert_clean();
    let _ = svc.stop();
}

/// Served commands go out from the bare entry (before the C library
/// starts): the service logs each such request. A line the service would
/// not take as it is (here `-v`, which asks for the command's own log) is
/// refused there, and the command then starts as usual and does the work
/// itself.
#[test]
fn the_bare_entry_sends_served_commands_and_falls_back_when_refused() {
    let Some(w) = World::new() else { return };
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "a"]);
    let mut serve = w.host.command(BIN);
    serve
        .env("NETLOOM_STATE_DIR", STATE)
        .env("NETLOOM_LOG", "debug")
        .arg("serve");
    let svc = Service::start(serve);
    let out = in_world(&w, "require", &["connect", "web", "a", "-p", "8080:80"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("eth0 10.88.0.2/24 "),
        "{}",
        text(&out)
    );
    let out = in_world(&w, "require", &["disconnect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    // Refused at the service, done by the command itself.
    let out = in_world(&w, "auto", &["-v", "connect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(w.links_in_service(Some("a")).contains(&"eth0".to_string()));
    let said = svc.stop();
    let served = said
        .matches("a request from the bare entry: served")
        .count();
    assert_eq!(served, 2, "{said}");
    assert!(
        said.contains("a request from the bare entry: refused (a command line for the full parser"),
        "{said}"
    );
    let out = in_world(&w, "off", &["disconnect", "web", "a"]);
    assert!(out.status.success(), "{}", text(&out));
    w.assert_clean();
}

/// A listener at `dir/state/netloom.sock` that takes one request whole and
/// closes without an answer, as a service that died mid-request would;
/// joined, it gives how many connections it took in `wait`.
fn silent_service(dir: &std::path::Path) -> std::thread::JoinHandle<usize> {
    use std::io::Read;
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.join("state/netloom.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut taken = 0;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < until {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    taken += 1;
                    let mut head = [0u8; 8];
                    s.read_exact(&mut head).unwrap();
                    assert_eq!(&head[..4], b"NLB1", "a request from the bare entry");
                    let len = u32::from_le_bytes(head[4..].try_into().unwrap()) as usize;
                    let mut body = vec![0u8; len];
                    s.read_exact(&mut body).unwrap();
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if taken > 0 {
                        // A second connection would come at once.
                        std::thread::sleep(std::time::Duration::from_millis(300));
                        if listener.accept().is_ok() {
                            taken += 1;
                        }
                        return taken;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        taken
    })
}

/// A request the service took and never answered is reported as possibly
/// half done, by the command line and by the CNI plugin alike, and not
/// sent again (the command does not do the work itself either).
#[test]
fn a_request_without_an_answer_is_reported_not_repeated() {
    let Some(w) = World::new() else { return };
    let dir = std::env::temp_dir().join(format!("netloom-lost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let state_str = state.to_str().unwrap();

    let silent = silent_service(&dir);
    let out = w
        .host
        .command(BIN)
        .env("NETLOOM_STATE_DIR", state_str)
        .args(["connect", "web", "a"])
        .output()
        .unwrap();
    assert_eq!(silent.join().unwrap(), 1, "asked once");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("took the request but gave no answer (it closed the connection)")
            && err.contains("netloom gc"),
        "{err}"
    );
    std::fs::remove_file(state.join("netloom.sock")).unwrap();

    // A CNI ADD: the error object, naming the same.
    let silent = silent_service(&dir);
    let conf = json!({
        "cniVersion": "1.1.0", "name": "web", "type": "netloom",
        "driver": "bridge", "subnets": ["10.88.0.0/24"], "stateDir": state_str
    });
    let mut child = w
        .host
        .command(BIN)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "c1")
        .env("CNI_NETNS", "/run/netns/c1")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/nowhere")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        conf.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(silent.join().unwrap(), 1, "asked once");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        e["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("took the request but gave no answer"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
