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
//!   gnn-coder.json     the manifest: format version, the model of the vectors, their codes
//!   checksums.json     committed vector rows and CRC-32s of the files tantivy does not checksum
//!   .gitignore         `*`: an index inside a repository ignores itself
//!   writer.lock        flock'ed by the one writer, holding its PID
//!   lexical/           one tantivy index: unit, file and repository documents
//!   vectors/keys.bin   the embedding key of every vector row (the embedding cache)
//!   vectors/rows.i8    vector rows, int8 with a per-row scale, memory-mapped by readers
//!                      (rows.i4 instead in an index created with int4 codes)
//!   vectors/ann-*.bin  the approximate nearest-neighbour index over a prefix of the rows: its
//!                      graph only, the vectors are read from the rows when it is loaded
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
//! ## A damaged index fails loudly
//!
//! The guarantee: a file of the index that is truncated, zeroed or has any byte changed gives
//! [`StoreError::Damaged`](gnn_coder_store::StoreError) (kind `Damaged`: DATA_LOSS on the
//! wire, "rebuild with `--rebuild`" in the CLI) naming the file, or, where the damage cannot
//! change an answer, the undamaged index's exact answers; never a panic and never a silently
//! different answer. `tests/damage.rs` checks this for every file of an index and four kinds
//! of damage (truncated, halved, zeroed, flipped bytes), before and after a write.
//!
//! What is verified, and when (the `integrity` module documents the record):
//!
//! | file | check | when |
//! |---|---|---|
//! | `gnn-coder.json` | parses, known version; CRC-32 recorded in `checksums.json` | every open |
//! | `checksums.json` | parses, known version | every snapshot and writer |
//! | `lexical/*` segment files | tantivy's footer CRC-32 over the whole file | once per file per process, before tantivy reads it |
//! | `lexical/meta.json` | parses; names only files that pass their checksum | every snapshot |
//! | `vectors/rows.i8` (or `rows.i4`) | length covers every committed row and every row a document names; CRC-32 per 1 MiB block | blocks once per process |
//! | `vectors/keys.bin` | length and CRC-32 per block | when a writer opens |
//! | `vectors/ann-*.bin` | its own header and payload CRC-32s, and a CRC-32 of the codes it rebuilds from the rows | on load: damaged means exact search, and the next writer rebuilds it |
//!
//! Measured on a 100,000-unit index (56 MB lexical, 40 MB vectors, warm page cache, a loaded
//! 2-core machine; `examples/open_cost.rs`): opening and taking the first snapshot costs about
//! 42 ms, of which about 26 ms are tantivy's CRCs and 11 ms the rows' (tantivy's open and
//! reader alone, unverified: 0.5 ms; the rest is the counts a first request reads). A process
//! pays that once; later snapshots pay only for new segments and
//! appended blocks (0.17 ms when nothing changed). Counting a repository's files, units and
//! bytes from the documents costs 1.4 ms at that size.
//!
//! Damage that keeps a file's checksum valid (a forged footer) reaches tantivy's parsers, which
//! panic on some of it: every call into tantivy runs under `catch_unwind`, and tantivy's own
//! corruption errors are mapped to `Damaged` too. (tantivy's writer applies deletes in its
//! own thread pool, where a panic aborts the process; a writer opens only after every segment
//! file passed its checksum.)
//!
//! An index written before `checksums.json` existed opens with the length checks (rows its
//! documents name must exist; a writer never cuts rows a document names) and a check that
//! every row has a scale `quantize` can write (zeroed rows have none), and its next commit
//! records the checksums. A repository's file, unit and byte counts are read from the
//! commit's documents, so they always match what is searchable.
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
//! | `merge` | segment merges in the background, and the writer kept alive for one |
//! | `snapshot` | [`Snapshot`]: the record-level reads of one commit (units, files, stats) |
//! | `lexical` | the BM25 leg: query building, term filters, post-filtered deepening |
//! | `topk` | the vector leg: exact scan, the ANN walk, the bounded top-k heap |
//! | `filter` | request filters resolved per segment on term ordinals |
//! | `rows`, `ann` | the int8 vector rows and the approximate index over them |
//! | `manifest`, `lock`, `error` | the format marker, the writer lock, error mapping (and panics) |
//! | `integrity` | `checksums.json`: what is verified at open |
//! | [`tokenizer`] | the code-aware analysis of the lexical leg |

mod ann;
mod error;
mod filter;
mod integrity;
mod lexical;
mod lock;
mod manifest;
mod merge;
mod rows;
mod schema;
mod snapshot;
mod store;
pub mod tokenizer;
mod topk;
mod writer;

pub use manifest::{FORMAT_VERSION, MANIFEST_FILE, Manifest};
pub use rows::VectorCodes;
pub use snapshot::Snapshot;
pub use store::EmbeddedStore;
pub use writer::EmbeddedWriter;
