//! CNI plugin mode (spec 1.1), entered when `CNI_COMMAND` is set.
//!
//! One binary, two roles: the main plugin (`"type": "netloom"`, with
//! `"driver"` bridge, ptp, macvlan or ipvlan) and the IPAM plugin of another
//! plugin (`"ipam": {"type": "netloom"}`). stdout carries only CNI JSON (a
//! result, a version report, or an error object); logs go to stderr, at the
//! level `NETLOOM_LOG` names (warnings by default).

mod check;
mod config;
mod error;
mod ipam;
mod network;
mod ops;
mod result;
mod runtime;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;

use config::{Env, NetConf, LATEST, SUPPORTED};
use error::{code, CniError};

fn init_logging() {
    use tracing_subscriber::filter::LevelFilter;
    let level = std::env::var("NETLOOM_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::WARN);
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .init();
}

/// The version an error is reported in: the config's, when it names a
/// supported one.
fn version_for_error(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| SUPPORTED.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string())
}

/// The VERSION report.
fn version_report(stdin: &[u8]) -> Value {
    json!({ "cniVersion": version_for_error(stdin), "supportedVersions": SUPPORTED })
}

/// Refuses an operation the config's version does not have (code 1).
fn require(conf: &NetConf, command: &str, since: config::Version) -> Result<(), CniError> {
    if conf.at_least(since) {
        return Ok(());
    }
    Err(CniError::new(
        code::INCOMPATIBLE_VERSION,
        format!(
            "CNI_COMMAND={command} is not part of cniVersion {}: it needs {}.{}.{} or later; raise the config's cniVersion",
            conf.version, since.0, since.1, since.2
        ),
    ))
}

/// Runs one command; the JSON to print on success, if any.
fn run(env: &Env, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let command = env.command.as_str();
    if command == "VERSION" {
        return Ok(Some(version_report(stdin)));
    }
    if !["ADD", "DEL", "CHECK", "GC", "STATUS"].contains(&command) {
        return Err(CniError::env(format!(
            "CNI_COMMAND={command:?} is unknown; netloom answers ADD, DEL, CHECK, STATUS, VERSION and GC"
        )));
    }
    let conf = NetConf::parse(stdin)?;
    let ipam = conf.ipam_mode;
    match command {
        "ADD" if ipam => ipam::add(env, &conf).map(Some),
        "ADD" => ops::add(env, &conf).map(Some),
        "DEL" if ipam => ipam::del(env, &conf).map(|()| None),
        "DEL" => ops::del(env, &conf).map(|()| None),
        "CHECK" => {
            require(&conf, command, (0, 4, 0))?;
            if ipam {
                ipam::check(env, &conf)
            } else {
                check::check(env, &conf)
            }
            .map(|()| None)
        }
        "GC" => {
            require(&conf, command, (1, 1, 0))?;
            if ipam {
                ipam::gc(&conf)
            } else {
                ops::gc(&conf)
            }
            .map(|()| None)
        }
        _ => {
            require(&conf, command, (1, 1, 0))?;
            if ipam {
                ipam::status(&conf)
            } else {
                ops::status(&conf)
            }
            .map(|()| None)
        }
    }
}

/// What a call prints on stdout, and its exit code.
fn render(outcome: Result<Option<Value>, CniError>, stdin: &[u8]) -> (Vec<u8>, u8) {
    let mut out = Vec::new();
    let code = match outcome {
        Ok(Some(v)) => {
            let _ = serde_json::to_writer(&mut out, &v);
            out.push(b'\n');
            0
        }
        Ok(None) => 0,
        Err(e) => {
            tracing::debug!("{e}");
            let _ = serde_json::to_writer(&mut out, &e.to_json(&version_for_error(stdin)));
            out.push(b'\n');
            1
        }
    };
    (out, code)
}

fn emit(out: &[u8], code: u8) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out);
    let _ = stdout.flush();
    ExitCode::from(code)
}

pub fn main() -> ExitCode {
    let mut stdin = Vec::new();
    // The bare entry may have read stdin already (all of it, or the
    // first part of a long one).
    let read = match netloom_bare::stdin() {
        Some(Ok((bytes, complete))) => {
            stdin.extend_from_slice(bytes);
            if complete {
                Ok(stdin.len())
            } else {
                std::io::stdin().read_to_end(&mut stdin)
            }
        }
        Some(Err(errno)) => Err(std::io::Error::from_raw_os_error(errno)),
        None => std::io::stdin().read_to_end(&mut stdin),
    };
    if read.is_ok() {
        if let Some(code) = forward(&stdin) {
            return code;
        }
    }
    // Only a process that does the work itself logs: on a served call,
    // setting the logger up was a fifth of the plugin process's time in
    // netloom's own code (672 of 2,999 profile samples).
    init_logging();
    let outcome = match read {
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("cannot read the network configuration from stdin: {e}"),
        )),
        Ok(_) => Env::read().and_then(|env| run(&env, &stdin)),
    };
    let (out, code) = render(outcome, &stdin);
    emit(&out, code)
}

/// A plugin call served by `netloom serve`: `vars` stand for the
/// environment. Its stdout and exit code.
pub fn serve(vars: BTreeMap<String, String>, stdin: &[u8]) -> (Vec<u8>, u8) {
    let outcome = config::with_vars(vars, || Env::read().and_then(|env| run(&env, stdin)));
    render(outcome, stdin)
}

