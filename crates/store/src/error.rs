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
    /// The disk (or a quota) is full: nothing more can be written until space is freed.
    NoSpace,
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

    /// A remote backend (a database) cannot be reached or failed for now; `location` is where
    /// it was asked for, with any password left out.
    #[error("{location} is unavailable: {message}")]
    Unavailable { location: String, message: String },

    /// A remote backend's writer could not take one repository: another writer holds it.
    #[error(
        "repository {repository:?} in {location} is locked (another gnn-coder is writing to it)"
    )]
    RepositoryLocked {
        location: String,
        repository: String,
    },
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
            StoreError::Io { source, .. } if is_no_space(source) => ErrorKind::NoSpace,
            StoreError::Io { .. } => ErrorKind::Unavailable,
            StoreError::Backend { .. } => ErrorKind::Internal,
            StoreError::Unavailable { .. } => ErrorKind::Unavailable,
            StoreError::RepositoryLocked { .. } => ErrorKind::Locked,
        }
    }

    /// A full disk, anywhere in a backend's error chain, as [`StoreError::Io`] on `path` (its
    /// kind is [`ErrorKind::NoSpace`]); `None` when the chain holds no such I/O error.
    pub fn no_space_in(
        path: impl Into<PathBuf>,
        err: &(dyn std::error::Error + 'static),
    ) -> Option<StoreError> {
        let mut next = Some(err);
        while let Some(e) = next {
            // tantivy keeps its I/O errors in `Arc`s.
            let io = e.downcast_ref::<std::io::Error>().or_else(|| {
                e.downcast_ref::<std::sync::Arc<std::io::Error>>()
                    .map(|a| a.as_ref())
            });
            if let Some(io) = io
                && is_no_space(io)
            {
                return Some(StoreError::Io {
                    path: path.into(),
                    source: std::io::Error::new(std::io::ErrorKind::StorageFull, io.to_string()),
                });
            }
            // Some layers keep only the message (tantivy's "Internal error: 'No space …'").
            let text = e.to_string();
            if says_no_space(&text) {
                return Some(StoreError::Io {
                    path: path.into(),
                    source: std::io::Error::new(std::io::ErrorKind::StorageFull, text),
                });
            }
            next = e.source();
        }
        None
    }

    /// `map_err` helper for I/O on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { path, source }
    }
}

/// Whether an I/O error says the disk (or a quota) is full.
/// Whether an I/O error says the disk (or a quota) is full: by its kind or OS code, by those of
/// an I/O error it wraps, or by the words of ENOSPC in its message (tantivy re-wraps some of its
/// writers' errors as `Other`, keeping only the text).
fn is_no_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    if matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
    {
        return true;
    }
    let mut inner = e.get_ref().map(|i| i as &(dyn std::error::Error + 'static));
    while let Some(i) = inner {
        if let Some(io) = i.downcast_ref::<std::io::Error>() {
            return is_no_space(io);
        }
        inner = i.source();
    }
    // Last, the words: some layers keep only the message (`io::Error::other(e.to_string())`).
    says_no_space(&e.to_string())
}

/// Whether a message is ENOSPC's.
fn says_no_space(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("os error 28")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_its_own_kind() {
        let full = StoreError::Io {
            path: "idx".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(full.kind(), ErrorKind::NoSpace);
        assert!(
            full.to_string().contains("No space left on device"),
            "{full}"
        );
        let other = StoreError::Io {
            path: "idx".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(other.kind(), ErrorKind::Unavailable);
        // Wrapped in another error, as tantivy wraps its I/O errors.
        #[derive(Debug, thiserror::Error)]
        #[error("write failed")]
        struct Wrapper(#[source] std::io::Error);
        let w = Wrapper(std::io::Error::from(std::io::ErrorKind::StorageFull));
        let e = StoreError::no_space_in("idx", &w).expect("found");
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        // An I/O error of kind `Other` around the real one.
        let rewrapped = std::io::Error::other(std::io::Error::from_raw_os_error(28));
        let e = StoreError::Io {
            path: "idx".into(),
            source: rewrapped,
        };
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert!(StoreError::no_space_in("idx", &Wrapper(other_io())).is_none());
        // Only the words are left (tantivy's internal errors).
        let words =
            std::io::Error::other("Internal error: 'No space left on device (os error 28)'");
        let e = StoreError::no_space_in("idx", &Wrapper(words)).expect("found");
        assert_eq!(e.kind(), ErrorKind::NoSpace);
    }

    fn other_io() -> std::io::Error {
        std::io::Error::other("boom")
    }
}
