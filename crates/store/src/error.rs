use std::path::PathBuf;

/// What kind of failure, for callers that map errors to exit or status codes (the service maps
/// these to gRPC codes in one place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such index, repository, file or unit.
    NotFound,
    /// The request itself is wrong (empty query, bad glob, out-of-range value).
    InvalidArgument,
    /// Another writer holds the index.
    Locked,
    /// The index exists but cannot be used as asked (other format version, other model,
    /// no vectors).
    Incompatible,
    /// A file of the index is damaged (truncated, overwritten, failing its checksum): the
    /// index must be rebuilt. Never a silent wrong answer.
    Damaged,
    /// The model files are missing.
    ModelMissing,
    /// A backend (database, disk) is unreachable or failing for now.
    Unavailable,
    /// Stopped by a cancellation token.
    Cancelled,
    /// A bug or an unexpected failure.
    Internal,
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no index at {path}: {reason}")]
    NotFound { path: PathBuf, reason: String },

    #[error(
        "{path} exists and is not a gnn-coder index (it has no gnn-coder.json); refusing to write into it"
    )]
    NotAnIndex { path: PathBuf },

    #[error("index at {path} has format version {found}, this gnn-coder reads version {expected}")]
    IncompatibleVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    /// `path` is the damaged file where it is known, else the index directory.
    #[error("the index is damaged: {path}: {reason}")]
    Damaged { path: PathBuf, reason: String },

    #[error("index at {path} is locked by PID {pid} (another gnn-coder is writing to it)")]
    Locked { path: PathBuf, pid: String },

    #[error("index at {path} holds no vectors (it was built without a model)")]
    NoVectors { path: PathBuf },

    #[error("index at {path} holds {index}-dimensional vectors but the query has {query}")]
    DimensionMismatch {
        path: PathBuf,
        index: usize,
        query: usize,
    },

    #[error("{message}")]
    InvalidArgument { message: String },

    #[error("cancelled")]
    Cancelled,

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("storage backend error: {message}")]
    Backend { message: String },
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::NotAnIndex { .. } | StoreError::InvalidArgument { .. } => {
                ErrorKind::InvalidArgument
            }
            StoreError::Damaged { .. } => ErrorKind::Damaged,
            StoreError::IncompatibleVersion { .. }
            | StoreError::NoVectors { .. }
            | StoreError::DimensionMismatch { .. } => ErrorKind::Incompatible,
            StoreError::Locked { .. } => ErrorKind::Locked,
            StoreError::Cancelled => ErrorKind::Cancelled,
            StoreError::Io { .. } => ErrorKind::Unavailable,
            StoreError::Backend { .. } => ErrorKind::Internal,
        }
    }

    /// `map_err` helper for I/O on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}
