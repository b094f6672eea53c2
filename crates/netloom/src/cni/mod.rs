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

fn print(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, v);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

pub fn main() -> ExitCode {
    init_logging();
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Err(e) => Err(CniError::new(
            code::IO_FAILURE,
            format!("cannot read the network configuration from stdin: {e}"),
        )),
        Ok(_) => Env::read().and_then(|env| run(&env, &stdin)),
    };
    match outcome {
        Ok(Some(v)) => {
            print(&v);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::debug!("{e}");
            print(&e.to_json(&version_for_error(&stdin)));
            ExitCode::FAILURE
        }
    }
}
