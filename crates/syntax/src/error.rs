//! Typed errors of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading language data, parsing a file or walking a tree.
///
/// Problems with a *single file* during a repository walk (unreadable, binary, too large, ...) are
/// not errors: they are reported as [`crate::SkipReason`]s and the walk goes on.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    /// No language is registered under this name.
    #[error("unknown language `{0}`")]
    UnknownLanguage(String),

    /// A `grammars/<lang>/language.toml` file is malformed (a bug in the embedded data).
    #[error("language data for `{language}` is invalid: {message}")]
    LanguageData { language: String, message: String },

    /// A `grammars/<lang>/units.scm` query does not compile against its grammar.
    #[error("units query for `{language}` is invalid at {row}:{column}: {message}")]
    Query {
        language: String,
        row: usize,
        column: usize,
        message: String,
    },

    /// The grammar could not be loaded into a parser (ABI version mismatch).
    #[error("grammar for `{language}` cannot be used: {message}")]
    Grammar { language: String, message: String },

    /// tree-sitter gave up on a file (it returns no tree only when cancelled or misconfigured).
    #[error("tree-sitter failed to parse `{path}`")]
    Parse { path: String },

    /// The file is too large for the 32-bit offsets of the AST graph / tree-sitter.
    #[error("`{path}` is too large to parse ({size} bytes)")]
    TooLarge { path: String, size: usize },

    /// The file is beyond a bound on the work one file may cost (nesting depth, number of
    /// units, text of its units; see [`crate::MAX_UNIT_DEPTH`]). A walk skips it with
    /// [`crate::SkipReason::TooComplex`].
    #[error("`{path}` is too complex to index: {reason}")]
    TooComplex { path: String, reason: String },

    /// An I/O error on a path given by the caller (e.g. the walk root).
    #[error("I/O error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A user-supplied glob pattern is invalid.
    #[error("invalid glob `{pattern}`: {message}")]
    Glob { pattern: String, message: String },

    /// The parallel walk could not be set up (e.g. thread pool creation failed).
    #[error("walk failed: {0}")]
    Walk(String),
}

impl SyntaxError {
    /// Why a walk skips a file that failed with this error.
    pub fn skip_reason(&self) -> crate::SkipReason {
        match self {
            SyntaxError::TooComplex { .. } => crate::SkipReason::TooComplex,
            SyntaxError::TooLarge { .. } => crate::SkipReason::TooLarge,
            _ => crate::SkipReason::ParseFailed,
        }
    }
}

pub type Result<T, E = SyntaxError> = std::result::Result<T, E>;
