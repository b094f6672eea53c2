use netloom_model::ModelError;
use netloom_store::StoreError;
use std::fmt;

/// Everything an engine operation can fail with. The message names the
/// object, the cause and what to do.
#[derive(Debug)]
pub enum EngineError {
    Store(StoreError),
}

impl EngineError {
    /// The model error inside, if this is one (a refused request rather than
    /// a failure of the machine).
    pub fn model(&self) -> Option<&ModelError> {
        match self {
            EngineError::Store(s) => s.model(),
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
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Store(e) => Some(e),
        }
    }
}
