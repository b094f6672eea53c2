//! Errors of the nftables layer. Each one names the object (table, set,
//! element) and the cause, and says what to do where that is known.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

use nix::errno::Errno;

/// An nftables operation failed.
#[derive(Debug)]
pub enum NftError {
    /// The kernel refused a request.
    Kernel {
        /// The object, e.g. `nft set inet netloom-nat/pub4`.
        object: String,
        /// What was asked, e.g. `add element 10.0.0.5 . 8080`.
        action: String,
        /// The kernel's error number.
        errno: Errno,
        /// What the error means here, and what to do (may be empty).
        cause: String,
    },
    /// The `nft` program is not installed.
    NftNotInstalled,
    /// `nft -f -` rejected a ruleset.
    RulesetRejected {
        /// The namespace the ruleset was for (`None`: the caller's own).
        netns: Option<PathBuf>,
        /// nft's exit status.
        status: ExitStatus,
        /// nft's error output.
        stderr: String,
    },
    /// The request was refused before reaching the kernel, because it would
    /// touch something that is not netloom's (or is malformed).
    Refused {
        /// The object, e.g. `nft table inet filter`.
        object: String,
        /// Why.
        reason: String,
    },
    /// A value cannot be encoded for the kernel.
    InvalidValue {
        /// The value, e.g. `element "a-very-long-name"`.
        what: String,
        /// Why.
        reason: String,
    },
    /// A network namespace could not be entered.
    Namespace {
        /// Its path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A system call or process failed.
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: io::Error,
    },
    /// The kernel's answer could not be understood.
    Protocol {
        /// What was being done.
        context: String,
        /// What was wrong with the answer.
        detail: String,
    },
}

impl NftError {
    /// The kernel's error number, for [`NftError::Kernel`] errors.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NftError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        NftError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn protocol(context: impl Into<String>, detail: impl Into<String>) -> Self {
        NftError::Protocol {
            context: context.into(),
            detail: detail.into(),
        }
    }
}

/// `No such file or directory (ENOENT)`.
pub(crate) fn describe_errno(errno: Errno) -> String {
    format!("{} ({errno:?})", errno.desc())
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NftError::Kernel {
                object,
                action,
                errno,
                cause,
            } => {
                write!(f, "{object}: {action}: {}", describe_errno(*errno))?;
                if !cause.is_empty() {
                    write!(f, ": {cause}")?;
                }
                Ok(())
            }
            NftError::NftNotInstalled => f.write_str(
                "nft: the nft program was not found (looked in PATH, /usr/sbin and /sbin); \
                 install nftables (e.g. `apt-get install nftables`)",
            ),
            NftError::RulesetRejected {
                netns,
                status,
                stderr,
            } => {
                f.write_str("nft -f -: ruleset rejected")?;
                if let Some(ns) = netns {
                    write!(f, " in network namespace {}", ns.display())?;
                }
                write!(f, " ({status}): {}", stderr.trim_end())
            }
            NftError::Refused { object, reason } => write!(f, "{object}: refused: {reason}"),
            NftError::InvalidValue { what, reason } => write!(f, "{what}: invalid: {reason}"),
            NftError::Namespace { path, source } => {
                write!(
                    f,
                    "network namespace {}: cannot enter: {source}",
                    path.display()
                )
            }
            NftError::Io { context, source } => write!(f, "{context}: {source}"),
            NftError::Protocol { context, detail } => {
                write!(f, "{context}: unexpected answer from the kernel: {detail}")
            }
        }
    }
}

impl std::error::Error for NftError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NftError::Namespace { source, .. } | NftError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
