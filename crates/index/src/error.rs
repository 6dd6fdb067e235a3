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
use std::path::{Path, PathBuf};

use gnn_coder_store::{Result, StoreError};
use tantivy::Index;

use crate::store::LEXICAL_DIR;

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
        e if is_damage(&e) => StoreError::Damaged {
            path: dir.join(LEXICAL_DIR),
            reason: e.to_string(),
        },
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

/// A tantivy error of a read. Damage tantivy detected itself becomes [`StoreError::Damaged`]
/// of `lexical/` (relative: [`guard`] puts the index directory in front).
pub(crate) fn backend(e: tantivy::TantivyError) -> StoreError {
    if is_damage(&e) {
        return StoreError::Damaged {
            path: PathBuf::from(LEXICAL_DIR),
            reason: e.to_string(),
        };
    }
    StoreError::Backend {
        message: e.to_string(),
    }
}

/// An I/O error reading tantivy's files (decompressing the doc store).
pub(crate) fn io_backend(e: std::io::Error) -> StoreError {
    if is_damaged_io(&e) {
        return StoreError::Damaged {
            path: PathBuf::from(LEXICAL_DIR),
            reason: e.to_string(),
        };
    }
    StoreError::Backend {
        message: e.to_string(),
    }
}

/// Whether tantivy's error says that its files are not what it wrote: corrupt data, a value
/// that does not deserialize, a field or file the schema promises and the segment lacks.
fn is_damage(e: &tantivy::TantivyError) -> bool {
    use tantivy::TantivyError as T;
    match e {
        T::DataCorruption(_)
        | T::DeserializeError(_)
        | T::SchemaError(_)
        | T::FieldNotFound(_)
        | T::IncompatibleIndex(_)
        | T::OpenReadError(_) => true,
        T::IoError(io) => is_damaged_io(io),
        _ => false,
    }
}

/// Reading an index file: a short read or undecodable bytes (zstd reports "Data corruption
/// detected" as `Other`) is damage; the index is memory-mapped, so real device errors do not
/// come back as errors at all.
fn is_damaged_io(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::InvalidData | K::UnexpectedEof | K::Other)
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
        Ok(Err(StoreError::Damaged { path, reason })) if path.is_relative() => {
            Err(StoreError::Damaged {
                path: name_damaged(dir, index).unwrap_or_else(|| dir.join(path)),
                reason,
            })
        }
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(StoreError::Damaged {
                path: name_damaged(dir, index).unwrap_or_else(|| dir.join(LEXICAL_DIR)),
                reason: format!("{what} failed inside tantivy: {message}"),
            })
        }
    }
}

/// The first tantivy file of `index` failing its checksum, if any.
fn name_damaged(dir: &Path, index: Option<&Index>) -> Option<PathBuf> {
    let bad = catch_unwind(AssertUnwindSafe(|| index?.validate_checksum().ok())).ok()??;
    bad.into_iter().min().map(|f| dir.join(LEXICAL_DIR).join(f))
}