/// How a plugin call stands towards `netloom serve`.
pub enum ToService {
    /// Not one for the service: the process does the work.
    No,
    /// One for the service that it cannot take, and why (an error under
    /// `NETLOOM_SERVICE=require`, else the process does the work).
    Cannot {
        why: String,
        command: String,
        state_dir: std::path::PathBuf,
    },
    /// This job, for the service of this state directory.
    Ask {
        job: crate::service::Job,
        command: String,
        state_dir: std::path::PathBuf,
    },
}

/// Reads a plugin call, `vars` being its environment (of it, at least
/// `CNI_*` and `NETLOOM_*`), as far as deciding whether the service takes
/// it: ADD, DEL and CHECK in a mode that allows it, with a config that
/// parses. Used by the plugin process and, on what the bare entry sends,
/// by the service.
pub fn to_service(
    vars: &BTreeMap<String, String>,
    stdin: &[u8],
) -> (crate::service::client::Mode, ToService) {
    use crate::service::client::Mode;
    let Ok(mode) = Mode::parse(vars.get(crate::service::MODE_ENV).map(String::as_str)) else {
        return (Mode::Auto, ToService::No);
    };
    let given = |name: &str| vars.get(name).filter(|v| !v.is_empty()).cloned();
    let Some(command) =
        given("CNI_COMMAND").filter(|c| ["ADD", "DEL", "CHECK"].contains(&c.as_str()))
    else {
        return (mode, ToService::No);
    };
    if mode == Mode::Off || (mode == Mode::Auto && vars.contains_key("NETLOOM_LOG")) {
        return (mode, ToService::No);
    }
    let Ok(conf) = NetConf::parse(stdin) else {
        return (mode, ToService::No);
    };
    let call: BTreeMap<String, String> = config::VARS
        .iter()
        .filter_map(|name| Some((name.to_string(), given(name)?)))
        .collect();
    let Ok(state_dir) = config::with_vars(call.clone(), || conf.state_dir()) else {
        return (mode, ToService::No);
    };
    let why_not = if !state_dir.is_absolute() {
        Some(format!(
            "the state directory {} is relative",
            state_dir.display()
        ))
    } else if given("CNI_NETNS").is_some_and(|n| !n.starts_with('/')) {
        Some("CNI_NETNS is a relative path".to_string())
    } else {
        None
    };
    let Ok(stdin_text) = std::str::from_utf8(stdin) else {
        return (mode, ToService::No);
    };
    if let Some(why) = why_not {
        return (
            mode,
            ToService::Cannot {
                why,
                command,
                state_dir,
            },
        );
    }
    let job = crate::service::Job::Cni {
        env: call,
        stdin: stdin_text.to_string(),
        state_dir: state_dir.clone(),
    };
    (
        mode,
        ToService::Ask {
            job,
            command,
            state_dir,
        },
    )
}

/// Hands ADD, DEL and CHECK to `netloom serve` when one serves the
/// config's state directory: the exit code, or `None` when this process
/// is to do the work (also for every error, which it reports itself).
fn forward(stdin: &[u8]) -> Option<ExitCode> {
    use crate::service::client::{ask, Mode, Outcome};
    // As `std::env::var` reads them (the first entry of a name; a value
    // that is not UTF-8 is not there), but for NETLOOM_LOG, which counts
    // when set at all.
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let Ok(k) = k.into_string() else { continue };
        if !(k.starts_with("CNI_") || k.starts_with("NETLOOM_")) || vars.contains_key(&k) {
            continue;
        }
        let v = match v.into_string() {
            Ok(v) => v,
            Err(v) if k == "NETLOOM_LOG" => v.to_string_lossy().into_owned(),
            Err(_) => continue,
        };
        vars.insert(k, v);
    }
    let (mode, to) = to_service(&vars, stdin);
    // This process answers with the error itself.
    let fail = |e: CniError| {
        let (out, code) = render(Err(e), stdin);
        Some(emit(&out, code))
    };
    let refuse = |why: String, command: &str, state_dir: &std::path::Path| {
        fail(CniError::new(
            code::TRY_AGAIN,
            format!(
                "{}=require: CNI_COMMAND={command} is not served by `netloom serve` of {}: {why}; start it, or unset {}",
                crate::service::MODE_ENV,
                state_dir.display(),
                crate::service::MODE_ENV
            ),
        ))
    };
    let (job, command, state_dir) = match to {
        ToService::No => return None,
        ToService::Cannot {
            why,
            command,
            state_dir,
        } => {
            return if mode == Mode::Require {
                refuse(why, &command, &state_dir)
            } else {
                None
            }
        }
        ToService::Ask {
            job,
            command,
            state_dir,
        } => (job, command, state_dir),
    };
    match ask(&state_dir, job) {
        Outcome::Done(output) => Some(output.print()),
        Outcome::NotServed(why) if mode == Mode::Require => refuse(why, &command, &state_dir),
        Outcome::NotServed(_) => None,
        Outcome::Lost(why) => fail(CniError::new(code::KERNEL, why)),
    }
}
