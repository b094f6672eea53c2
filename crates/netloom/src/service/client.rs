//! The command's side: hand the work to `netloom serve` when one serves
//! the state directory, else say why not.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;

use crate::cli::Cli;

use super::{
    read_frame, socket_path, write_frame, Identity, Job, Output, Reply, Request, MODE_ENV,
};

/// What `NETLOOM_SERVICE` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Use a service when one can serve, else do the work here (unset).
    Auto,
    /// Always do the work here (`off`).
    Off,
    /// Use a service or fail (`require`).
    Require,
}

impl Mode {
    pub fn from_env() -> Result<Mode, String> {
        Mode::parse(std::env::var(MODE_ENV).ok().as_deref())
    }

    /// The mode a value of [`MODE_ENV`] names (`None`: unset).
    pub fn parse(value: Option<&str>) -> Result<Mode, String> {
        match value {
            None | Some("") | Some("auto") => Ok(Mode::Auto),
            Some("off") => Ok(Mode::Off),
            Some("require") => Ok(Mode::Require),
            Some(other) => Err(format!(
                "{MODE_ENV}={other:?} is not a mode; use auto (the default), off or require"
            )),
        }
    }
}

/// How asking the service went.
pub enum Outcome {
    /// Served: print this and exit with its code.
    Done(Output),
    /// Not served, nothing done; why.
    NotServed(String),
    /// The request went out but no reply came back: the service may have
    /// done part of the work.
    Lost(String),
}

/// Sends `job` to the service of `state_dir`.
pub fn ask(state_dir: &Path, job: Job) -> Outcome {
    let socket = socket_path(state_dir);
    // The bare entry sent this request already and got no answer: the
    // work may be half done, and asking again would do it twice.
    if let Some((errno, path)) = netloom_bare::lost() {
        if path == socket.as_os_str().as_bytes() {
            let why = match errno {
                Some(e) => io::Error::from_raw_os_error(e).to_string(),
                None => "it closed the connection".to_string(),
            };
            return Outcome::Lost(lost_message(&socket, &why));
        }
    }
    let fd = match unix_socket() {
        Ok(fd) => fd,
        Err(e) => return Outcome::NotServed(format!("cannot open a unix socket: {e}")),
    };
    // Read before connecting, so the request follows the connection at
    // once: the service's worker, woken by the connection, then finds it
    // already there instead of going back to sleep until it comes.
    let identity = match Identity::of_this_process(fd.as_fd()) {
        Ok(i) => i,
        Err(e) => return Outcome::NotServed(format!("cannot read this process's identity: {e}")),
    };
    let mut frame = Vec::new();
    if let Err(e) = write_frame(&mut frame, &Request { identity, job }) {
        return Outcome::NotServed(format!("cannot encode the request: {e}"));
    }
    let mut stream = match connect(&fd, &socket) {
        Ok(()) => UnixStream::from(fd),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Outcome::NotServed(format!(
                "no `netloom serve` listens on {}",
                socket.display()
            ))
        }
        Err(e) => {
            return Outcome::NotServed(format!("cannot connect to {}: {e}", socket.display()))
        }
    };
    if let Err(e) = stream.write_all(&frame) {
        return Outcome::NotServed(format!(
            "the service on {} did not take the request: {e}",
            socket.display()
        ));
    }
    match read_frame::<Reply>(&mut stream) {
        Ok(Reply::Done(output)) => Outcome::Done(output),
        Ok(Reply::Refused(why)) => Outcome::NotServed(format!(
            "the service on {} refused it: {why}",
            socket.display()
        )),
        Err(e) => Outcome::Lost(lost_message(&socket, &e.to_string())),
    }
}

fn lost_message(socket: &Path, why: &str) -> String {
    format!(
        "the service on {} took the request but gave no answer ({why}); the change may be half made: `netloom check` shows it and `netloom gc` finishes or undoes it",
        socket.display()
    )
}

/// A unix stream socket, not connected yet.
fn unix_socket() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; a new descriptor or -1.
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_UNIX,
            nix::libc::SOCK_STREAM | nix::libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just opened, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects `fd` to the socket at `path`.
