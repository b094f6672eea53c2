//! `netloom run`: a command in a fresh, connected sandbox that is removed
//! when the command ends, however it ends.
//!
//! SIGINT, SIGTERM, SIGHUP and SIGCHLD are blocked in netloom and taken
//! with `sigwait`: termination signals are passed on to the command, and
//! cleanup runs after it exits. If netloom itself is killed with SIGKILL,
//! the sandbox's name (`nlrun-PID-N`) tells `netloom gc` whose it was.

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use netloom_engine::model::endpoint::parse_publish;
use netloom_engine::model::ModelError;
use netloom_engine::{ConnectOptions, Engine, EngineError};

use crate::cli::RunArgs;

/// The signals `netloom run` and `netloom lab run` block and take with
/// `sigwait`.
pub(crate) fn signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Blocks [`signals`] in the calling thread; `object` names the command in
/// the error.
pub(crate) fn block_signals(object: &str) -> Result<(), ModelError> {
    signals().thread_block().map_err(|e| ModelError::Invalid {
        object: object.into(),
        why: format!("cannot block signals ({e})"),
        fix: "report this".into(),
    })
}

/// Makes the child of `cmd` unblock [`signals`] before it execs, so it
/// gets the signal mask netloom had before it blocked them.
pub(crate) fn unblock_signals_in_child(cmd: &mut Command) {
    // SAFETY: sigprocmask is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&signals()), None)
                .map_err(std::io::Error::from)
        });
    }
}

fn free_name(engine: &mut Engine) -> Result<String, EngineError> {
    let taken: Vec<String> = engine.sandboxes()?.into_iter().map(|(n, _, _)| n).collect();
    let pid = std::process::id();
    Ok((0..)
        .map(|i| format!("nlrun-{pid}-{i}"))
        .find(|n| !taken.contains(n) && !netloom_engine::sandbox::named_path_exists(n))
        .expect("some name is free"))
}

pub fn run(engine: &mut Engine, args: RunArgs) -> Result<ExitCode, EngineError> {
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.extend(parse_publish(p)?);
    }
    if !ports.is_empty() && args.network.is_empty() {
        return Err(ModelError::Invalid {
            object: "netloom run".into(),
            why: "--publish needs a network to publish on".into(),
            fix: "add --network NET".into(),
        }
        .into());
    }
    // Block before anything exists, so no signal can leave half a sandbox.
    block_signals("netloom run")?;
    let name = match args.name {
        Some(n) => n,
        None => free_name(engine)?,
    };
    engine.create_sandbox(&name)?;
    let outcome = run_inside(engine, &name, &args.network, ports, &args.command);
    let cleanup = engine.remove_sandbox(&name);
    let code = outcome?;
    cleanup?;
    Ok(code)
}

fn run_inside(
    engine: &mut Engine,
    name: &str,
    networks: &[String],
    ports: Vec<netloom_engine::model::PortMapping>,
    command: &[String],
) -> Result<ExitCode, EngineError> {
    for (i, net) in networks.iter().enumerate() {
        let opts = ConnectOptions {
            ports: if i == 0 { ports.clone() } else { Vec::new() },
            ..Default::default()
        };
        engine.connect(net, name, &opts)?;
    }
    let ns = netloom_engine::sandbox::SandboxRef::Named(name.to_string()).open()?;
    let mut cmd = ns
        .command(&command[0])
        .map_err(|e| EngineError::kernel(&format!("sandbox {name}"), e))?;
    cmd.args(&command[1..]);
    unblock_signals_in_child(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| ModelError::Invalid {
        object: format!("sandbox {name}"),
        why: format!("cannot run {:?}: {e}", command[0]),
        fix: "check the command name and PATH".into(),
    })?;
    let pid = Pid::from_raw(child.id() as i32);
    let status = loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            break status;
        }
        match signals().wait() {
            Ok(Signal::SIGCHLD) | Err(_) => continue,
            Ok(sig) => {
                tracing::info!("passing {sig} on to the command");
                let _ = kill(pid, sig);
            }
        }
    };
    Ok(exit_code(status))
}

/// A child's status as this process's exit code: its own code, or 128 plus
/// the signal that ended it, as shells report it.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    ExitCode::from(code.clamp(0, 255) as u8)
}
