use std::path::PathBuf;

/// Everything that can go wrong while building, opening or searching an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("no index at {path}: {reason}")]
    NotFound { path: PathBuf, reason: String },

    #[error(
        "{path} exists and is not a gnn-coder index (it has no gnn-coder.json); refusing to write into it"
    )]
    NotAnIndex { path: PathBuf },

    #[error(
        "index at {path} has format version {found}, this gnn-coder reads version {expected}; rebuild it with `gnn-coder index`"
    )]
    IncompatibleVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    #[error("index manifest {path} is damaged: {reason}")]
    BadManifest { path: PathBuf, reason: String },

    #[error(
        "index at {path} holds no vectors (it was built without a model); rebuild it with `gnn-coder index` after `scripts/fetch-model.sh`, or search with --mode lexical"
    )]
    NoVectors { path: PathBuf },

    #[error(
        "index at {path} holds {index}-dimensional vectors but the query has {query}; rebuild the index with the current model"
    )]
    DimensionMismatch {
        path: PathBuf,
        index: usize,
        query: usize,
    },

    #[error("invalid path glob {glob:?}: {reason}")]
    BadGlob { glob: String, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("search engine error: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> IndexError {
        let path = path.into();
        move |source| IndexError::Io { path, source }
    }
}
