//! Partitions: which nodes of a lab may talk, enforced in its bridge namespace.
//! `netloom partition [LAB] KIND ARGS...`.

use clap::Args;
use serde::Serialize;
use std::process::ExitCode;
use std::time::Duration;

use netloom_engine::lab::partition::{self, Partition, Reachability, GRAMMAR};
use netloom_engine::model::ModelError;
use netloom_engine::{Engine, EngineError};

use crate::commands::print_json;

/// The kinds, for telling a kind from a lab name.
const KINDS: [&str; 6] = ["isolate", "split", "disjoint", "heal", "loss", "show"];

/// Environment variable naming the lab when LAB is left out (set for
/// commands run by `netloom lab exec`/`lab run`).
const LAB_ENV: &str = "NETLOOM_LAB";

#[derive(Args, Debug)]
#[command(
    about = "Cut, heal and degrade links between the nodes of a lab",
    long_about = "Cut, heal and degrade links between the nodes of a lab.\n\n\
Enforced in the lab's bridge namespace, between the bridge ports of the nodes: \
a cut stops every frame between two nodes (ARP and broadcasts too), so TCP between \
them times out. Traffic between a node and the bridge itself (the gateway, ports \
published from outside) is never cut. Each change is one atomic nftables \
transaction (there is never a half-applied partition) and applying the same \
partition twice changes nothing.\n\n\
isolate, split and disjoint replace the current cuts and keep loss settings; \
heal clears cuts and loss; loss sets one node's loss and keeps the cuts. Every \
kind prints the resulting reachability matrix (rows send, columns receive; \
+ reaches, - cut).\n\n\
LAB may be left out when NETLOOM_LAB is set, as it is for commands run with \
`netloom lab exec` and `netloom lab run` (also inside the lab's bridge namespace).",
    after_help = after_help()
)]
pub struct PartitionArgs {
    /// [LAB] KIND ARGS...: the lab (optional with NETLOOM_LAB), a kind and its arguments.
    #[arg(value_name = "[LAB] KIND ARGS", required = true, num_args = 1..)]
    pub words: Vec<String>,
    /// With `show`: measure instead of reading the rules, by TCP connects
    /// from every node to every other on this port (a refused connect
    /// counts as reaching).
    #[arg(long, value_name = "PORT")]
    pub probe: Option<u16>,
    /// With --probe: seconds to wait for each connect.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub timeout: f64,
}

/// The kinds and examples under `--help`.
fn after_help() -> String {
    format!(
        "Kinds:\n{GRAMMAR}\n\n\
Examples:
  netloom partition db isolate n2                  # n2 alone; the rest still talk
  netloom partition db split n1,n2 n2,n3           # n2 bridges n1 and n3; others isolated
  netloom partition db disjoint n1,n2 n3,n4,n5     # a clean two-way split
  netloom partition db loss n3 20                  # 20% of n3's frames dropped, both ways
  netloom partition db loss n3 0                   # n3 without loss again
  netloom partition db heal
  netloom --json partition db show
  netloom partition db show --probe 5432           # measure: TCP connects to port 5432
  NETLOOM_LAB=db netloom partition split n1 n2,n3  # lab from the environment"
    )
}

/// The lab, the kind and its arguments from the command's words.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    lab: String,
    kind: String,
    args: Vec<String>,
}

/// Splits `[LAB] KIND ARGS...`. The first word is the kind when it is one
/// and a lab comes from `env_lab`; unless the second word is a kind too
/// (then the first is a lab that happens to share a kind's name).
fn split_words(words: &[String], env_lab: Option<&str>) -> Result<Request, EngineError> {
    let is_kind = |w: Option<&String>| w.is_some_and(|w| KINDS.contains(&w.as_str()));
    let usage = || format!("usage: netloom partition [LAB] KIND ARGS...\n{GRAMMAR}");
    let env_lab = env_lab.filter(|l| !l.is_empty());
    let (lab, rest) = match env_lab {
        Some(lab) if is_kind(words.first()) && !is_kind(words.get(1)) => (lab.to_string(), words),
        _ if is_kind(words.first()) && !is_kind(words.get(1)) => {
            return Err(ModelError::Invalid {
                object: "netloom partition".into(),
                why: "no lab given".into(),
                fix: format!(
                    "name it first (netloom partition LAB {} ...) or set {LAB_ENV}",
                    words[0]
                ),
            }
            .into())
        }
        _ => match words.split_first() {
            Some((lab, rest)) => (lab.clone(), rest),
            None => unreachable!("clap requires one word"),
        },
    };
    let Some((kind, args)) = rest.split_first() else {
        return Err(ModelError::Invalid {
            object: format!("netloom partition {lab}"),
            why: "no partition kind given".into(),
            fix: usage(),
        }
        .into());
    };
    Ok(Request {
        lab,
        kind: kind.clone(),
        args: args.to_vec(),
    })
}

