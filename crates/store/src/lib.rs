//! # gnn-coder-store
//!
//! What an index of code units must be able to do, independent of where it lives. The engine
//! (`gnn-coder-engine`) talks only to these traits; the embedded store (`gnn-coder-index`:
//! tantivy + memory-mapped vectors on the local disk) implements them today, and a PostgreSQL +
//! pgvector store (sharded with Citus) is meant to implement them next without the engine
//! changing.
//!
//! ## Shape
//!
//! - A [`Store`] is an opened index. It hands out one [`StoreWriter`] at a time (the writer holds
//!   the index's lock until dropped) and any number of [`StoreReader`] snapshots.
//! - A writer batches: [`StoreWriter::upsert_files`] replaces all units of many files in one
//!   call, [`StoreWriter::delete_files`] and [`StoreWriter::delete_repository`] remove them, and
//!   nothing becomes visible to readers until [`StoreWriter::commit`], the single atomic point.
//!   A writer dropped without committing (or a process killed at any moment) leaves the last
//!   committed state. A remote backend maps one commit to one transaction.
//! - A reader is a consistent snapshot of one commit: its lexical and vector legs, unit fetches
//!   and repository listings all see the same units, however many commits happen meanwhile.
//!   [`UnitId`]s are only meaningful within the snapshot that produced them.
//! - Vectors are looked up by the unit's [`UnitKey`] (a hash of the model identity, language and
//!   unit text), so an unchanged unit keeps its vector across refreshes and the engine embeds
//!   only what is new ([`StoreWriter::known_keys`]).
//!
//! ## What stays above the trait
//!
//! Ranking policy: fusion of the two legs, weights, the test-code demotion and snippets are the
//! engine's, so every backend ranks the same way. What a backend must do is score each leg
//! (BM25 over the [`LexicalQuery`]'s fields; inner product for vectors) and apply the
//! [`Filters`] *inside* each leg before its top-N cut, never after it.
//!
//! ## Shared text rules
//!
//! Two rules every layer must apply identically live here, the lowest crate the backends, the
//! engine and training share: how identifiers split into words ([`words`]: a backend ranks by
//! them, the engine highlights by them, training mines hard negatives by them) and what test
//! code is ([`test_code`]: the engine demotes it, training mines no pairs from it).
//!
//! ## Conformance
//!
//! With the `conformance` feature, the `conformance` module is the one test suite every backend
//! runs (`conformance_tests!(harness)` in its tests): writes, refreshes, filters, the embedding
//! cache, snapshots, a killed writer, the lock and version refusal, against the traits only.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod test_code;
pub mod words;

pub use error::{ErrorKind, StoreError};

/// Result type of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A cooperative cancellation flag, cheap to clone and share between threads (the shape of
/// tokio-util's `CancellationToken`, without a runtime). Long loops call
/// [`CancellationToken::is_cancelled`] between steps; a child token is cancelled with its parent.
#[derive(Debug, Clone, Default)]
pub struct CancellationToken {
    inner: Arc<TokenInner>,
}

#[derive(Debug, Default)]
struct TokenInner {
    cancelled: AtomicBool,
    parent: Option<CancellationToken>,
}

impl CancellationToken {
    pub fn new() -> CancellationToken {
        CancellationToken::default()
    }

    /// A token that is cancelled when this one is (and can be cancelled on its own).
    pub fn child_token(&self) -> CancellationToken {
        CancellationToken {
            inner: Arc::new(TokenInner {
                cancelled: AtomicBool::new(false),
                parent: Some(self.clone()),
            }),
        }
    }

    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
            || self.inner.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// `Err(StoreError::Cancelled)` once cancelled: for `?` in long loops.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(StoreError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The model whose vectors an index holds. One index, one model: vectors of different models
/// are not comparable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// Model identity, e.g. `all-MiniLM-L6-v2+gnn-coder-head(trained:1a2b3c4d5e6f)`.
    pub model: String,
    pub dim: usize,
    /// Whether the model's own (graph, projection) weights were trained.
    pub trained: bool,
}

/// 128 bits identifying a unit's embedding input (model identity, language, text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UnitKey(pub [u8; 16]);

/// A unit's identity within one reader snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitId(pub u64);

/// One repository of a multi-repository index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoInfo {
    /// Unique name (`--name`, default: the root directory's name).
    pub name: String,
    /// Absolute root on the indexing machine; hit paths are relative to it.
    pub root: String,
    /// HEAD commit when the root is a git checkout.
    #[serde(default)]
    pub head: Option<String>,
    /// Seconds since the Unix epoch of the last completed index run.
    pub indexed_unix: u64,
    /// Files, units and bytes as committed. Readers derive them from the committed documents
    /// (the embedded store does), so they never drift from what is searchable; a writer's
    /// values are only a fallback.
    pub files: u64,
    pub units: u64,
    pub bytes: u64,
    /// Files skipped by the last run, by reason.
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
}

