//! The `netloom` binary: parse, call the engine, print.

mod cli;
mod cni;
mod commands;
mod connect;
mod lab;
mod partition;
mod run;
mod service;

use clap::Parser;
use service::client::Line;
use std::process::ExitCode;

fn init_logging(verbose: u8, ansi: bool) {
    use tracing_subscriber::filter::LevelFilter;
    let from_env = std::env::var("NETLOOM_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok());
    let level = match verbose {
        0 => from_env.unwrap_or(LevelFilter::WARN),
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(|| service::LogWriter)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(ansi && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    // Started by a container runtime as a CNI plugin: speak only CNI.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::main();
    }
    // A plain connect or disconnect while `netloom serve` runs is handed
    // over before the full command grammar is built.
    let line = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string().ok())
        .collect::<Option<Vec<String>>>()
        .map_or(Line::NotRead, |args| service::client::forward_line(&args));
    let cli = match line {
        Line::Served(code) => return code,
        Line::NotServed => cli::Cli::parse(),
        Line::NotRead => {
            let cli = cli::Cli::parse();
            if let Some(code) = service::client::forward_cli(&cli) {
                return code;
            }
            cli
        }
    };
    // A service's log lines also go into its replies: no colours there.
    init_logging(cli.verbose, !matches!(cli.command, cli::Command::Serve(_)));
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", commands::error_line(&e));
            ExitCode::FAILURE
        }
    }
}
