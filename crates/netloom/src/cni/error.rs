//! The CNI error object (`{cniVersion, code, msg, details}`) and how
//! engine errors map onto the spec's codes.

use netloom_engine::model::ModelError;
use netloom_engine::store::StoreError;
use netloom_engine::EngineError;
use serde_json::{json, Value};

/// Error codes of the CNI specification, and netloom's own (100 and up).
pub mod code {
    /// The config's cniVersion is not supported, or the operation is not
    /// allowed in that version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// The container or attachment is unknown.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// A CNI_* environment variable is missing or malformed.
    pub const INVALID_ENV: u32 = 4;
    /// Reading or writing state failed.
    pub const IO_FAILURE: u32 = 5;
    /// stdin is not the JSON expected.
    pub const DECODE: u32 = 6;
    /// The network configuration is invalid.
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition; the runtime may retry.
    pub const TRY_AGAIN: u32 = 11;
    /// STATUS: netloom cannot serve ADD (its state cannot be read, or no
    /// address is left to give).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: netloom cannot serve ADD, and attached containers may have
    /// limited connectivity (the network's bridge is gone).
    pub const LIMITED: u32 = 51;
    /// A kernel operation failed (netloom's own code).
    pub const KERNEL: u32 = 100;
    /// CHECK found the attachment differs from its prevResult (netloom's own code).
    pub const DRIFT: u32 = 101;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    pub fn config(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_CONFIG, msg)
    }

    pub fn env(msg: impl Into<String>) -> CniError {
        CniError::new(code::INVALID_ENV, msg)
    }

    /// The error object as the spec prints it, in `version`.
    pub fn to_json(&self, version: &str) -> Value {
        let mut v = json!({ "cniVersion": version, "code": self.code, "msg": self.msg });
        if !self.details.is_empty() {
            v["details"] = Value::String(self.details.clone());
        }
        v
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code)
    }
}

/// The spec's code for a refusal of the address model.
fn model_code(e: &ModelError) -> u32 {
    match e {
        ModelError::Exhausted { .. } => code::TRY_AGAIN,
        _ => code::INVALID_CONFIG,
    }
}

impl From<EngineError> for CniError {
    fn from(e: EngineError) -> CniError {
        let msg = e.to_string();
        let code = match &e {
            EngineError::Store(StoreError::Model(m)) => model_code(m),
            EngineError::Store(StoreError::Db { source, .. }) => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    code::TRY_AGAIN
                }
                _ => code::IO_FAILURE,
            },
            EngineError::Store(StoreError::Dir { .. } | StoreError::Corrupt { .. }) => {
                code::IO_FAILURE
            }
            EngineError::MissingFeature { .. } => code::INVALID_CONFIG,
            EngineError::Kernel { .. } | EngineError::Firewall(_) => code::KERNEL,
        };
        CniError::new(code, msg)
    }
}