fn connect(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: nix::libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = nix::libc::AF_UNIX as nix::libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path is too long for a unix socket, or holds a NUL byte",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as nix::libc::c_char;
    }
    loop {
        // SAFETY: `addr` is a complete sockaddr_un of the size given.
        let r = unsafe {
            nix::libc::connect(
                fd.as_raw_fd(),
                (&addr as *const nix::libc::sockaddr_un).cast(),
                std::mem::size_of::<nix::libc::sockaddr_un>() as nix::libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Runs `connect` or `disconnect` through the service when one can serve
/// it, reading the command line without the full parser: the exit code,
/// or `None` when the full parser and the command are to take over.
pub fn forward_line(args: &[String]) -> Line {
    let env_state_dir = std::env::var("NETLOOM_STATE_DIR").ok();
    match super::quick::read(args, env_state_dir.as_deref()) {
        None => Line::NotRead,
        Some(line) => match forward(&line.state_dir, 0, line.job) {
            Some(code) => Line::Served(code),
            None => Line::NotServed,
        },
    }
}

/// What [`forward_line`] made of a command line.
pub enum Line {
    /// Served, with this exit code.
    Served(ExitCode),
    /// Read, but the command is to do the work itself.
    NotServed,
    /// Left to the full parser (and then [`forward_cli`]).
    NotRead,
}

/// [`forward_line`] for a command line the full parser has read.
pub fn forward_cli(cli: &Cli) -> Option<ExitCode> {
    let job = Job::of_cli(cli)?;
    forward(&cli.state_dir, cli.verbose, job)
}

/// Whether a command's job goes to the service.
pub enum Gate {
    Ask,
    /// Not in this mode, or not a job for it: the command does the work.
    No,
    /// It would, but cannot, and why (an error under `require`).
    Cannot(String),
}

/// Decides [`Gate`] for `job` in `mode`, with `verbose` from the command
/// line and `log` whether `NETLOOM_LOG` is set. Used by the command and, on
/// what the bare entry sends, by the service.
pub fn gate(mode: Mode, verbose: u8, log: bool, job: &Job) -> Gate {
    let sandbox = match job {
        Job::Connect { args, .. } => args.sandbox.as_str(),
        Job::Disconnect { sandbox, .. } => sandbox.as_str(),
        Job::Cni { .. } => return Gate::No,
    };
    match mode {
        Mode::Off => return Gate::No,
        Mode::Auto if verbose > 0 || log => return Gate::No,
        _ => {}
    }
    // A relative namespace path means another file in the service's
    // working directory.
    if sandbox.contains('/') && !sandbox.starts_with('/') {
        return Gate::Cannot(format!(
            "the sandbox path {sandbox:?} is relative; give it from /"
        ));
    }
    Gate::Ask
}

fn forward(state_dir: &Path, verbose: u8, job: Job) -> Option<ExitCode> {
    let refuse = |why: String| {
        eprintln!(
            "{}",
            crate::commands::error_line(format_args!(
                "{MODE_ENV}=require: this command is not served by `netloom serve` of {}: {why}; start `netloom serve` there, or unset {MODE_ENV}",
                state_dir.display()
            ))
        );
        Some(ExitCode::FAILURE)
    };
    let mode = match Mode::from_env() {
        Ok(m) => m,
        Err(why) => {
            eprintln!("{}", crate::commands::error_line(why));
            return Some(ExitCode::FAILURE);
        }
    };
    let log = std::env::var_os("NETLOOM_LOG").is_some();
    match gate(mode, verbose, log, &job) {
        Gate::Ask => {}
        Gate::No => return None,
        Gate::Cannot(why) if mode == Mode::Require => return refuse(why),
        Gate::Cannot(_) => return None,
    }
    match ask(state_dir, job) {
        Outcome::Done(output) => Some(output.print()),
        Outcome::NotServed(why) if mode == Mode::Require => refuse(why),
        Outcome::NotServed(_) => None,
        Outcome::Lost(why) => {
            eprintln!("{}", crate::commands::error_line(why));
            Some(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mode;

    #[test]
    fn modes_and_a_wrong_one() {
        assert_eq!(Mode::parse(None), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("")), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("auto")), Ok(Mode::Auto));
        assert_eq!(Mode::parse(Some("off")), Ok(Mode::Off));
        assert_eq!(Mode::parse(Some("require")), Ok(Mode::Require));
        let e = Mode::parse(Some("always")).unwrap_err();
        assert!(
            e.contains("NETLOOM_SERVICE=\"always\"") && e.contains("off or require"),
            "{e}"
        );
    }
}
