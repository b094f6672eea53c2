//! `netloom serve`: one resident netloom process per state directory that
//! runs `connect`, `disconnect` and CNI `ADD`, `DEL` and `CHECK` for the
//! short-lived ones.
//!
//! A netloom command spends most of its time on what every process pays
//! again: loading and faulting in the binary, opening the database and
//! compiling its statements, opening netlink and nf_tables sockets. While
//! `netloom serve` runs, those commands hand their arguments (or, as a CNI
//! plugin, their environment and stdin) over the socket `netloom.sock` in
//! the state directory, and print the reply: the same output, errors and
//! exit code as when they run the work themselves.
//!
//! The service changes nothing about the state: every request is its own
//! transaction on the same database, beside any process that works on it
//! directly, with the same intent records for `netloom gc`. A command runs
//! the work itself when no service listens, when the service runs another
//! netloom binary, or when it lives in another network or mount
//! namespace (the names in the request would mean other things there).
//! `NETLOOM_SERVICE=off` always runs it in the command; `=require` fails
//! instead of doing so.

mod bare;
pub mod client;
mod identity;
mod quick;
pub mod server;

pub use identity::Identity;

use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use netloom_engine::{Engine, EngineError};

/// The socket's file name in the state directory.
pub const SOCKET: &str = "netloom.sock";

/// The environment variable that chooses whether commands use the service.
pub const MODE_ENV: &str = "NETLOOM_SERVICE";

/// The largest request or reply accepted (a CNI config with its
/// `prevResult` is a few KiB).
const MAX_FRAME: usize = 16 << 20;

/// The socket of the service for `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// What a command asks the service to run.
#[derive(Serialize, Deserialize, Debug)]
pub enum Job {
    /// `netloom connect`.
    Connect {
        json: bool,
        args: crate::cli::ConnectArgs,
    },
    /// `netloom disconnect`.
    Disconnect {
        json: bool,
        network: String,
        sandbox: String,
        ifname: Option<String>,
    },
    /// A CNI plugin call: its `CNI_*` (and `NETLOOM_STATE_DIR`) variables,
    /// its stdin, and the state directory its config names (absolute).
    Cni {
        env: BTreeMap<String, String>,
        stdin: String,
        state_dir: PathBuf,
    },
}

