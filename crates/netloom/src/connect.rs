//! Sandboxes and their connections: `sandbox`, `connect`, `disconnect`,
//! `endpoint`, `exec`.

use serde_json::{json, Value};
use std::io::Write;
use std::net::IpAddr;
use std::process::ExitCode;

use netloom_engine::model::addr::parse_ip;
use netloom_engine::model::endpoint::parse_publish;
use netloom_engine::model::{Endpoint, Family, ModelError};
use netloom_engine::sandbox::SandboxRef;
use netloom_engine::{ConnectOptions, Engine, EngineError};

use crate::cli::{ConnectArgs, EndpointCmd, SandboxCmd};
use crate::commands::{print_json, write_json};

fn addresses(ep: &Endpoint) -> String {
    ep.leases
        .iter()
        .map(|l| l.address.clone())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn sandbox(engine: &mut Engine, json: bool, cmd: SandboxCmd) -> Result<(), EngineError> {
    match cmd {
        SandboxCmd::Create { name } => {
            let inode = engine.create_sandbox(&name)?;
            if json {
                print_json(
                    &json!({ "name": name, "inode": inode, "path": format!("/run/netns/{name}") }),
                );
            } else {
                println!("created sandbox {name}");
            }
        }
        SandboxCmd::Rm { name } => {
            let n = engine.remove_sandbox(&name)?;
            if json {
                print_json(&json!({ "removed": name, "disconnected": n }));
            } else {
                println!("removed sandbox {name} ({n} endpoint(s) disconnected)");
            }
        }
        SandboxCmd::Ls => {
            let list = engine.sandboxes()?;
            if json {
                let v: Vec<Value> = list
                    .iter()
                    .map(|(n, i, alive)| json!({ "name": n, "inode": i, "exists": alive }))
                    .collect();
                print_json(&Value::Array(v));
            } else {
                println!("{:<24} {:<12} EXISTS", "NAME", "INODE");
                for (n, i, alive) in &list {
                    println!(
                        "{n:<24} {i:<12} {}",
                        if *alive {
                            "yes"
                        } else {
                            "no (gone; `netloom gc` forgets it)"
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

fn connect_options(args: &ConnectArgs) -> Result<ConnectOptions, EngineError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for (flag, text, family) in [
        ("--ip", &args.ip, Family::V4),
        ("--ip6", &args.ip6, Family::V6),
    ] {
        if let Some(t) = text {
            let ip = parse_ip("requested address", t)?;
            if Family::of(&ip) != family {
                return Err(ModelError::Malformed {
                    what: format!("{flag} address"),
                    value: t.clone(),
                    why: format!("{flag} takes an {family} address"),
                }
                .into());
            }
            ips.push(ip);
        }
    }
    let mut ports = Vec::new();
    for p in &args.publish {
        ports.extend(parse_publish(p)?);
    }
    Ok(ConnectOptions {
        ips,
        mac: args.mac.clone(),
        ifname: args.ifname.clone(),
        aliases: args.alias.clone(),
        ports,
        container_id: None,
    })
}

/// `netloom connect`; what it prints goes to `out` (stdout, or the reply
/// of `netloom serve`).
pub fn connect(
    engine: &mut Engine,
    json: bool,
    args: ConnectArgs,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let opts = connect_options(&args)?;
    let ep = engine.connect(&args.network, &args.sandbox, &opts)?;
    let _ = if json {
        write_json(
            out,
            &serde_json::to_value(&ep).expect("endpoints serialise"),
        )
    } else {
        writeln!(out, "{} {} {}", ep.ifname, addresses(&ep), ep.mac)
    };
    Ok(())
}

/// `netloom disconnect`; what it prints goes to `out`.
pub fn disconnect(
    engine: &mut Engine,
    json: bool,
    network: &str,
    sandbox: &str,
    ifname: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), EngineError> {
    let eps = engine.disconnect(network, sandbox, ifname)?;
    if json {
        let ids: Vec<&str> = eps.iter().map(|e| e.id.as_str()).collect();
        let _ = write_json(
            out,
            &json!({ "network": network, "sandbox": sandbox, "disconnected": ids }),
        );
    } else {
        for e in &eps {
            let _ = writeln!(out, "disconnected {} ({})", e.ifname, addresses(e));
        }
    }
    Ok(())
}

pub fn endpoint(engine: &mut Engine, json: bool, cmd: EndpointCmd) -> Result<(), EngineError> {
    match cmd {
        EndpointCmd::Ls { network } => {
            let eps = engine.endpoints(network.as_deref())?;
            if json {
                print_json(&serde_json::to_value(&eps).expect("endpoints serialise"));
            } else {
                println!(
                    "{:<12} {:<16} {:<20} {:<8} {:<9} ADDRESSES",
                    "ID", "NETWORK", "SANDBOX", "IFNAME", "STATE"
                );
                for e in &eps {
                    println!(
                        "{:<12} {:<16} {:<20} {:<8} {:<9} {}",
                        &e.id[..12],
                        e.network,
                        e.sandbox,
                        e.ifname,
                        e.state.as_str(),
                        addresses(e)
                    );
                }
            }
        }
        EndpointCmd::Inspect { id } => {
            let ep = engine.endpoint(&id)?;
            let info = engine.endpoint_oper_info(&ep)?;
            let mut v = serde_json::to_value(&ep).expect("endpoints serialise");
            v["driver_info"] = json!(info);
            print_json(&v);
        }
    }
    Ok(())
}

pub fn exec(sandbox: &str, command: &[String]) -> Result<ExitCode, EngineError> {
    let sref = SandboxRef::parse(sandbox)?;
    let ns = sref.open()?;
    let mut cmd = ns
        .command(&command[0])
        .map_err(|e| EngineError::kernel(&format!("sandbox {sref}"), e))?;
    let status = cmd
        .args(&command[1..])
        .status()
        .map_err(|e| ModelError::Invalid {
            object: format!("sandbox {sref}"),
            why: format!("cannot run {:?}: {e}", command[0]),
            fix: "check the command name and PATH".into(),
        })?;
    Ok(crate::run::exit_code(status))
}