/// The JSON shape: `{"lab", "nodes", "allowed", "loss", "measured"}`.
#[derive(Serialize)]
struct Shown<'a> {
    lab: &'a str,
    #[serde(flatten)]
    reach: &'a Reachability,
    /// True when measured with --probe, false when read from the rules.
    measured: bool,
}

pub fn run(engine: &mut Engine, json: bool, args: PartitionArgs) -> Result<ExitCode, EngineError> {
    let env_lab = std::env::var(LAB_ENV).ok();
    let req = split_words(&args.words, env_lab.as_deref())?;
    let probe_only = |what: &str| -> EngineError {
        ModelError::Invalid {
            object: format!("netloom partition {} {}", req.lab, req.kind),
            why: format!("{what} only goes with show"),
            fix: format!("use: netloom partition {} show {what} ...", req.lab),
        }
        .into()
    };
    let (reach, measured) = if req.kind == "show" {
        if let Some(extra) = req.args.first() {
            return Err(ModelError::Invalid {
                object: format!("netloom partition {} show", req.lab),
                why: format!("takes no arguments, got {extra:?}"),
                fix: "to measure, add --probe PORT".into(),
            }
            .into());
        }
        let view = engine.lab_view(&req.lab)?;
        match args.probe {
            Some(port) => {
                let timeout = timeout(args.timeout)?;
                (
                    partition::probe(&view, &view.node_netns(), port, timeout)?,
                    true,
                )
            }
            None => (partition::current(&view)?, false),
        }
    } else {
        if args.probe.is_some() {
            return Err(probe_only("--probe"));
        }
        // Parse first: a malformed partition is refused before the lab is looked up.
        let p = Partition::parse(&req.kind, &req.args)?;
        let view = engine.lab_view(&req.lab)?;
        (partition::apply(&view, &p)?, false)
    };
    if json {
        let shown = Shown {
            lab: &req.lab,
            reach: &reach,
            measured,
        };
        print_json(&serde_json::to_value(&shown).expect("matrices serialise"));
    } else {
        println!("{reach}");
    }
    Ok(ExitCode::SUCCESS)
}

fn timeout(seconds: f64) -> Result<Duration, EngineError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero() && d.as_secs() <= 600)
        .ok_or_else(|| {
            ModelError::Invalid {
                object: "--timeout".into(),
                why: format!("{seconds} is not a number of seconds above 0 and up to 600"),
                fix: "give e.g. --timeout 2 or --timeout 0.5".into(),
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn req(lab: &str, kind: &str, args: &[&str]) -> Request {
        Request {
            lab: lab.into(),
            kind: kind.into(),
            args: words(args),
        }
    }

    #[test]
    fn lab_comes_first_or_from_the_environment() {
        let split = |w: &[&str], env: Option<&str>| split_words(&words(w), env);
        assert_eq!(
            split(&["db", "split", "a,b", "c"], None).unwrap(),
            req("db", "split", &["a,b", "c"])
        );
        assert_eq!(
            split(&["db", "split", "a,b"], Some("other")).unwrap(),
            req("db", "split", &["a,b"])
        );
        assert_eq!(
            split(&["split", "a,b", "c"], Some("db")).unwrap(),
            req("db", "split", &["a,b", "c"])
        );
        assert_eq!(
            split(&["heal"], Some("db")).unwrap(),
            req("db", "heal", &[])
        );
        // A lab named like a kind, followed by a kind.
        assert_eq!(
            split(&["show", "heal"], Some("db")).unwrap(),
            req("show", "heal", &[])
        );
        let err = split(&["heal"], None).unwrap_err().to_string();
        assert!(
            err.contains("no lab given") && err.contains("NETLOOM_LAB"),
            "{err}"
        );
        let err = split(&["heal"], Some("")).unwrap_err().to_string();
        assert!(err.contains("no lab given"), "{err}");
        let err = split(&["db"], None).unwrap_err().to_string();
        assert!(err.contains("no partition kind given"), "{err}");
        assert!(err.contains("disjoint GROUP GROUP..."), "{err}");
    }

    #[test]
    fn timeouts_are_checked() {
        assert_eq!(timeout(0.5).unwrap(), Duration::from_millis(500));
        assert!(timeout(0.0).is_err());
        assert!(timeout(-1.0).is_err());
        assert!(timeout(f64::NAN).is_err());
    }
}
