//! `netloom run`: exit codes pass through, and nothing is left afterwards,
//! whether the command ends, is interrupted, or netloom is killed.

mod support;
use std::time::{Duration, Instant};
use support::World;

fn world() -> Option<World> {
    let w = World::new()?;
    w.ok(&["network", "create", "web", "--subnet", "10.88.0.0/24"]);
    w.ok(&["sandbox", "create", "peer"]);
    w.ok(&["connect", "web", "peer"]);
    Some(w)
}

fn nothing_left(w: &World) {
    assert_eq!(
        w.json(&["endpoint", "ls"]).as_array().unwrap().len(),
        1,
        "only the peer remains"
    );
    let sandboxes = w.json(&["sandbox", "ls"]);
    assert_eq!(sandboxes.as_array().unwrap().len(), 1, "{sandboxes}");
    assert!(!w.sh("ip netns list | grep -q nlrun").status.success());
    assert_eq!(
        w.host_links()
            .iter()
            .filter(|l| l.starts_with("nlv-"))
            .count(),
        1
    );
    w.assert_clean();
}

#[test]
fn run_connects_passes_the_exit_code_and_cleans_up() {
    let Some(w) = world() else { return };
    let ok = w.netloom(&[
        "run",
        "--network",
        "web",
        "--",
        "ping",
        "-c1",
        "-W3",
        "-q",
        "10.88.0.2",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let seven = w.netloom(&["run", "--network", "web", "--", "sh", "-c", "exit 7"]);
    assert_eq!(seven.status.code(), Some(7));
    // Without a network the sandbox has only loopback: the peer is unreachable.
    let alone = w.netloom(&["run", "--", "ping", "-c1", "-W1", "-q", "10.88.0.2"]);
    assert!(!alone.status.success());
    nothing_left(&w);
}

#[test]
fn sigterm_reaches_the_command_and_everything_is_removed() {
    let Some(w) = world() else { return };
    let mut child = w
        .host
        .command(env!("CARGO_BIN_EXE_netloom"))
        .env("NETLOOM_STATE_DIR", support::STATE)
        .args([
            "run",
            "--network",
            "web",
            "--name",
            "busy",
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.sh("ip netns list | grep -qw busy").status.success() {
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(w.json(&["endpoint", "ls"]).as_array().unwrap().len(), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "sleep was ended by SIGTERM");
    nothing_left(&w);
}

#[test]
fn after_sigkill_gc_removes_what_the_run_left() {
    let Some(w) = world() else { return };
    let mut child = w
        .host
        .command(env!("CARGO_BIN_EXE_netloom"))
        .env("NETLOOM_STATE_DIR", support::STATE)
        .args(["run", "--network", "web", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.json(&["endpoint", "ls"]).as_array().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the run never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = w.netloom(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("belongs to a `netloom run` that died"));
    let report = w.ok(&["gc"]);
    assert!(
        report.contains("the `netloom run` that made it died"),
        "{report}"
    );
    nothing_left(&w);
}
