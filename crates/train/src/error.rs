//! Errors of the training library.
//!
//! One enum, [`TrainError`], for every fallible function of the crate (the miner aside, which
//! keeps `anyhow`). Its messages are written for a person: the command line prints them as
//! they are, with each [`std::error::Error::source`] below as a "caused by" line.
//! [`TrainError::Context`] is the library's counterpart of `anyhow::Context`: what was being
//! done, with the failure as its source.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {message}")]
    BadLine {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] gnn_coder_model::ModelError),
    #[error("invalid training configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Input(String),
    #[error("tensor: {0}")]
    Tensor(String),
    #[error("interrupted")]
    Interrupted,
    /// What was being done when `source` failed.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// An I/O error on a file already open (its message alone, as `std` words it).
    #[error(transparent)]
    RawIo(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The training backend `device` exists, but this build lacks its cargo feature.
    #[error(
        "--device {device}: this gnn-coder was built without that backend; rebuild with \
         `cargo build --release -p gnn-coder-cli --features {feature}`"
    )]
    MissingBackend {
        device: String,
        feature: &'static str,
    },
    /// No training backend has this name.
    #[error("--device {0}: use flex, tch, tch-cuda, cuda or ndarray")]
    UnknownDevice(String),
    /// Training was stopped (Ctrl-C / SIGTERM) before its last step; the checkpoint written
    /// when it stopped is kept, no weights were written.
    #[error(
        "training stopped at step {steps} of {total_steps}; its checkpoint is in {}; run the \
         same command again to resume (no weights were written)",
        checkpoints.display()
    )]
    Stopped {
        steps: usize,
        total_steps: usize,
        checkpoints: PathBuf,
    },
}

pub type Result<T> = std::result::Result<T, TrainError>;

pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `anyhow::Context` for the library: wrap an error in [`TrainError::Context`].
pub(crate) trait ErrorContext<T> {
    fn with_context<F: FnOnce() -> String>(self, context: F) -> Result<T>;
}

impl<T, E> ErrorContext<T> for std::result::Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    fn with_context<F: FnOnce() -> String>(self, context: F) -> Result<T> {
        self.map_err(|e| TrainError::Context {
            context: context(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn context_keeps_the_failure_as_its_source() {
        let failed: std::result::Result<(), std::io::Error> =
            Err(std::io::Error::other("disk full"));
        let err = failed
            .with_context(|| "cannot write report.json".to_string())
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot write report.json");
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("disk full")
        );
    }
}
