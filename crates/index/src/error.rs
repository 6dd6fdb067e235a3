//! Mapping tantivy's and the standard library's errors to [`StoreError`].
//!
//! Every error leaving the crate is a [`StoreError`]; callers (the engine, the CLI) decide by its
//! kind. A lock held by another process is [`StoreError::Locked`], an I/O failure keeps its path,
//! anything else tantivy reports is a [`StoreError::Backend`] with its message.
//!
//! tantivy panics on some damaged files it did not detect (a flipped byte in a term dictionary
//! fails an assertion in its FST or file-slice code). Every call into tantivy that reads index
//! files runs inside [`guard`], which turns such a panic into [`StoreError::Damaged`], naming
//! the file whose checksum fails when there is one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use gnn_coder_store::{Result, StoreError};
use tantivy::Index;

use crate::store::LEXICAL_DIR;

pub(crate) fn tantivy_err(dir: &Path) -> impl Fn(tantivy::TantivyError) -> StoreError + '_ {
    move |e| match e {
        tantivy::TantivyError::LockFailure(..) => StoreError::Locked {
            path: dir.to_path_buf(),
            pid: "?".into(),
        },
        tantivy::TantivyError::IoError(io) => StoreError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        other => StoreError::Backend {
            message: other.to_string(),
        },
    }
}

/// A mutex of the store was poisoned by a panicking thread.
pub(crate) fn poisoned() -> StoreError {
    StoreError::Backend {
        message: "a thread panicked while holding the index".into(),
    }
}

pub(crate) fn backend(e: tantivy::TantivyError) -> StoreError {
    StoreError::Backend {
        message: e.to_string(),
    }
}

pub(crate) fn io_backend(e: std::io::Error) -> StoreError {
    StoreError::Backend {
        message: e.to_string(),
    }
}

/// Runs `f` (which reads tantivy's files), turning a panic into [`StoreError::Damaged`]. With
/// `index`, the files are checked to name the damaged one.
pub(crate) fn guard<T>(
    dir: &Path,
    index: Option<&Index>,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let lexical = dir.join(LEXICAL_DIR);
            let file = index
                .and_then(|i| catch_unwind(AssertUnwindSafe(|| i.validate_checksum())).ok())
                .and_then(|r| r.ok())
                .and_then(|bad| bad.into_iter().min())
                .map_or(lexical, |f| dir.join(LEXICAL_DIR).join(f));
            Err(StoreError::Damaged {
                path: file,
                reason: format!("{what} failed inside tantivy: {message}"),
            })
        }
    }
}
