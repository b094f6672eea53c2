//! `netloom demo`: a five-node lab in a throwaway host namespace. Prints
//! the reachability matrix (measured by TCP connects between the nodes),
//! splits the lab 2|3, prints it again, heals, prints it once more, and
//! tears everything down.
//!
//! It changes nothing on the machine: netloom runs itself again inside new
//! network and mount namespaces with a private tmpfs on /run and its state
//! under that /run; when it ends, all of it is gone.

use clap::Args;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use netloom_engine::lab::partition::{self, Partition, Reachability};
use netloom_engine::lab::{LabSpec, LabTarget, LabView, PlanSettings};
use netloom_engine::model::ModelError;
use netloom_engine::{Engine, EngineError};

use crate::cli::Cli;

#[derive(Args, Debug)]
pub struct DemoArgs {}

/// Set in the re-executed demo, which runs inside the throwaway namespaces.
const INSIDE: &str = "NETLOOM_DEMO_INSIDE";
const STATE: &str = "/run/netloom-demo";
const PORT: u16 = 7000;

const LAB: &str = r#"
name = "demo"
[[node]]
name = "a"
[[node]]
name = "b"
[[node]]
name = "c"
[[node]]
name = "d"
[[node]]
name = "e"
"#;

fn fail(why: String) -> EngineError {
    ModelError::Invalid {
        object: "netloom demo".into(),
        why,
        fix: "run it as root (it needs CAP_SYS_ADMIN and CAP_NET_ADMIN for its namespaces)".into(),
    }
    .into()
}

pub fn demo(_cli: &Cli, _args: &DemoArgs) -> Result<ExitCode, EngineError> {
    if std::env::var_os(INSIDE).is_some() {
        return inside();
    }
    let exe =
        std::env::current_exe().map_err(|e| fail(format!("cannot find its own binary ({e})")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo")
        .env(INSIDE, "1")
        .env("NETLOOM_STATE_DIR", STATE);
    // SAFETY: only system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            use nix::mount::{mount, MsFlags};
            use nix::sched::{unshare, CloneFlags};
            unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some("tmpfs"),
                "/run",
                Some("tmpfs"),
                MsFlags::empty(),
                Some("mode=755"),
            )?;
            Ok(())
        });
    }
    let status = cmd
        .status()
        .map_err(|e| fail(format!("cannot start in new namespaces ({e})")))?;
    Ok(crate::run::exit_code(status))
}

fn inside() -> Result<ExitCode, EngineError> {
    let started = Instant::now();
    netloom_engine::lab::loopback_up()?;
    let mut engine = Engine::open(std::path::Path::new(STATE))?;
    let spec = LabSpec::parse("the demo lab", LAB)?;
    let lab = engine.lab_up(&spec, "the demo lab", &PlanSettings::default(), None)?;
    println!(
        "lab {:?}: five nodes on one bridge, each serving its name on TCP {PORT}",
        lab.name
    );
    for n in &lab.nodes {
        println!("  {}  {}", n.name, n.ipv4);
    }
    let mut servers: Vec<Child> = Vec::new();
    let outcome = (|| -> Result<(), EngineError> {
        let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
        let exe = exe.to_string_lossy().into_owned();
        for n in &lab.nodes {
            let argv = [
                exe.clone(),
                "lab".into(),
                "serve".into(),
                "--port".into(),
                PORT.to_string(),
            ];
            let mut cmd =
                engine.lab_command(&lab.name, &LabTarget::Node(n.name.clone()), &argv, true)?;
            servers.push(
                cmd.spawn()
                    .map_err(|e| fail(format!("cannot start a server ({e})")))?,
            );
        }
        let view = engine.lab_view(&lab.name)?;
        let full = wait_for_servers(&view)?;
        println!("\nreachability (TCP {PORT}, rows reach columns):\n{full}\n");
        let split = Partition::parse("split", &["a,b".into(), "c,d,e".into()])?;
        partition::apply(&view, &split)?;
        println!("split a,b | c,d,e:\n{}\n", measure(&view)?);
        partition::apply(&view, &Partition::Heal)?;
        println!("healed:\n{}\n", measure(&view)?);
        Ok(())
    })();
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    engine.lab_down(&lab.name)?;
    outcome?;
    println!(
        "lab down; everything ran in a throwaway namespace ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn measure(view: &LabView) -> Result<Reachability, EngineError> {
    partition::probe(view, &view.node_netns(), PORT, Duration::from_millis(300))
}

/// Probes until every server answers (they start in parallel), for up to 3 s.
fn wait_for_servers(view: &LabView) -> Result<Reachability, EngineError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = measure(view)?;
        if r.allowed.iter().all(|row| row.iter().all(|&ok| ok)) || Instant::now() > deadline {
            return Ok(r);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