impl Job {
    /// The job of a command line the full parser has read, if it is one
    /// the service serves.
    pub fn of_cli(cli: &crate::cli::Cli) -> Option<Job> {
        use crate::cli::Command;
        match &cli.command {
            Command::Connect(args) => Some(Job::Connect {
                json: cli.json,
                args: args.clone(),
            }),
            Command::Disconnect {
                network,
                sandbox,
                ifname,
            } => Some(Job::Disconnect {
                json: cli.json,
                network: network.clone(),
                sandbox: sandbox.clone(),
                ifname: ifname.clone(),
            }),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Request {
    /// The caller's [`Identity`]: served only when it is the service's.
    pub identity: Identity,
    pub job: Job,
}

#[derive(Serialize, Deserialize, Debug)]
pub enum Reply {
    /// Served.
    Done(Output),
    /// Not served, and why; the command runs the work itself (or, with
    /// `NETLOOM_SERVICE=require`, fails saying why).
    Refused(String),
}

/// What a served command prints and its exit code.
#[derive(Serialize, Deserialize, Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl Output {
    /// Prints it, as the command would have; its exit code.
    pub fn print(&self) -> std::process::ExitCode {
        let _ = io::stderr().lock().write_all(self.stderr.as_bytes());
        let mut stdout = io::stdout().lock();
        let _ = stdout.write_all(self.stdout.as_bytes());
        let _ = stdout.flush();
        std::process::ExitCode::from(self.code)
    }
}

/// Writes one frame: a 4-byte little-endian length, then JSON.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> io::Result<()> {
    let body = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame written by [`write_frame`].
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    read_frame_body(len, r)
}

/// [`read_frame`] after its first 4 bytes (the length) were read.
fn read_frame_body<T: for<'de> Deserialize<'de>>(len: [u8; 4], r: &mut impl Read) -> io::Result<T> {
    let body = read_body(len, r)?;
    serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The body of a frame whose length (4 bytes, little-endian) was read;
/// refused, unread, when it is over [`MAX_FRAME`].
fn read_body(len: [u8; 4], r: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

thread_local! {
    /// On a service worker: its engine, kept open between requests.
    static KEPT: RefCell<Option<Engine>> = const { RefCell::new(None) };
    /// Whether this thread is a service worker (engines are kept).
    static WORKER: Cell<bool> = const { Cell::new(false) };
    /// On a service worker: the log lines of the request being served.
    static LOG: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// An engine on a state directory: opened for one command, or, on a
/// service worker, the worker's own, kept open for the next request.
pub struct EngineRef(Option<Engine>);

/// Opens the engine on `state_dir`, or takes the one this service worker
/// keeps open on it.
pub fn engine(state_dir: &Path) -> Result<EngineRef, EngineError> {
    let kept = KEPT
        .with(|k| k.borrow_mut().take())
        .filter(|e| e.state_dir() == state_dir);
    match kept {
        Some(engine) => Ok(EngineRef(Some(engine))),
        None => {
            let mut engine = Engine::open(state_dir)?;
            // A worker's engine serves many requests: it keeps a second
            // thread for the parts of one that can run at once.
            if WORKER.with(Cell::get) {
                if let Err(e) = engine.start_helper() {
                    tracing::debug!("{e}; requests run on one thread");
                }
            }
            Ok(EngineRef(Some(engine)))
        }
    }
}

impl Deref for EngineRef {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.0.as_ref().expect("present until dropped")
    }
}

impl DerefMut for EngineRef {
    fn deref_mut(&mut self) -> &mut Engine {
        self.0.as_mut().expect("present until dropped")
    }
}

impl Drop for EngineRef {
    fn drop(&mut self) {
        if WORKER.with(Cell::get) {
            KEPT.with(|k| *k.borrow_mut() = self.0.take());
        }
    }
}

/// Marks the calling thread as a service worker.
fn become_worker() {
    WORKER.with(|w| w.set(true));
}

/// Housekeeping on the engine this worker keeps, once a reply is sent.
fn tidy_kept_engine() {
    KEPT.with(|k| {
        if let Some(engine) = k.borrow_mut().as_mut() {
            engine.tidy();
        }
    });
}

/// Drops the engine this worker keeps (after a request that failed).
fn forget_kept_engine() {
    KEPT.with(|k| k.borrow_mut().take());
}

/// Where log lines go: on a service worker serving a request, into its
/// reply; anywhere else, stderr.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let taken = LOG.with(|l| match l.borrow_mut().as_mut() {
            Some(lines) => {
                lines.extend_from_slice(buf);
                true
            }
            None => false,
        });
        if taken {
            Ok(buf.len())
        } else {
            io::stderr().write(buf)
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Runs `f` with this thread's log lines collected; returns them beside
/// its result.
fn collect_log<R>(f: impl FnOnce() -> R) -> (R, Vec<u8>) {
    LOG.with(|l| *l.borrow_mut() = Some(Vec::new()));
    let r = f();
    let lines = LOG.with(|l| l.borrow_mut().take()).unwrap_or_default();
    (r, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_refuse_what_is_too_long_or_cut() {
        let job = Job::Disconnect {
            json: true,
            network: "web".into(),
            sandbox: "pid:42".into(),
            ifname: Some("eth1".into()),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &job).unwrap();
        let back: Job = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&job).unwrap()
        );
        // Cut short: an error, not a partial value.
        assert!(read_frame::<Job>(&mut &buf[..buf.len() - 1]).is_err());
        // A length over the limit is refused before anything is read.
        let mut huge = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let e = read_frame::<Job>(&mut huge.as_slice()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
