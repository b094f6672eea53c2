//! What each command does: call the engine and print, as text or JSON.

use serde_json::{json, Value};
use std::net::IpAddr;
use std::process::ExitCode;

use netloom_engine::model::addr::parse_ip;
use netloom_engine::model::{Allocation, Mode, Network, NetworkRequest, Owner, Policy};
use netloom_engine::{Engine, EngineError};

use crate::cli::{Cli, Command, IpamCmd, ModeArg, NetworkCmd, NetworkCreate, PolicyArg};

pub fn run(cli: Cli) -> Result<ExitCode, EngineError> {
    match &cli.command {
        Command::Demo(args) => return crate::lab::demo(&cli, args),
        Command::Serve(args) => {
            return crate::service::server::serve(&cli.state_dir, args.workers.into())
        }
        _ => {}
    }
    let mut engine = Engine::open(&cli.state_dir)?;
    let json = cli.json;
    match cli.command {
        Command::Network(cmd) => network(&mut engine, json, cmd)?,
        Command::Ipam(cmd) => ipam(&mut engine, json, cmd)?,
        Command::Check => return check(&mut engine, json),
        Command::Gc => {
            let report = engine.gc()?;
            if json {
                print_json(&serde_json::to_value(&report).expect("reports serialise"));
            } else if report.actions.is_empty() {
                println!("nothing to do");
            } else {
                for a in &report.actions {
                    println!("{a}");
                }
            }
        }
        Command::Sandbox(cmd) => crate::connect::sandbox(&mut engine, json, cmd)?,
        Command::Connect(args) => {
            crate::connect::connect(&mut engine, json, args, &mut std::io::stdout().lock())?
        }
        Command::Disconnect {
            network,
            sandbox,
            ifname,
        } => crate::connect::disconnect(
            &mut engine,
            json,
            &network,
            &sandbox,
            ifname.as_deref(),
            &mut std::io::stdout().lock(),
        )?,
        Command::Endpoint(cmd) => crate::connect::endpoint(&mut engine, json, cmd)?,
        Command::Run(args) => return crate::run::run(&mut engine, args),
        Command::Exec { sandbox, command } => return crate::connect::exec(&sandbox, &command),
        Command::Lab(cmd) => return crate::lab::run(&mut engine, json, cmd),
        Command::Partition(args) => return crate::partition::run(&mut engine, json, args),
        Command::Demo(_) | Command::Serve(_) => unreachable!("handled before the engine opens"),
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn print_json(v: &Value) {
    write_json(&mut std::io::stdout().lock(), v).expect("failed printing to stdout");
}

/// Writes `v` as pretty JSON and a newline ([`print_json`]: to stdout).
pub(crate) fn write_json(out: &mut dyn std::io::Write, v: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialise")
    )
}

/// The line a failed command prints on stderr, whether it did the work
/// itself or `netloom serve` did it for it.
pub(crate) fn error_line(e: impl std::fmt::Display) -> String {
    format!("netloom: error: {e}")
}

fn network_json(net: &Network, allocations: Option<&[Allocation]>) -> Value {
    let mut v = serde_json::to_value(net).expect("networks serialise");
    if let Some(allocs) = allocations {
        let usage: Vec<Value> = net
            .subnets
            .iter()
            .map(|s| {
                let in_pool = allocs
                    .iter()
                    .filter(|a| a.subnet == s.subnet)
                    .filter(|a| {
                        let n = netloom_engine::model::addr::to_u128(a.address);
                        let (lo, hi) = s.pool_bounds();
                        n >= lo && n <= hi
                    })
                    .count();
                json!({
                    "subnet": s.subnet,
                    "pool": s.pool_cidr(),
                    "pool_size": s.pool_size().to_string(),
                    "allocated_in_pool": in_pool,
                    "allocated": allocs.iter().filter(|a| a.subnet == s.subnet).count(),
                })
            })
            .collect();
        v["usage"] = Value::Array(usage);
        let owners: std::collections::BTreeSet<&str> = allocs
            .iter()
            .filter_map(|a| match &a.owner {
                Owner::Endpoint(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        v["owners"] = json!(owners.len());
    }
    v
}

fn describe_subnets(net: &Network) -> String {
    net.subnets
        .iter()
        .map(|s| match s.gateway {
            Some(gw) => format!("{} (gateway {gw})", s.subnet),
            None => s.subnet.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn network(engine: &mut Engine, json: bool, cmd: NetworkCmd) -> Result<(), EngineError> {
    match cmd {
        NetworkCmd::Create(args) => {
            let net = engine.create_network(&request(args)?)?;
            if json {
                print_json(&network_json(&net, None));
            } else {
                println!(
                    "created network {} ({}, driver {}, {} mode): {}",
                    net.name,
                    &net.id[..12],
                    net.driver,
                    net.mode,
                    describe_subnets(&net)
                );
            }
        }
        NetworkCmd::Ls => {
            let nets = engine.networks()?;
            if json {
                print_json(&Value::Array(
                    nets.iter().map(|n| network_json(n, None)).collect(),
                ));
            } else {
                println!(
                    "{:<20} {:<12} {:<8} {:<10} SUBNETS",
                    "NAME", "ID", "DRIVER", "SPACE"
                );
                for n in &nets {
                    let subnets: Vec<String> =
                        n.subnets.iter().map(|s| s.subnet.to_string()).collect();
                    println!(
                        "{:<20} {:<12} {:<8} {:<10} {}",
                        n.name,
                        &n.id[..12],
                        n.driver,
                        n.address_space,
                        subnets.join(",")
                    );
                }
            }
        }
        NetworkCmd::Inspect { name } => {
            let net = engine.network(&name)?;
            let allocs = engine.allocations(&net.id)?;
            let v = network_json(&net, Some(&allocs));
            if json {
                print_json(&v);
            } else {
                println!("name:          {}", net.name);
                println!("id:            {}", net.id);
                println!("driver:        {}", net.driver);
                println!("mode:          {}", net.mode);
                println!("address space: {}", net.address_space);
                println!("ipam policy:   {}", net.ipam_policy);
                println!("owners:        {}", v["owners"]);
                for (s, u) in net
                    .subnets
                    .iter()
                    .zip(v["usage"].as_array().into_iter().flatten())
                {
                    println!("subnet:        {}", s.subnet);
                    if let Some(gw) = s.gateway {
                        println!("  gateway:     {gw}");
                    }
                    println!(
                        "  pool:        {} ({} of {} in use)",
                        s.pool_cidr(),
                        u["allocated_in_pool"],
                        s.pool_size()
                    );
                    for (k, ip) in &s.aux_addresses {
                        println!("  aux address: {k}={ip}");
                    }
                }
            }
        }
        NetworkCmd::Rm { name, force } => {
            let net = engine.remove_network(&name, force)?;
            if json {
                print_json(&json!({ "removed": net.name, "id": net.id }));
            } else {
                println!("removed network {}", net.name);
            }
        }
    }
    Ok(())
}

fn request(a: NetworkCreate) -> Result<NetworkRequest, EngineError> {
    let mut options = std::collections::BTreeMap::new();
    for o in &a.opt {
        let (k, v) =
            o.split_once('=')
                .ok_or_else(|| netloom_engine::model::ModelError::Malformed {
                    what: "driver option".into(),
                    value: o.clone(),
                    why: "expected KEY=VALUE, e.g. isolate=false".into(),
                })?;
        options.insert(k.to_string(), v.to_string());
    }
    if let Some(m) = a.mtu {
        options.insert("mtu".into(), m.to_string());
    }
    Ok(NetworkRequest {
        name: a.name,
        driver: a.driver,
        subnets: a.subnet,
        gateways: a.gateway,
        ip_ranges: a.ip_range,
        aux_addresses: a.aux_address,
        address_space: a.address_space,
        ipam_policy: match a.ipam_policy {
            PolicyArg::Sequential => Policy::Sequential,
            PolicyArg::Lowest => Policy::Lowest,
        },
        mode: match a.mode {
            ModeArg::Shared => Mode::Shared,
            ModeArg::Pooled => Mode::Pooled,
        },
        internal: a.internal,
        options,
    })
}

fn ipam(engine: &mut Engine, json: bool, cmd: IpamCmd) -> Result<(), EngineError> {
    match cmd {
        IpamCmd::Allocate { network, owner, ip } => {
            let requested: Vec<IpAddr> = ip
                .iter()
                .map(|t| parse_ip("requested address", t))
                .collect::<Result<_, _>>()?;
            let leases = engine.allocate(&network, &owner, &requested)?;
            if json {
                print_json(&json!({ "network": network, "owner": owner, "leases": leases }));
            } else {
                for l in &leases {
                    println!("{}", l.address);
                }
            }
        }
        IpamCmd::Release { network, owner } => {
            let released = engine.release(&network, &owner)?;
            let addrs: Vec<IpAddr> = released.iter().map(|a| a.address).collect();
            if json {
                print_json(&json!({ "network": network, "owner": owner, "released": addrs }));
            } else if addrs.is_empty() {
                println!("owner {owner:?} held nothing on network {network:?}");
            } else {
                for a in addrs {
                    println!("released {a}");
                }
            }
        }
        IpamCmd::Ls { network } => {
            let allocs = engine.allocations(&network)?;
            if json {
                print_json(&serde_json::to_value(&allocs).expect("allocations serialise"));
            } else {
                println!("{:<40} {:<13} {:<24} SUBNET", "ADDRESS", "KIND", "OWNER");
                for a in &allocs {
                    println!(
                        "{:<40} {:<13} {:<24} {}",
                        a.address,
                        a.owner.kind(),
                        a.owner.id(),
                        a.subnet
                    );
                }
            }
        }
    }
    Ok(())
}

fn check(engine: &mut Engine, json: bool) -> Result<ExitCode, EngineError> {
    let mut violations = engine.check()?;
    violations.extend(engine.check_kernel()?);
    if json {
        print_json(&json!({ "clean": violations.is_empty(), "violations": violations }));
    } else if violations.is_empty() {
        println!("clean");
    } else {
        for v in &violations {
            println!("{v}");
        }
    }
    Ok(if violations.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
