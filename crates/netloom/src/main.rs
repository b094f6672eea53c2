//! The `netloom` binary: parse, call the engine, print.
//!
//! With glibc the entry point is netloom's own [`main`], not Rust's
//! start-up (see there).

#![cfg_attr(all(not(test), target_env = "gnu"), no_main)]

mod cli;
mod cni;
mod commands;
mod connect;
mod lab;
mod partition;
mod run;
mod service;

use clap::Parser;
use nix::libc;
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

/// The process's entry point, called by the C library's start-up. glibc
/// hands the arguments to `std::env::args` itself, before `main` (through
/// `.init_array`); other C libraries do not, so there Rust's start-up stays.
///
/// Rust's own start-up is left out: for the main thread it reads and
/// parses `/proc/self/maps` to find its stack's guard page, and sets up an
/// alternate signal stack and handlers to report a stack overflow. A served
/// connect is a whole process of about a millisecond, and that start-up was
/// some 0.05 ms of it (a command that only asks for the service: 0.29 ms
/// of CPU with it, 0.24 without, in three alternating runs of 400). What
/// else it did is done here: SIGPIPE is ignored (a write to a closed pipe
/// is an error, not death), standard descriptors found closed are opened
/// on `/dev/null` (so no socket or file opened later takes their number),
/// a panic ends with exit code 101, and `std::process::exit` flushes
/// stdout. A stack overflow of the main thread is a plain SIGSEGV, without
/// the message.
#[cfg(all(not(test), target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    entry()
}

/// Rust's start-up calls this where it stays (see the other `main`); under
/// `cargo test` the test harness is the entry point.
#[cfg(not(all(not(test), target_env = "gnu")))]
fn main() {
    entry()
}

fn entry() -> ! {
    // SAFETY: a signal disposition, and a poll of three descriptors
    // followed by opens only for those that are closed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
                let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if fd != p.fd {
                    libc::abort();
                }
            }
        }
    }
    let code = std::panic::catch_unwind(netloom_main).unwrap_or(ExitCode::from(101));
    // `ExitCode` gives its number only by comparison.
    let code = (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .unwrap_or(1);
    std::process::exit(i32::from(code))
}

fn netloom_main() -> ExitCode {
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
