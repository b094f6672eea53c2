//! The service's side: `netloom serve`.
//!
//! A fixed set of workers (one by default) each accept connections on the
//! socket and serve one request per connection, keeping their own engine
//! (database connection, prepared statements, netlink and nf_tables
//! sockets) open between requests. Veth deletions and socket releases go
//! to one background thread instead of forked processes. SIGINT, SIGTERM
//! and SIGHUP are taken with `sigwait` on the main thread: the socket is
//! removed first, then the requests under way are finished.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use netloom_engine::model::ModelError;
use netloom_engine::EngineError;

use super::{
    bare, become_worker, collect_log, engine, forget_kept_engine, read_frame_body, socket_path,
    tidy_kept_engine, write_frame, Identity, Job, Output, Reply, Request,
};

/// The longest a socket path may be (`sun_path` holds 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How long a stopping service waits for the requests under way.
const DRAIN: Duration = Duration::from_secs(30);

/// How long a worker waits for a connected command to send its request or
/// take its reply, so one stuck client cannot hold a worker.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    state_dir: PathBuf,
    identity: Identity,
    stopping: AtomicBool,
    in_flight: AtomicUsize,
}

fn fail(state_dir: &Path, why: String, fix: &str) -> EngineError {
    ModelError::Invalid {
        object: format!("netloom service of {}", state_dir.display()),
        why,
        fix: fix.into(),
    }
    .into()
}

/// `netloom serve`: serves until SIGINT, SIGTERM or SIGHUP.
pub fn serve(state_dir: &Path, workers: usize) -> Result<ExitCode, EngineError> {
    // Blocked before any thread starts, so every thread has them blocked
    // and only `sigwait` below takes them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals.thread_block().map_err(|e| {
        fail(
            state_dir,
            format!("cannot block signals ({e})"),
            "report this",
        )
    })?;

    // The state opens here or the error shows now, not per request.
    drop(engine(state_dir)?);
    netloom_kernel::background_on_a_thread().map_err(|e| {
        fail(
            state_dir,
            format!("cannot start its kernel-release thread ({e})"),
            "report this",
        )
    })?;
    let identity = UnixDatagram::unbound()
        .and_then(|s| Identity::of_this_process(s.as_fd()))
        .map_err(|e| {
            fail(
                state_dir,
                format!("cannot read its own identity ({e})"),
                "check /proc",
            )
        })?;
    let socket = socket_path(state_dir);
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(fail(
            state_dir,
            format!(
                "its socket path {} is over the {MAX_SOCKET_PATH} bytes a unix socket path may have",
                socket.display()
            ),
            "use a shorter --state-dir",
        ));
    }
    if UnixStream::connect(&socket).is_ok() {
        return Err(fail(
            state_dir,
            format!(
                "another `netloom serve` already listens on {}",
                socket.display()
            ),
            "use that one, or stop it first",
        ));
    }
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(fail(
                state_dir,
                format!("cannot remove the stale socket {} ({e})", socket.display()),
                "remove it by hand",
            ))
        }
        _ => {}
    }
    let listener = UnixListener::bind(&socket).map_err(|e| {
        fail(
            state_dir,
            format!("cannot listen on {} ({e})", socket.display()),
            "check that the state directory is writable",
        )
    })?;
    let bound = std::fs::metadata(&socket).map(|m| m.ino()).ok();
    // Only the owner (and root) may hand it work.
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600));

    let shared = Arc::new(Shared {
        state_dir: state_dir.to_path_buf(),
        identity,
        stopping: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
    });
    let listener = Arc::new(listener);
    for i in 0..workers.max(1) {
        let (listener, shared) = (Arc::clone(&listener), Arc::clone(&shared));
        std::thread::Builder::new()
            .name(format!("worker-{i}"))
            .spawn(move || {
                become_worker();
                // Each worker accepts for itself: the request is served on
                // the thread the kernel wakes, with no hand-over.
                loop {
                    if let Ok((stream, _)) = listener.accept() {
                        shared.in_flight.fetch_add(1, Ordering::SeqCst);
                        handle(&shared, stream);
                    }
                }
            })
            .map_err(|e| {
                fail(
                    state_dir,
                    format!("cannot start a worker ({e})"),
                    "report this",
                )
            })?;
    }
    eprintln!(
        "netloom: serving {} on {} (pid {}, {} workers); stop with Ctrl-C or SIGTERM",
        state_dir.display(),
        socket.display(),
        std::process::id(),
        workers.max(1)
    );
    let signal = signals.wait().map_err(|e| {
        fail(
            state_dir,
            format!("cannot wait for signals ({e})"),
            "report this",
        )
    })?;
    shared.stopping.store(true, Ordering::SeqCst);
    // New commands find no socket and do the work themselves.
    if std::fs::metadata(&socket).map(|m| m.ino()).ok() == bound {
        let _ = std::fs::remove_file(&socket);
    }
    let deadline = Instant::now() + DRAIN;
    while shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let left = shared.in_flight.load(Ordering::SeqCst);
    eprintln!(
        "netloom: stopped serving {} on {signal}{}",
        state_dir.display(),
        if left > 0 {
            format!("; {left} request(s) were still under way: `netloom gc` finishes them")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Serves the one request on `stream`.
fn handle(shared: &Shared, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
    let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
    // A request usually arrives whole before the worker looks: one read
    // takes it, instead of one for each part.
    let mut input = io::BufReader::with_capacity(16 << 10, &stream);
    let mut head = [0u8; 4];
    if input.read_exact(&mut head).is_err() {
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let from_bare = head == netloom_bare::MAGIC;
    let asked = if from_bare {
        bare::read(&mut input).map(Asked::Bare)
    } else {
        read_frame_body::<Request>(head, &mut input).map(Asked::Frame)
    };
    let reply = match asked {
        // A bare request that does not parse: the command starts as usual.
        Err(e) if e.kind() == io::ErrorKind::InvalidData && from_bare => {
            Some(Reply::Refused(format!("it cannot read the request ({e})")))
        }
        // A whole frame this binary cannot read: another one sent it.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Some(Reply::Refused(format!(
            "it cannot read the request ({e}): it runs another netloom binary than the command; restart `netloom serve` with this one"
        ))),
        Err(_) => None,
        Ok(_) if shared.stopping.load(Ordering::SeqCst) => {
            Some(Reply::Refused("it is stopping".into()))
        }
        Ok(asked) => Some(match shared.identity.mismatch(asked.identity()) {
            Some(why) => Reply::Refused(why),
            None => match asked {
                Asked::Frame(req) => run(shared, req.job),
                Asked::Bare(req) => match bare::job(&req) {
                    Ok(job) => run(shared, job),
                    Err(why) => Reply::Refused(why),
                },
            },
        }),
    };
    if let Some(reply) = reply {
        if from_bare {
            tracing::debug!(
                "a request from the bare entry: {}",
                match &reply {
                    Reply::Done(_) => "served".to_string(),
                    Reply::Refused(why) => format!("refused ({why})"),
                }
            );
            let _ = bare::write_reply(&mut stream, &reply);
        } else {
            let _ = write_frame(&mut stream, &reply);
        }
    }
    // The caller has its answer: what is left is off its clock.
    drop(stream);
    tidy_kept_engine();
    shared.in_flight.fetch_sub(1, Ordering::SeqCst);
}

