//! Spawning the holder process that keeps a host's namespaces alive.
//!
//! The holder is `sleep infinity` started in a fresh network namespace and
//! a private mount namespace. Namespaces are made in `pre_exec`, between
//! fork and exec, where only async-signal-safe system calls are allowed:
//! everything the child needs (paths, the step pipe) is prepared before
//! the fork, and the child only issues raw syscalls.
//!
//! All holders are forked by one dedicated thread that lives as long as the
//! process. The holder asks for SIGKILL when its parent *thread* dies
//! (`PR_SET_PDEATHSIG` follows the forking thread, not the process), so a
//! long-lived forking thread means holders die exactly when the test
//! process does, even if it is killed without running destructors.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

/// The program the holder runs, and its argument.
const HOLDER_PROGRAM: &str = "sleep";
const HOLDER_ARG: &str = "infinity";

/// What the holder's pre-exec code was doing, reported through a pipe so a
/// failure names its step, not just an errno.
const STEPS: [&str; 8] = [
    "set PR_SET_PDEATHSIG",
    "check that the parent is still alive",
    "unshare(CLONE_NEWNET | CLONE_NEWNS)",
    "make every mount private (MS_REC | MS_PRIVATE on /)",
    "mount a tmpfs on /run",
    "mkdir /run/netns",
    "mount a fresh sysfs on /sys",
    "bring loopback `lo` up",
];

/// Why a throwaway host could not be made.
#[derive(Debug)]
pub struct HostError {
    step: String,
    source: io::Error,
}

impl HostError {
    pub(crate) fn new(step: impl Into<String>, source: io::Error) -> Self {
        HostError {
            step: step.into(),
            source,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot create a throwaway test host: {}: {}",
            self.step, self.source
        )
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

type Reply = mpsc::Sender<Result<Child, HostError>>;

/// Starts a holder on the process-lifetime spawner thread.
pub(crate) fn spawn_holder() -> Result<Child, HostError> {
    static SPAWNER: OnceLock<mpsc::Sender<Reply>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Reply>();
        std::thread::Builder::new()
            .name("netloom-testhost-spawner".into())
            .spawn(move || {
                for reply in rx {
                    let _ = reply.send(spawn_here());
                }
            })
            .expect("spawn the testhost spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner.send(reply_tx).map_err(|_| {
        HostError::new(
            "ask the spawner thread for a holder",
            io::Error::other("spawner thread is gone"),
        )
    })?;
    reply_rx.recv().map_err(|_| {
        HostError::new(
            "wait for the spawner thread",
            io::Error::other("spawner thread dropped the request"),
        )
    })?
}

fn spawn_here() -> Result<Child, HostError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(HostError::new(
            "create the step pipe",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (step_read, step_write) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let step_fd = step_write.as_raw_fd();
    let parent = std::process::id() as libc::pid_t;

    let mut command = Command::new(HOLDER_PROGRAM);
    command
        .arg(HOLDER_ARG)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: the closure only issues async-signal-safe system calls on
    // memory prepared before the fork (static C strings, stack values).
    unsafe {
        command.pre_exec(move || prepare_namespaces(step_fd, parent));
    }
    let spawned = command.spawn();
    drop(step_write);
    match spawned {
        Ok(child) => Ok(child),
        Err(err) => {
            let step = last_step(step_read);
            let step = match step {
                Some(i) => format!("in the holder: {}", STEPS[i]),
                // Our code never ran, or all of it succeeded and exec
                // failed (e.g. `sleep` is missing).
                None => format!("spawn `{HOLDER_PROGRAM} {HOLDER_ARG}`"),
            };
            Err(HostError::new(step, err))
        }
    }
}

/// Reads the last step number the child wrote before it failed.
fn last_step(read: OwnedFd) -> Option<usize> {
    use std::io::Read;
    let mut file = std::fs::File::from(read);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    bytes
        .last()
        .map(|&b| usize::from(b))
        .filter(|&i| i < STEPS.len())
}

/// Runs in the forked child before exec. Async-signal-safe syscalls only.
fn prepare_namespaces(step_fd: libc::c_int, parent: libc::pid_t) -> io::Result<()> {
    // Each step number goes down the pipe before the step runs; the parent
    // reads the last one when exec never happens.
    let mark = |step: u8| {
        // SAFETY: write(2) of one byte from the stack.
        unsafe { libc::write(step_fd, (&step as *const u8).cast(), 1) };
    };
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY (whole block): raw syscalls with valid, NUL-terminated static
    // strings and stack buffers.
    unsafe {
        mark(0);
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
        mark(1);
        if libc::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        mark(2);
        check(libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS))?;
        mark(3);
        check(mount(
            None,
            c"/",
            None,
            libc::MS_REC | libc::MS_PRIVATE,
            None,
        ))?;
        mark(4);
        check(mount(
            Some(c"tmpfs"),
            c"/run",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(c"mode=0755"),
        ))?;
        mark(5);
        check(libc::mkdir(c"/run/netns".as_ptr(), 0o755))?;
        mark(6);
        check(mount(Some(c"sysfs"), c"/sys", Some(c"sysfs"), 0, None))?;
        mark(7);
        loopback_up()?;
        // Past the last step: a failure from here on is exec's own.
        mark(STEPS.len() as u8);
    }
    Ok(())
}

unsafe fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> libc::c_int {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    libc::mount(
        ptr(source),
        target.as_ptr(),
        ptr(fstype),
        flags,
        ptr(data).cast(),
    )
}

/// Sets IFF_UP on `lo` with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.
unsafe fn loopback_up() -> io::Result<()> {
    let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut req: libc::ifreq = std::mem::zeroed();
    req.ifr_name[0] = b'l' as libc::c_char;
    req.ifr_name[1] = b'o' as libc::c_char;
    let mut result = Ok(());
    if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) != 0 {
        result = Err(io::Error::last_os_error());
    } else {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) != 0 {
            result = Err(io::Error::last_os_error());
        }
    }
    libc::close(fd);
    result
}
