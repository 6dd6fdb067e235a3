//! # gnn-coder-index
//!
//! The on-disk index of a repository's code units, and search over it.
//!
//! ## Layout of an index directory
//!
//! ```text
//! DIR/
//!   gnn-coder.json        the manifest: format version, indexed root, statistics,
//!                         and the name of the live generation
//!   gen-000007/           one complete, immutable build ("generation")
//!     lexical/            the tantivy index of units (BM25 over symbol, doc, code, path)
//! ```
//!
//! A build writes a new generation directory next to the live one and only then replaces
//! `gnn-coder.json` (write to a temporary file, fsync, rename), so a crash or an error at any point
//! leaves the previous index intact and searchable; old generations are removed after the switch.
//! The manifest names its format version; an index written by an incompatible version is refused
//! with [`IndexError::IncompatibleVersion`] instead of being misread. Vector stores for semantic
//! search will live inside the generation beside `lexical/`.
//!
//! ## Lexical search
//!
//! Every text field is analysed by the code-aware tokenizer of [`tokenizer`]. A query is analysed
//! the same way and becomes a disjunction of per-field term queries scored with BM25, with boosts
//! that favour the unit's name and symbol over its body ([`FieldBoosts`]). Language and kind
//! filters are exact term filters inside the query; a path glob is applied to the ranked hits.

mod error;
mod lexical;
mod manifest;
pub mod tokenizer;
mod vectors;

pub use error::IndexError;
pub use lexical::{FieldBoosts, Hit, IndexBuilder, KindFilter, SearchIndex, SearchRequest};
pub use manifest::{BuildStats, FORMAT_VERSION, MANIFEST_FILE, Manifest};
pub use vectors::EmbeddingInfo;

/// Result type of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
