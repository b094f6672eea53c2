use netloom_model::ModelError;
use netloom_store::StoreError;
use std::fmt;

/// Everything an engine operation can fail with. The message names the
/// object, the cause and what to do.
#[derive(Debug)]
pub enum EngineError {
    Store(StoreError),
    /// A kernel operation failed; `action` says what netloom was doing.
    Kernel {
        action: String,
        source: netloom_kernel::Error,
    },
    /// The kernel lacks something a driver needs.
    MissingFeature {
        feature: String,
        needed_by: String,
    },
    /// nftables refused or failed.
    Firewall(Box<crate::firewall::FirewallError>),
}

impl From<crate::firewall::FirewallError> for EngineError {
    fn from(e: crate::firewall::FirewallError) -> Self {
        EngineError::Firewall(Box::new(e))
    }
}

impl EngineError {
    pub fn kernel(action: &str, source: netloom_kernel::Error) -> EngineError {
        if let Some(feature) = source.missing_feature_name() {
            return EngineError::MissingFeature {
                feature: feature.to_string(),
                needed_by: action.to_string(),
            };
        }
        EngineError::Kernel {
            action: action.to_string(),
            source,
        }
    }

    /// The model error inside, if this is one (a refused request rather than
    /// a failure of the machine).
    pub fn model(&self) -> Option<&ModelError> {
        match self {
            EngineError::Store(s) => s.model(),
            _ => None,
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        EngineError::Store(e)
    }
}

impl From<ModelError> for EngineError {
    fn from(e: ModelError) -> Self {
        EngineError::Store(StoreError::Model(e))
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Store(e) => e.fmt(f),
            EngineError::Kernel { action, source } => {
                let hint = match source.raw_os_error() {
                    Some(libc_eperm) if libc_eperm == 1 || libc_eperm == 13 => "; run netloom as root (it needs CAP_NET_ADMIN)",
                    _ => "",
                };
                write!(f, "{action}: {source}{hint}")
            }
            EngineError::Firewall(e) => e.fmt(f),
            EngineError::MissingFeature { feature, needed_by } => write!(
                f,
                "{needed_by}: this kernel lacks {feature}; load its module (modprobe {feature}) or use another driver"
            ),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Store(e) => Some(e),
            EngineError::Kernel { source, .. } => Some(source),
            EngineError::Firewall(e) => Some(e.as_ref()),
            EngineError::MissingFeature { .. } => None,
        }
    }
}
