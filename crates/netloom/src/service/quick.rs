//! Reading a plain `connect` or `disconnect` command line without building
//! the whole command grammar (a third of a served call's own time went to
//! building it). Anything this does not read exactly as the full parser
//! would (help, unknown or repeated options, values that look like
//! options, `--`, verbosity) is left to the full parser; a test holds the
//! two to the same reading.

use std::path::PathBuf;

use super::Job;
use crate::cli::ConnectArgs;

/// A served command line, read.
#[derive(Debug)]
pub struct Line {
    pub state_dir: PathBuf,
    pub job: Job,
}

/// Reads `args` (after the program name); `env_state_dir` is
/// `NETLOOM_STATE_DIR`. `None`: leave it to the full parser.
pub fn read(args: &[String], env_state_dir: Option<&str>) -> Option<Line> {
    let mut state_dir: Option<String> = None;
    let mut json = false;
    let mut command: Option<&str> = None;
    let mut positional: Vec<String> = Vec::new();
    let mut single: [(&str, Option<String>); 4] =
        [("ip", None), ("ip6", None), ("mac", None), ("ifname", None)];
    let mut alias = Vec::new();
    let mut publish = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if !arg.starts_with('-') || arg == "-" {
            if command.is_none() {
                command = Some(match arg.as_str() {
                    "connect" => "connect",
                    "disconnect" => "disconnect",
                    _ => return None,
                });
            } else {
                positional.push(arg.clone());
            }
            continue;
        }
        if arg == "--json" {
            if json {
                return None;
            }
            json = true;
            continue;
        }
        let (name, inline) = match arg.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            },
            None if arg == "-p" && command == Some("connect") => ("publish", None),
            None => return None,
        };
        let known = match name {
            "state-dir" => true,
            "ifname" => command.is_some(),
            "ip" | "ip6" | "mac" | "alias" | "publish" => command == Some("connect"),
            _ => false,
        };
        if !known {
            return None;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next()?.clone(),
        };
        if value.starts_with('-') {
            return None;
        }
        match name {
            "state-dir" if state_dir.is_none() => state_dir = Some(value),
            "alias" => alias.push(value),
            "publish" => publish.push(value),
            _ => {
                let slot = single.iter_mut().find(|(n, _)| *n == name)?;
                if slot.1.is_some() {
                    return None;
                }
                slot.1 = Some(value);
            }
        }
    }
    let [network, sandbox]: [String; 2] = positional.try_into().ok()?;
    let state_dir = match (state_dir, env_state_dir) {
        (Some(d), _) => d,
        // An empty variable: left to the full parser's rules.
        (None, Some("")) => return None,
        (None, Some(d)) => d.to_string(),
        (None, None) => netloom_engine::DEFAULT_STATE_DIR.to_string(),
    };
    let [(_, ip), (_, ip6), (_, mac), (_, ifname)] = single;
    let job = match command? {
        "connect" => Job::Connect {
            json,
            args: ConnectArgs {
                network,
                sandbox,
                ip,
                ip6,
                mac,
                ifname,
                alias,
                publish,
            },
        },
        _ => Job::Disconnect {
            json,
            network,
            sandbox,
            ifname,
        },
    };
    Some(Line {
        state_dir: PathBuf::from(state_dir),
        job,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    /// The job the full parser makes of the same line.
    fn full(args: &[&str], env_state_dir: Option<&str>) -> Option<(PathBuf, String)> {
        let mut argv = vec!["netloom".to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        // The full parser reads the variable from the environment; give it
        // as the option instead, which it must equal.
        let cli = match env_state_dir {
            Some(d)
                if !args.contains(&"--state-dir")
                    && !args.iter().any(|a| a.starts_with("--state-dir=")) =>
            {
                argv.insert(1, format!("--state-dir={d}"));
                Cli::try_parse_from(argv)
            }
            _ => Cli::try_parse_from(argv),
        }
        .ok()?;
        let job = Job::of_cli(&cli)?;
        Some((cli.state_dir, serde_json::to_string(&job).unwrap()))
    }

    fn quick(args: &[&str], env_state_dir: Option<&str>) -> Option<(PathBuf, String)> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        read(&args, env_state_dir).map(|l| (l.state_dir, serde_json::to_string(&l.job).unwrap()))
    }

    #[test]
    fn reads_what_the_full_parser_reads() {
        let lines: &[&[&str]] = &[
            &["connect", "web", "sb1"],
            &["--json", "connect", "web", "sb1"],
            &["connect", "web", "sb1", "--json"],
            &["--state-dir", "/tmp/s", "connect", "web", "pid:42"],
            &["connect", "--state-dir=/tmp/s", "web", "/proc/1/ns/net"],
            &[
                "connect",
                "web",
                "sb1",
                "--ip",
                "10.88.0.5",
                "--ip6=fd00::5",
            ],
            &[
                "connect",
                "web",
                "sb1",
                "--mac",
                "02:00:00:00:00:01",
                "--ifname",
                "eth3",
            ],
            &["connect", "web", "sb1", "--alias", "a", "--alias=b"],
            &[
                "connect",
                "web",
                "sb1",
                "-p",
                "8080:80",
                "--publish",
                "53:53/udp",
                "--publish=1-2:3-4",
            ],
            &["connect", "--ip", "10.0.0.2", "web", "sb1"],
            &["disconnect", "web", "sb1"],
            &["disconnect", "web", "sb1", "--ifname", "eth1", "--json"],
        ];
        for line in lines {
            for env in [None, Some("/var/tmp/x")] {
                let q = quick(line, env);
                assert!(q.is_some(), "{line:?} should be read quickly");
                assert_eq!(
                    q,
                    full(line, env),
                    "{line:?} with NETLOOM_STATE_DIR={env:?}"
                );
            }
        }
    }

    #[test]
    fn leaves_everything_else_to_the_full_parser() {
        let lines: &[&[&str]] = &[
            &[],
            &["connect"],
            &["connect", "web"],
            &["connect", "web", "sb1", "extra"],
            &["connect", "--help"],
            &["connect", "web", "sb1", "-h"],
            &["-v", "connect", "web", "sb1"],
            &["connect", "web", "sb1", "--verbose"],
            &[
                "connect", "web", "sb1", "--ip", "10.0.0.2", "--ip", "10.0.0.3",
            ],
            &["connect", "web", "sb1", "--ip"],
            &["connect", "web", "sb1", "--ip", "-1"],
            &["connect", "web", "sb1", "-p8080:80"],
            &["connect", "web", "sb1", "--bogus", "x"],
            &["connect", "--", "web", "sb1"],
            &["disconnect", "web", "sb1", "--publish", "8080:80"],
            &["disconnect", "web", "sb1", "--ip", "10.0.0.2"],
            &["network", "ls"],
            &["--ip", "10.0.0.2", "connect", "web", "sb1"],
            &["--json", "connect", "web", "sb1", "--json"],
            &[
                "--state-dir",
                "/a",
                "connect",
                "web",
                "sb1",
                "--state-dir",
                "/b",
            ],
        ];
        for line in lines {
            assert!(quick(line, None).is_none(), "{line:?} is the full parser's");
        }
        assert!(quick(&["connect", "web", "sb1"], Some("")).is_none());
    }
}