/// What the store remembers of one indexed file, to tell whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Root-relative, `/`-separated.
    pub path: String,
    /// Hex content hash of the file's bytes.
    pub hash: String,
    pub units: u32,
    pub bytes: u64,
}

/// One code unit as stored (what a hit shows), without its vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRecord {
    pub path: String,
    pub language: String,
    /// `function`, `method`, `class`, ... (`gnn_coder_syntax::UnitKind::as_str`).
    pub kind: String,
    pub name: String,
    pub symbol: String,
    pub start_line: u64,
    pub end_line: u64,
    pub def_line: u64,
    pub start_byte: u64,
    pub end_byte: u64,
    pub doc: Option<String>,
    pub code: String,
}

/// A unit to write: its record, its embedding key and (in a store with vectors) its vector.
#[derive(Debug, Clone)]
pub struct UnitWrite {
    pub record: UnitRecord,
    pub key: UnitKey,
    /// L2-normalized; required when the store holds vectors, ignored otherwise.
    pub vector: Option<Vec<f32>>,
}

/// All units of one file, replacing whatever the store held for that path.
#[derive(Debug, Clone)]
pub struct FileWrite {
    pub file: FileEntry,
    pub units: Vec<UnitWrite>,
}

/// Filters every leg applies before its top-N cut. Empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub languages: Vec<String>,
    /// Unit kinds (`function`, `class`, ...).
    pub kinds: Vec<String>,
    pub repositories: Vec<String>,
    /// Globs over the root-relative path, compiled once by whoever built the filters; a unit
    /// passes when any matches.
    pub path_globs: PathGlobs,
    /// Units to leave out (e.g. the unit a "similar" search starts from).
    pub exclude_units: Vec<UnitId>,
}

/// Path globs compiled into one matcher when they are made, so a bad glob is refused where a
/// request is checked and no leg compiles them again.
#[derive(Debug, Clone, Default)]
pub struct PathGlobs {
    patterns: Vec<String>,
    set: Option<globset::GlobSet>,
}

impl PathGlobs {
    /// Compiles `patterns`; the first bad one is an [`StoreError::InvalidArgument`] naming it.
    pub fn new<I, S>(patterns: I) -> Result<PathGlobs>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        if patterns.is_empty() {
            return Ok(PathGlobs::default());
        }
        let mut b = globset::GlobSetBuilder::new();
        for g in &patterns {
            let glob = globset::Glob::new(g).map_err(|e| StoreError::InvalidArgument {
                message: format!("invalid path glob {g:?}: {}", e.kind()),
            })?;
            b.add(glob);
        }
        let set = b.build().map_err(|e| StoreError::InvalidArgument {
            message: format!("invalid path globs: {e}"),
        })?;
        Ok(PathGlobs {
            patterns,
            set: Some(set),
        })
    }

    /// The globs as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The compiled matcher (`None` without globs).
    pub fn set(&self) -> Option<&globset::GlobSet> {
        self.set.as_ref()
    }

    /// Whether `path` passes: true without globs, else when any glob matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.set.as_ref().is_none_or(|s| s.is_match(path))
    }
}

impl PartialEq for PathGlobs {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for PathGlobs {}

/// Per-field BM25 weights of the lexical leg.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldBoosts {
    pub name: f32,
    pub symbol: f32,
    pub doc: f32,
    pub code: f32,
    pub path: f32,
}

impl Default for FieldBoosts {
    fn default() -> Self {
        // Chosen on the dev benchmark (README, Quality): the name and the qualified symbol matter
        // as much as the whole body; the path adds a little. Bigger name boosts hurt.
        FieldBoosts {
            name: 1.0,
            symbol: 1.0,
            doc: 1.5,
            code: 1.0,
            path: 0.6,
        }
    }
}

/// The lexical leg's request.
#[derive(Debug, Clone)]
pub struct LexicalQuery {
    pub text: String,
    pub boosts: FieldBoosts,
    pub filters: Filters,
    pub limit: usize,
}

/// The vector leg's request.
#[derive(Debug, Clone)]
pub struct VectorQuery {
    /// L2-normalized, of the index's dimension.
    pub vector: Vec<f32>,
    pub filters: Filters,
    pub limit: usize,
    /// Force an exact scan (for measuring the approximate index).
    pub exact: bool,
}

/// A unit of a snapshot with its repository.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUnit {
    pub id: UnitId,
    pub repository: String,
    pub record: UnitRecord,
}

/// Counts over a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    pub repositories: u64,
    pub files: u64,
    pub units: u64,
    /// Vectors held (distinct unit texts, including ones no live unit uses any more).
    pub vectors: u64,
    /// Vectors covered by the approximate nearest-neighbour index.
    pub ann_vectors: u64,
    pub bytes_on_disk: u64,
}

