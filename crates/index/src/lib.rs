//! # gnn-coder-index: the embedded store
//!
//! The default backend of [`gnn_coder_store`]: one directory on the local disk holding any number
//! of repositories, updated in place file by file, readable while it is written, and never left
//! broken by a crash.
//!
//! ## Layout of an index directory
//!
//! ```text
//! DIR/
//!   gnn-coder.json     the manifest: format version, the model of the vectors
//!   .gitignore         `*`: an index inside a repository ignores itself
//!   writer.lock        flock'ed by the one writer, holding its PID
//!   lexical/           one tantivy index: unit, file and repository documents
//!   vectors/keys.bin   the embedding key of every vector row (the embedding cache)
//!   vectors/rows.i8    vector rows, int8 with a per-row scale, memory-mapped by readers
//!   vectors/ann-*.bin  the approximate nearest-neighbour index over a prefix of the rows
//! ```
//!
//! ## Why this shape
//!
//! tantivy already gives what a code index needs to be safe: one writer at a time, readers that
//! hold a snapshot of segments until they reload, and a `commit` that is the single atomic point
//! (an interrupted write leaves garbage to collect, never a broken index). So everything whose
//! consistency matters lives *inside* tantivy: units, the per-file content hashes used by
//! refreshes, and the repository records are all documents of the same index, and the deletes
//! and adds of one refresh become visible together or not at all. A search during indexing sees
//! the last commit, never half a file.
//!
//! Vectors live beside it in append-only files ([`rows`](crate) module docs): a unit document
//! names its row, rows are written and fsynced before the commit that first names them, and a
//! row is never rewritten, so a snapshot's rows are always complete. Rows are addressed by the
//! unit's embedding key (model, language, text), which makes them the embedding cache too: an
//! edit to one function re-embeds one function.
//!
//! The manifest is written once, when the directory is created (built aside and renamed into
//! place). An index of another format version is refused with
//! [`StoreError::IncompatibleVersion`](gnn_coder_store::StoreError) instead of being misread.
//!
//! ## Search
//!
//! The lexical leg is BM25 over a code-aware tokenization ([`tokenizer`]) of the unit's name,
//! qualified symbol, doc comment, code and path, with per-field boosts. Language, kind and
//! repository filters are term filters inside the query; path globs and exclusions are checked
//! on the ranked hits, fetching deeper until enough pass. The vector leg scans the rows of every
//! unit passing the filters (fast-field ordinals, no stored-field reads), or, when more than
//! 20,000 units pass ([`EmbeddedStore::set_ann_min_rows`]) and an approximate index exists, asks it for filtered candidates and scans
//! exactly only the rows appended since it was built.

//!
//! ## Modules
//!
//! | module | its one job |
//! |---|---|
//! | `store` | [`EmbeddedStore`]: open, create, remove a directory; hand out writers and snapshots |
//! | `schema` | the tantivy schema: three document types in one index, their key terms |
//! | `writer` | [`EmbeddedWriter`]: upserts and deletes, rows before the commit, ANN upkeep |
//! | `snapshot` | [`Snapshot`]: the record-level reads of one commit (units, files, stats) |
//! | `lexical` | the BM25 leg: query building, term filters, post-filtered deepening |
//! | `topk` | the vector leg: exact scan, the ANN walk, the bounded top-k heap |
//! | `filter` | request filters resolved per segment on term ordinals |
//! | `rows`, `ann` | the int8 vector rows and the approximate index over them |
//! | `manifest`, `lock`, `error` | the format marker, the writer lock, error mapping |
//! | [`tokenizer`] | the code-aware analysis of the lexical leg |

mod ann;
mod error;
mod filter;
mod integrity;
mod lexical;
mod lock;
mod manifest;
mod rows;
mod schema;
mod snapshot;
mod store;
pub mod tokenizer;
mod topk;
mod writer;

pub use manifest::{FORMAT_VERSION, MANIFEST_FILE, Manifest};
pub use snapshot::Snapshot;
pub use store::EmbeddedStore;
pub use writer::EmbeddedWriter;
