//! Sandboxes: the network namespaces endpoints live in. A sandbox is named
//! by a name (a named namespace under /run/netns, as `ip netns` uses), a
//! path to a namespace file, or `pid:N` (the namespace of process N).

use std::fmt;
use std::path::PathBuf;

use netloom_kernel::Netns;
use netloom_model::ModelError;

use crate::EngineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxRef {
    Named(String),
    Path(PathBuf),
    Pid(u32),
}

impl SandboxRef {
    pub fn parse(text: &str) -> Result<SandboxRef, EngineError> {
        if let Some(pid) = text.strip_prefix("pid:") {
            let pid = pid.parse::<u32>().map_err(|_| ModelError::Malformed {
                what: "sandbox".into(),
                value: text.into(),
                why: "expected pid:N with N a process id".into(),
            })?;
            return Ok(SandboxRef::Pid(pid));
        }
        if text.contains('/') {
            return Ok(SandboxRef::Path(PathBuf::from(text)));
        }
        netloom_model::network::check_name("sandbox name", text)?;
        Ok(SandboxRef::Named(text.to_string()))
    }

    /// Opens the namespace, with an error that says how to make it exist.
    pub fn open(&self) -> Result<Netns, EngineError> {
        let r = match self {
            SandboxRef::Named(n) => Netns::open_named(n),
            SandboxRef::Path(p) => Netns::open_path(p),
            SandboxRef::Pid(p) => Netns::open_pid(*p),
        };
        r.map_err(|e| {
            let fix = match self {
                SandboxRef::Named(n) => format!("create it with `netloom sandbox create {n}`"),
                SandboxRef::Path(_) => "give the path of a network namespace file".into(),
                SandboxRef::Pid(_) => "give the pid of a running process".into(),
            };
            ModelError::Invalid {
                object: format!("sandbox {self}"),
                why: format!("cannot open its network namespace ({e})"),
                fix,
            }
            .into()
        })
    }
}

impl fmt::Display for SandboxRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SandboxRef::Named(n) => write!(f, "{n}"),
            SandboxRef::Path(p) => write!(f, "{}", p.display()),
            SandboxRef::Pid(p) => write!(f, "pid:{p}"),
        }
    }
}

/// The namespace an endpoint was connected in, if `reference` (as the
/// endpoint recorded it) still opens that same namespace (same inode).
pub fn open_if_same(reference: &str, inode: u64) -> Option<Netns> {
    SandboxRef::parse(reference)
        .ok()
        .and_then(|r| r.open().ok())
        .filter(|ns| ns.inode().ok() == Some(inode))
}

/// Whether a named namespace of this name exists under /run/netns.
pub fn named_path_exists(name: &str) -> bool {
    netloom_kernel::named_path(name).exists()
}
