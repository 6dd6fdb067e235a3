use gnn_coder_model::ModelError;
pub use gnn_coder_store::ErrorKind;
use gnn_coder_store::StoreError;
use gnn_coder_syntax::SyntaxError;

/// Errors of the engine: what happened, never what to type next (front ends add that).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error(transparent)]
    Syntax(#[from] SyntaxError),

    #[error("{0}")]
    InvalidArgument(String),

    #[error("{0}")]
    NotFound(String),

    /// The index cannot serve this request as it is (other model, no vectors).
    #[error("{0}")]
    Incompatible(String),

    /// Another job of this engine is working on the same repository.
    #[error("{0}")]
    Busy(String),

    #[error("cancelled")]
    Cancelled,

    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Store(e) => e.kind(),
            EngineError::Model(e) => match e {
                ModelError::MissingModelFile { .. } | ModelError::ModelNotFound { .. } => {
                    ErrorKind::ModelMissing
                }
                ModelError::NotWeights { .. } | ModelError::Checksum { .. } => {
                    ErrorKind::InvalidArgument
                }
                ModelError::Input(_) => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
            EngineError::Syntax(e) => match e {
                SyntaxError::Io { .. } => ErrorKind::NotFound,
                _ => ErrorKind::InvalidArgument,
            },
            EngineError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Incompatible(_) => ErrorKind::Incompatible,
            EngineError::Busy(_) => ErrorKind::Locked,
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