/// An opened index.
pub trait Store: Send + Sync {
    /// The model of the stored vectors; `None` for a lexical-only index.
    fn embedding(&self) -> Option<&EmbeddingInfo>;
    /// The single writer; fails with [`ErrorKind::Locked`] while another one exists (in this or
    /// another process).
    fn writer(&self) -> Result<Box<dyn StoreWriter>>;
    /// A snapshot of the last commit.
    fn reader(&self) -> Result<Arc<dyn StoreReader>>;
    /// Builds now what this process's first writer would otherwise build (for a server, whose
    /// first update should be as fast as the next). Takes no lock and changes nothing stored;
    /// the default has nothing to build.
    fn prepare_writes(&self) -> Result<()> {
        Ok(())
    }
}

/// Batched writes, visible at [`StoreWriter::commit`].
pub trait StoreWriter: Send {
    /// Replaces the units of each file (deleting the previous ones) and records its entry.
    fn upsert_files(&mut self, repository: &str, files: Vec<FileWrite>) -> Result<()>;
    /// Removes files and their units.
    fn delete_files(&mut self, repository: &str, paths: &[String]) -> Result<()>;
    /// Adds or updates a repository's record.
    fn put_repository(&mut self, info: &RepoInfo) -> Result<()>;
    /// Removes a repository, its files and units.
    fn delete_repository(&mut self, name: &str) -> Result<()>;
    /// Whether a vector is already stored for each key (the embedding cache), in order; a unit
    /// with a known key may be written with `vector: None`.
    fn known_keys(&self, keys: &[UnitKey]) -> Result<Vec<bool>>;
    /// Makes everything written so far visible, atomically and durably.
    fn commit(&mut self, cancel: &CancellationToken) -> Result<()>;
    /// Work that makes later searches faster without changing what they find (e.g. rebuilding
    /// an approximate index); called after a final commit. May take long; honours `cancel`.
    fn maintain(&mut self, cancel: &CancellationToken) -> Result<()> {
        let _ = cancel;
        Ok(())
    }
}

/// A consistent snapshot of one commit.
pub trait StoreReader: Send + Sync {
    /// Builds now what the snapshot's first search would otherwise build (for a server, whose
    /// first search should be as fast as the next); the default has nothing to build.
    fn warm(&self) -> Result<()> {
        Ok(())
    }
    fn repositories(&self) -> Result<Vec<RepoInfo>>;
    /// One repository's record and counts (a backend answers from an index; the default
    /// scans [`repositories`], which counts every repository).
    ///
    /// [`repositories`]: StoreReader::repositories
    fn repository(&self, name: &str) -> Result<Option<RepoInfo>> {
        Ok(self.repositories()?.into_iter().find(|r| r.name == name))
    }
    /// The indexed files of a repository (empty for an unknown one).
    fn files(&self, repository: &str) -> Result<Vec<FileEntry>>;
    /// One file's entry (a backend answers from an index; the default scans [`files`]).
    ///
    /// [`files`]: StoreReader::files
    fn file(&self, repository: &str, path: &str) -> Result<Option<FileEntry>> {
        Ok(self.files(repository)?.into_iter().find(|f| f.path == path))
    }
    /// BM25 top-`limit`, best first. An empty analysed query gives no hits.
    fn lexical(&self, query: &LexicalQuery) -> Result<Vec<(UnitId, f32)>>;
    /// Inner-product top-`limit`, best first. Fails with [`ErrorKind::Incompatible`] on an
    /// index without vectors or a query of another dimension.
    fn vector(&self, query: &VectorQuery) -> Result<Vec<(UnitId, f32)>>;
    /// Units by id, in the order asked (unknown ids are skipped).
    fn units(&self, ids: &[UnitId]) -> Result<Vec<StoredUnit>>;
    /// The units of one file, in source order.
    fn units_of_file(&self, repository: &str, path: &str) -> Result<Vec<StoredUnit>>;
    /// A unit's stored vector.
    fn unit_vector(&self, id: UnitId) -> Result<Option<Vec<f32>>>;
    /// Inner products of `query` with the stored vectors of `ids`, in order (`None` for an
    /// unknown unit): the dense scores fusion needs for lexical-only candidates, in one call.
    fn vector_scores(&self, ids: &[UnitId], query: &[f32]) -> Result<Vec<Option<f32>>>;
    fn stats(&self) -> Result<StoreStats>;
    /// The BM25 scores [`StoreReader::lexical`] would give `units` (texts this store does not
    /// hold: an engine's overlay of unsaved buffers) for `query`'s text and boosts, with this
    /// snapshot's corpus statistics, so they rank among the stored units' scores; 0 where no
    /// term matches. `None` where the backend cannot score outside texts: the caller then
    /// commits instead of overlaying.
    fn lexical_scores(
        &self,
        _query: &LexicalQuery,
        _units: &[UnitRecord],
    ) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}
