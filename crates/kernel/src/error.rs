//! Errors: what was being done, to which object, and why it failed.

use std::fmt;
use std::io;

use nix::errno::Errno;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An operation on a kernel object failed.
///
/// Displays as `<action>: <cause>`, for example
/// `create veth "nl-ab12": File exists (EEXIST)` or
/// `create ipvlan "iv0": kernel lacks ipvlan (...)`.
#[derive(Debug)]
pub struct Error {
    action: String,
    kind: ErrorKind,
}

/// Why an operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The kernel refused: a netlink NACK or a failed system call. `detail`
    /// is the kernel's extended-ack message, when it sent one.
    Os {
        /// The errno the kernel returned.
        errno: i32,
        /// The kernel's own explanation (netlink extended ack), if any.
        detail: Option<String>,
    },
    /// The running kernel lacks a feature (a link type, a module).
    MissingFeature {
        /// The missing feature, e.g. `ipvlan`.
        feature: String,
    },
    /// A requested object does not exist.
    NotFound,
    /// The request itself is invalid; nothing was sent to the kernel.
    InvalidInput(String),
    /// The kernel's reply could not be understood.
    Protocol(String),
}

impl Error {
    pub(crate) fn new(action: impl Into<String>, kind: ErrorKind) -> Error {
        Error {
            action: action.into(),
            kind,
        }
    }

    pub(crate) fn os(action: impl Into<String>, errno: i32, detail: Option<String>) -> Error {
        Error::new(action, ErrorKind::Os { errno, detail })
    }

    pub(crate) fn io(action: impl Into<String>, err: io::Error) -> Error {
        match err.raw_os_error() {
            Some(errno) => Error::os(action, errno, None),
            None => Error::new(action, ErrorKind::Protocol(err.to_string())),
        }
    }

    pub(crate) fn nix(action: impl Into<String>, errno: Errno) -> Error {
        Error::os(action, errno as i32, None)
    }

    pub(crate) fn invalid(action: impl Into<String>, why: impl Into<String>) -> Error {
        Error::new(action, ErrorKind::InvalidInput(why.into()))
    }

    pub(crate) fn missing_feature(action: impl Into<String>, feature: impl Into<String>) -> Error {
        Error::new(
            action,
            ErrorKind::MissingFeature {
                feature: feature.into(),
            },
        )
    }

    /// What was being done, and to which object (`create veth "x"`).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// Why it failed.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub(crate) fn into_kind(self) -> ErrorKind {
        self.kind
    }

    /// The errno behind the failure, if the kernel returned one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self.kind {
            ErrorKind::Os { errno, .. } => Some(errno),
            _ => None,
        }
    }

    /// The missing kernel feature, if that is why it failed.
    pub fn missing_feature_name(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::MissingFeature { feature } => Some(feature),
            _ => None,
        }
    }

    /// The object already exists (`EEXIST`).
    pub fn is_already_exists(&self) -> bool {
        self.raw_os_error() == Some(libc::EEXIST)
    }

    /// The object does not exist (`ENODEV`, `ENOENT`, `ESRCH`,
    /// `EADDRNOTAVAIL` from a delete, or a failed lookup).
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound)
            || matches!(
                self.raw_os_error(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.action, self.kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Os { errno, detail } => {
                let e = Errno::from_raw(*errno);
                if e == Errno::UnknownErrno {
                    write!(f, "unknown error {errno}")?;
                } else {
                    write!(f, "{} ({e:?})", e.desc())?;
                }
                if let Some(detail) = detail {
                    write!(f, ": kernel says: {detail}")?;
                }
                Ok(())
            }
            ErrorKind::MissingFeature { feature } => write!(
                f,
                "kernel lacks {feature} (load its module, e.g. `modprobe {feature}`, \
                 or choose a different driver)"
            ),
            ErrorKind::NotFound => write!(f, "not found"),
            ErrorKind::InvalidInput(why) => write!(f, "invalid request: {why}"),
            ErrorKind::Protocol(why) => write!(f, "unexpected netlink reply: {why}"),
        }
    }
}

impl std::error::Error for Error {}
