use netloom_model::ModelError;
use std::fmt;
use std::path::PathBuf;

#[derive(Debug)]
pub enum StoreError {
    /// What was asked breaks a rule of the model.
    Model(ModelError),
    /// The database could not do what was asked.
    Db {
        path: PathBuf,
        op: String,
        source: rusqlite::Error,
    },
    /// The state directory cannot be used.
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored record cannot be read back.
    Corrupt { path: PathBuf, what: String },
}

impl StoreError {
    /// The model error inside, if this is one.
    pub fn model(&self) -> Option<&ModelError> {
        match self {
            StoreError::Model(m) => Some(m),
            _ => None,
        }
    }
}

impl From<ModelError> for StoreError {
    fn from(e: ModelError) -> Self {
        StoreError::Model(e)
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Model(e) => e.fmt(f),
            StoreError::Db { path, op, source } => {
                let hint = match source.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                        "another netloom process held the state too long; try again"
                    }
                    Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen) => {
                        "check that the state directory is writable (--state-dir or NETLOOM_STATE_DIR)"
                    }
                    Some(rusqlite::ErrorCode::DiskFull) => "free some disk space",
                    _ => "check the state directory (--state-dir or NETLOOM_STATE_DIR)",
                };
                write!(f, "state {}: {op}: {source}; {hint}", path.display())
            }
            StoreError::Dir { path, source } => write!(
                f,
                "state directory {}: {source}; choose a writable one with --state-dir or NETLOOM_STATE_DIR",
                path.display()
            ),
            StoreError::Corrupt { path, what } => write!(
                f,
                "state {}: cannot read {what}; the file was changed outside netloom or by a newer version",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Model(e) => Some(e),
            StoreError::Db { source, .. } => Some(source),
            StoreError::Dir { source, .. } => Some(source),
            StoreError::Corrupt { .. } => None,
        }
    }
}
