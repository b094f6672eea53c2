//! `netloom lab run`: a lab in the foreground. Brings it up, starts each
//! node's command (and the test driver) with name-prefixed output, and
//! takes everything down when the driver ends, when every command has
//! ended, on SIGINT/SIGTERM/SIGHUP, or (with `stop_on_failure`) when a
//! node's command fails.
//!
//! As in `netloom run`, the termination signals and SIGCHLD are blocked
//! and taken with `sigwait`. The lab records this process (pid and start
//! time) as its supervisor; the commands get SIGKILL if it dies, and
//! `netloom gc` then takes the lab down.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use netloom_engine::lab::spec::CommandSpec;
use netloom_engine::lab::{this_process, Lab, LabSpec, LabTarget, PlanSettings};
use netloom_engine::model::ModelError;
use netloom_engine::{Engine, EngineError};

use crate::run::{block_signals, signals, unblock_signals_in_child};

/// How long commands get to end after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

struct Proc {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
    driver: bool,
}

pub fn run(
    engine: &mut Engine,
    file: &Path,
    settings: &PlanSettings,
) -> Result<ExitCode, EngineError> {
    let spec = LabSpec::load(file)?;
    let origin = format!("lab file {}", file.display());
    block_signals("netloom lab run")?;
    let lab = engine.lab_up(&spec, &origin, settings, this_process())?;
    eprintln!(
        "netloom: lab {:?} up: {} node(s); Ctrl-C takes it down",
        lab.name,
        lab.nodes.len()
    );
    let outcome = supervise(engine, &lab);
    let down = engine.lab_down(&lab.name);
    if down.is_ok() {
        eprintln!("netloom: lab {:?} down", lab.name);
    }
    let code = outcome?;
    down?;
    Ok(code)
}

/// Spawns one command with its output prefixed by `name`.
fn spawn(
    engine: &mut Engine,
    lab: &Lab,
    target: LabTarget,
    name: &str,
    spec: &CommandSpec,
    width: usize,
    readers: &mut Vec<std::thread::JoinHandle<()>>,
) -> Result<Child, EngineError> {
    let argv = spec.argv().expect("only commands are spawned");
    let mut cmd = engine.lab_command(&lab.name, &target, &argv, true)?;
    cmd.envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.workdir {
        cmd.current_dir(dir);
    }
    unblock_signals_in_child(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| ModelError::Invalid {
        object: format!("lab {:?} {name}", lab.name),
        why: format!("cannot run {:?}: {e}", argv[0]),
        fix: "check the command name, PATH and workdir in the lab file".into(),
    })?;
    let prefix = format!("{name:<width$} | ");
    if let Some(out) = child.stdout.take() {
        readers.push(relay(out, prefix.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(relay(err, prefix, true));
    }
    Ok(child)
}

fn relay(
    stream: impl Read + Send + 'static,
    prefix: String,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).split(b'\n').map_while(Result::ok) {
            let mut text = prefix.clone().into_bytes();
            text.extend_from_slice(&line);
            text.push(b'\n');
            let _ = if to_stderr {
                std::io::stderr().lock().write_all(&text)
            } else {
                std::io::stdout().lock().write_all(&text)
            };
        }
    })
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    }
}

fn supervise(engine: &mut Engine, lab: &Lab) -> Result<ExitCode, EngineError> {
    let spec = &lab.spec;
    let width = spec
        .nodes
        .iter()
        .map(|n| n.name.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut procs: Vec<Proc> = Vec::new();
    let mut readers = Vec::new();
    let order = spec.start_order().expect("checked when loaded");
    let started = (|| -> Result<(), EngineError> {
        for i in order {
            let node = &spec.nodes[i];
            let cs = node.command_spec();
            if cs.argv().is_none() {
                continue;
            }
            let child = spawn(
                engine,
                lab,
                LabTarget::Node(node.name.clone()),
                &node.name,
                &cs,
                width,
                &mut readers,
            )?;
            procs.push(Proc {
                name: node.name.clone(),
                child,
                status: None,
                driver: false,
            });
        }
        if let Some(d) = &spec.driver {
            let child = spawn(
                engine,
                lab,
                LabTarget::Bridge,
                "driver",
                d,
                width,
                &mut readers,
            )?;
            procs.push(Proc {
                name: "driver".into(),
                child,
                status: None,
                driver: true,
            });
        }
        Ok(())
    })();
    let code = match started {
        Err(e) => {
            stop(&mut procs);
            return Err(e);
        }
        Ok(()) => watch(&mut procs, spec.stop_on_failure),
    };
    stop(&mut procs);
    for r in readers {
        let _ = r.join();
    }
    Ok(code)
}

/// Waits for the moment to stop; returns the exit code.
fn watch(procs: &mut [Proc], stop_on_failure: bool) -> ExitCode {
    if procs.is_empty() {
        eprintln!("netloom: no node commands; the lab stays up until Ctrl-C or SIGTERM");
    }
    loop {
        for p in procs.iter_mut().filter(|p| p.status.is_none()) {
            let Some(status) = p.child.try_wait().ok().flatten() else {
                continue;
            };
            p.status = Some(status);
            eprintln!("netloom: {} ended: {}", p.name, describe(status));
            if p.driver {
                return crate::run::exit_code(status);
            }
            if !status.success() && stop_on_failure {
                eprintln!(
                    "netloom: stopping the lab: {} failed (stop_on_failure)",
                    p.name
                );
                return ExitCode::FAILURE;
            }
        }
        if !procs.is_empty() && procs.iter().all(|p| p.status.is_some()) {
            let failed = procs.iter().any(|p| !p.status.is_some_and(|s| s.success()));
            return if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
        match signals().wait() {
            Ok(Signal::SIGCHLD) | Err(_) => continue,
            Ok(sig) => {
                eprintln!("netloom: {sig}: stopping the lab");
                return ExitCode::from((128 + sig as i32) as u8);
            }
        }
    }
}

/// SIGTERM to every command still running, SIGKILL after the grace time.
fn stop(procs: &mut [Proc]) {
    let live = |p: &mut Proc| p.status.is_none() && p.child.try_wait().ok().flatten().is_none();
    for p in procs.iter_mut() {
        if live(p) {
            let _ = kill(Pid::from_raw(p.child.id() as i32), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + GRACE;
    while procs.iter_mut().any(live) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for p in procs.iter_mut() {
        if live(p) {
            let _ = p.child.kill();
        }
        let _ = p.child.wait();
    }
}
