//! [`FirewallError`]: what failed, on which network, endpoint or table,
//! why, and what to do.

use std::fmt;

use netloom_kernel::nft::NftError;

/// A firewall operation failed.
#[derive(Debug)]
pub enum FirewallError {
    /// A description was refused before anything reached the kernel.
    Invalid {
        /// The network or endpoint, e.g. `endpoint nlv-0a0b0c0d on network 1a2b3c4d`.
        object: String,
        /// What is wrong with it.
        why: String,
        /// What to do.
        fix: String,
    },
    /// nftables refused or failed an operation; nothing of it was applied.
    Kernel {
        /// The network, endpoint or table.
        object: String,
        /// What was being done, e.g. `add firewall elements`.
        action: String,
        /// The nftables error (names the table, set or element and cause).
        source: Box<NftError>,
        /// What to do (may be empty).
        fix: String,
    },
}

impl FirewallError {
    pub(crate) fn invalid(
        object: impl Into<String>,
        why: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        FirewallError::Invalid {
            object: object.into(),
            why: why.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn kernel(
        object: impl Into<String>,
        action: impl Into<String>,
        source: NftError,
        fix: impl Into<String>,
    ) -> Self {
        FirewallError::Kernel {
            object: object.into(),
            action: action.into(),
            source: Box::new(source),
            fix: fix.into(),
        }
    }

    /// The kernel's error number (e.g. `libc::EEXIST`), when the kernel
    /// refused the operation.
    pub fn raw_errno(&self) -> Option<i32> {
        match self {
            FirewallError::Kernel { source, .. } => source.errno().map(|e| e as i32),
            FirewallError::Invalid { .. } => None,
        }
    }
}

impl fmt::Display for FirewallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FirewallError::Invalid { object, why, fix } => write!(f, "{object}: {why}; {fix}"),
            FirewallError::Kernel {
                object,
                action,
                source,
                fix,
            } => {
                write!(f, "{object}: {action}: {source}")?;
                if !fix.is_empty() {
                    write!(f, "; {fix}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FirewallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FirewallError::Kernel { source, .. } => Some(source.as_ref()),
            FirewallError::Invalid { .. } => None,
        }
    }
}
