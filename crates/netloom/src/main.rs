//! The `netloom` binary: parse, call the engine, print.

mod cli;
mod cni;
mod commands;
mod connect;
mod lab;
mod partition;
mod run;

use clap::Parser;
use std::process::ExitCode;

fn init_logging(verbose: u8) {
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
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    // Started by a container runtime as a CNI plugin: speak only CNI.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cni::main();
    }
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netloom: error: {e}");
            ExitCode::FAILURE
        }
    }
}
