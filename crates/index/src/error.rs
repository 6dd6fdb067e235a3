//! Mapping tantivy's and the standard library's errors to [`StoreError`].
//!
//! Every error leaving the crate is a [`StoreError`]; callers (the engine, the CLI) decide by its
//! kind. A lock held by another process is [`StoreError::Locked`], an I/O failure keeps its path,
//! anything else tantivy reports is a [`StoreError::Backend`] with its message.

use std::path::Path;

use gnn_coder_store::StoreError;

pub(crate) fn tantivy_err(dir: &Path) -> impl Fn(tantivy::TantivyError) -> StoreError + '_ {
    move |e| {
        // A full disk keeps its cause (and kind) wherever tantivy wrapped the I/O error.
        if let Some(full) = StoreError::no_space_in(dir, &e) {
            return full;
        }
        tantivy_err_kind(dir, e)
    }
}

fn tantivy_err_kind(dir: &Path, e: tantivy::TantivyError) -> StoreError {
    match e {
        tantivy::TantivyError::LockFailure(..) => StoreError::Locked {
            path: dir.to_path_buf(),
            pid: "?".into(),
        },
        tantivy::TantivyError::IoError(io) => StoreError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        tantivy::TantivyError::OpenWriteError(
            tantivy::directory::error::OpenWriteError::IoError { io_error, filepath },
        ) => StoreError::Io {
            path: dir.join(filepath),
            source: std::io::Error::new(io_error.kind(), io_error.to_string()),
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