/// A request as it came: a frame from the program, or the raw line of a
/// command from its bare entry.
enum Asked {
    Frame(Request),
    Bare(bare::Request),
}

impl Asked {
    fn identity(&self) -> &Identity {
        match self {
            Asked::Frame(req) => &req.identity,
            Asked::Bare(req) => &req.identity,
        }
    }
}

/// Whether `a` and `b` name the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn run(shared: &Shared, job: Job) -> Reply {
    let ((stdout, mut stderr, code, keep), log) = match job {
        Job::Connect { json, args } => collect_log(|| {
            cli_job(&shared.state_dir, |engine, out| {
                crate::connect::connect(engine, json, args, out)
            })
        }),
        Job::Disconnect {
            json,
            network,
            sandbox,
            ifname,
        } => collect_log(|| {
            cli_job(&shared.state_dir, |engine, out| {
                crate::connect::disconnect(engine, json, &network, &sandbox, ifname.as_deref(), out)
            })
        }),
        Job::Cni {
            env,
            stdin,
            state_dir,
        } => {
            if !same_dir(&state_dir, &shared.state_dir) {
                return Reply::Refused(format!(
                    "it serves {}, not {}",
                    shared.state_dir.display(),
                    state_dir.display()
                ));
            }
            collect_log(|| {
                let (out, code) = crate::cni::serve(env, stdin.as_bytes());
                // A failed plugin call may have left its sockets mid-exchange.
                let keep = if code == 0 { Keep::Yes } else { Keep::No };
                (out, Vec::new(), code, keep)
            })
        }
    };
    if keep == Keep::No {
        forget_kept_engine();
    }
    let mut all = log;
    all.append(&mut stderr);
    Reply::Done(Output {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&all).into_owned(),
        code,
    })
}

/// Whether the worker keeps its engine after a request.
#[derive(PartialEq, Eq)]
enum Keep {
    Yes,
    /// The request failed outside the model's rules (the kernel, the
    /// store's file): its sockets may be mid-exchange, so they are closed.
    No,
}

/// A served CLI command: its stdout, stderr and exit code.
fn cli_job(
    state_dir: &Path,
    command: impl FnOnce(&mut netloom_engine::Engine, &mut dyn Write) -> Result<(), EngineError>,
) -> (Vec<u8>, Vec<u8>, u8, Keep) {
    let mut out = Vec::new();
    let done = engine(state_dir).and_then(|mut engine| command(&mut engine, &mut out));
    match done {
        Ok(()) => (out, Vec::new(), 0, Keep::Yes),
        Err(e) => {
            let mut err = Vec::new();
            let _ = writeln!(err, "{}", crate::commands::error_line(&e));
            let keep = if e.model().is_some() {
                Keep::Yes
            } else {
                Keep::No
            };
            (out, err, 1, keep)
        }
    }
}
