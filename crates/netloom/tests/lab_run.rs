//! `netloom lab run` (supervised commands, a test driver, stopping) and
//! `netloom demo`; after a killed run, `netloom gc` takes the lab down.

mod lab_support;
mod support;

use std::time::{Duration, Instant};

use lab_support::*;
use support::{World, STATE};

fn run_lab(w: &World, name: &str, text: &str) -> std::process::Output {
    let f = lab_file(w, name, text);
    w.netloom(&["lab", "run", &f])
}

#[test]
fn the_driver_sees_the_nodes_by_name_and_its_status_is_the_runs() {
    let Some(w) = World::new() else { return };
    let bin = env!("CARGO_BIN_EXE_netloom");
    let out = run_lab(
        &w,
        "drv",
        &format!(
            "name = \"drv\"\n\
             [[node]]\nname = \"alpha\"\ncommand = [\"{bin}\", \"lab\", \"serve\", \"--port\", \"7000\"]\n\
             [[node]]\nname = \"beta\"\ncommand = \"sh\"\nargs = [\"-c\", \"echo hello from $NETLOOM_NODE in $PWD; exec sleep 30\"]\nworkdir = \"/tmp\"\nafter = [\"alpha\"]\n\
             [driver]\ncommand = [\"bash\", \"-c\", \"for i in 1 2 3 4 5 6 7 8 9 10; do exec 3<>/dev/tcp/alpha/7000 && cat <&3 && exit 3; sleep 0.2; done; exit 9\"]\n"
        ),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("driver | alpha.drv"), "{stdout}");
    assert!(
        stdout.contains("beta   | hello from beta in /tmp"),
        "{stdout}"
    );
    nothing_left(&w);
}

#[test]
fn a_failing_node_stops_the_run_when_the_file_says_so() {
    let Some(w) = World::new() else { return };
    let t = Instant::now();
    let out = run_lab(
        &w,
        "fail",
        "name = \"fail\"\nstop_on_failure = true\n\
         [[node]]\nname = \"long\"\ncommand = [\"sleep\", \"30\"]\n\
         [[node]]\nname = \"bad\"\ncommand = [\"sh\", \"-c\", \"sleep 0.2; exit 4\"]\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad failed (stop_on_failure)"), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "sleep 30 was stopped"
    );
    nothing_left(&w);
}

#[test]
fn sigterm_stops_the_run_and_sigkill_leaves_it_to_gc() {
    let Some(w) = World::new() else { return };
    let f = lab_file(
        &w,
        "k",
        "name = \"k\"\n[[node]]\nname = \"s\"\ncommand = [\"sleep\", \"30\"]\n",
    );
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let mut child = w
            .host
            .command(env!("CARGO_BIN_EXE_netloom"))
            .env("NETLOOM_STATE_DIR", STATE)
            .args(["lab", "run", &f])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !w
            .json(&["lab", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["state"] == "ready")
        {
            assert!(Instant::now() < deadline, "the lab never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ls = w.json(&["lab", "ls"]);
        assert_eq!(ls[0]["supervisor"], child.id());
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        if signal == nix::sys::signal::Signal::SIGTERM {
            assert_eq!(status.code(), Some(128 + 15));
            nothing_left(&w);
            continue;
        }
        let out = w.netloom(&["check"]);
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("lab \"k\": the `netloom lab run` that supervised it"),
            "{text}"
        );
        let report = w.ok(&["gc"]);
        assert!(report.contains("took lab \"k\" down"), "{report}");
        nothing_left(&w);
    }
}

#[test]
fn gc_removes_lab_objects_that_have_no_record() {
    let Some(w) = World::new() else { return };
    let f = lab_file(&w, "g", &fixed_lab("g", &["a", "b"]));
    w.ok(&["lab", "up", &f]);
    // Forget the lab behind netloom's back: its kernel objects stay.
    w.host.enter(|| {
        let db = rusqlite::Connection::open(format!("{STATE}/state.db")).unwrap();
        db.execute("DELETE FROM labs", []).unwrap();
    });
    let out = w.netloom(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "namespace nlab-g:a belongs to no lab",
        "link l0 in the lab gateway belongs to no lab",
        "network \"lab.g\" holds addresses of lab \"g\"",
        "lab gateway link nlgw remains with no lab",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    let report = w.ok(&["gc"]);
    assert!(report.contains("removed namespace nlab-g"), "{report}");
    nothing_left(&w);
}

#[test]
fn the_demo_splits_and_heals_in_a_throwaway_namespace() {
    let Some(w) = World::new() else { return };
    let t = Instant::now();
    let out = w.netloom(&["demo"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    let blocks: Vec<&str> = stdout.split("\n\n").collect();
    let full = blocks.iter().find(|b| b.contains("reachability")).unwrap();
    let split = blocks.iter().find(|b| b.starts_with("split")).unwrap();
    let healed = blocks.iter().find(|b| b.starts_with("healed")).unwrap();
    assert!(!full.contains(" -") && !healed.contains(" -"), "{stdout}");
    assert!(
        split
            .lines()
            .any(|l| l.starts_with("a ") && l.contains('-')),
        "{split}"
    );
    // The demo's namespaces were its own: this host saw nothing.
    assert!(namespaces(&w).is_empty());
    assert!(!w.host_links().iter().any(|l| l == "nlgw"));
}
