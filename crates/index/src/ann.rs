//! The approximate nearest-neighbour index over vector rows: HNSW from `gnn-coder-ann`, built
//! over a prefix of the rows, `vectors/ann-NNNNNNNNNN.bin` (N = rows covered).
//!
//! The rows file only grows, so an index over rows `0..N` stays valid as rows are appended:
//! readers ask it for candidates among those rows (filtered inside the graph search by the
//! snapshot's live units and the request's filters) and scan the rows `N..` exactly. Rows of
//! units that are gone stay in the graph and are filtered out. A writer rebuilds the index
//! after a commit once the uncovered rows exceed a tenth of all rows (and there are at least
//! [`MIN_ROWS`], the store's `ann_min_rows` option); below that size an exact scan is as fast. The file is written whole and
//! renamed into place, then older ones are removed; a reader that cannot load it scans exactly.
//!
//! The file holds the graph without its vectors (`AnnIndex::save_without_vectors`): a reader
//! takes them from the rows it covers, which never change, and the checksum saved with the graph
//! catches rows that did (then the index counts as damaged: scanned exactly, rebuilt by the next
//! writer). At 384 dimensions that is 153 bytes a row instead of 533. Files written with the
//! vectors, by earlier versions, still load.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use gnn_coder_ann::{AnnIndex, AnnParams};
use gnn_coder_store::{CancellationToken, Result, StoreError};

use crate::rows::{RowReader, VECTORS_DIR};

/// Rows below which no approximate index is built (an exact scan of 20,000 rows of 384
/// dimensions takes a few milliseconds).
pub(crate) const MIN_ROWS: u32 = 20_000;

/// The graph walk's candidate list for an unfiltered search. 64 gave recall@10 .989 on 100k
/// clustered vectors in gnn-coder-ann's benchmark, but .964 at 110k and .915 at 300k units of
/// code with near-duplicate vectors (`growth_bench`: every function in 22 noisy copies); with
/// 128, .989 and .962 (README, "How it grows").
pub(crate) const EF_SEARCH: usize = 128;

const PREFIX: &str = "ann-";
const SUFFIX: &str = ".bin";

/// A loaded approximate index covering rows `0..covered`.
pub(crate) struct AnnState {
    pub(crate) covered: u32,
    index: AnnIndex,
}

impl AnnState {
    /// Loads the index at `path`, its vectors taken from `rows` (the file holds only the
    /// graph: see [`build_and_save`]). Rows that differ from the ones it was built from make it
    /// damaged.
    pub(crate) fn load(path: &Path, rows: &RowReader) -> Result<AnnState> {
        let covered = covered_of(path).ok_or_else(|| StoreError::Damaged {
            path: path.to_path_buf(),
            reason: "not an approximate index file name".into(),
        })?;
        let vector_of = |r: u32| rows.vector(r).filter(|_| r < covered);
        let index = AnnIndex::load_with(path, &vector_of).map_err(|e| StoreError::Damaged {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(AnnState { covered, index })
    }

    /// The best `k` rows passing `keep`, best first.
    pub(crate) fn search(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        keep: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<(u32, f32)> {
        self.index.search(q, k, ef, keep)
    }
}

/// Where a loaded approximate index is kept between snapshots of one store.
pub(crate) type AnnSlot = Arc<Mutex<Option<Arc<AnnState>>>>;

/// A snapshot's approximate index, loaded on its first use: a lexical search, a file listing
/// or an index run's refresh never needs it (loading it codes every covered row again: 1.2 s
/// at a million rows). The file is chosen when the snapshot is taken; a load is shared with
/// later snapshots through the store's slot, and a load that fails is remembered for the
/// snapshot (it searches exactly; the next writer rebuilds the file).
pub(crate) struct LazyAnn {
    /// The newest file usable with the snapshot's rows: (rows covered, path).
    file: Option<(u32, PathBuf)>,
    slot: AnnSlot,
    loaded: OnceLock<Option<Arc<AnnState>>>,
}

impl LazyAnn {
    /// The newest approximate index of `dir` covering at most `rows` rows (`None`: an index
    /// without vectors, which has none).
    pub(crate) fn new(dir: &Path, rows: Option<u32>, slot: AnnSlot) -> LazyAnn {
        LazyAnn {
            file: rows.and_then(|rows| newest(dir, rows)),
            slot,
            loaded: OnceLock::new(),
        }
    }

    /// Rows the chosen file covers (whether or not it loads).
    pub(crate) fn file_covers(&self) -> Option<u32> {
        self.file.as_ref().map(|(covered, _)| *covered)
    }

    /// Whether the index was loaded (or its load tried) already.
    #[cfg(test)]
    pub(crate) fn is_loaded(&self) -> bool {
        self.loaded.get().is_some()
    }

    /// The index, its vectors read from `rows`; `None` without a file or when it cannot be
    /// loaded (logged once per snapshot).
    pub(crate) fn get(&self, rows: &RowReader) -> Option<&Arc<AnnState>> {
        self.loaded.get_or_init(|| self.load(rows)).as_ref()
    }

    fn load(&self, rows: &RowReader) -> Option<Arc<AnnState>> {
        let (covered, path) = self.file.as_ref()?;
        let Ok(mut slot) = self.slot.lock() else {
            tracing::warn!("the approximate index's slot is poisoned; searching exactly");
            return None;
        };
        if let Some(s) = slot.as_ref().filter(|s| s.covered == *covered) {
            return Some(s.clone());
        }
        match AnnState::load(path, rows) {
            Ok(state) => {
                let state = Arc::new(state);
                *slot = Some(state.clone());
                Some(state)
            }
            // A damaged approximate index is only a slower search: scan exactly (the next
            // writer rebuilds it).
            Err(e) => {
                tracing::warn!("{e}; searching without the approximate index until it is rebuilt");
                None
            }
        }
    }
}

fn covered_of(path: &Path) -> Option<u32> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

fn files(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir.join(VECTORS_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| covered_of(&e.path()).map(|n| (n, e.path())))
        .collect();
    out.sort();
    out
}

/// The newest approximate index covering at most `rows` rows.
pub(crate) fn newest(dir: &Path, rows: u32) -> Option<(u32, PathBuf)> {
    files(dir).into_iter().rfind(|(n, _)| *n <= rows && *n > 0)
}

/// The environment variable that overrides [`MIN_ROWS`] (for benchmarks that measure the
/// approximate index on a smaller corpus).
pub(crate) const MIN_ROWS_ENV: &str = "GNN_CODER_ANN_MIN_ROWS";

/// `$GNN_CODER_ANN_MIN_ROWS` when it is a number, else [`MIN_ROWS`]: the default of
/// [`EmbeddedStore::set_ann_min_rows`](crate::EmbeddedStore::set_ann_min_rows), read once when
/// a store is opened (never by a query).
pub(crate) fn min_rows_from_env() -> u32 {
    std::env::var(MIN_ROWS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MIN_ROWS)
}

/// Whether a writer should rebuild the approximate index: at least `min_rows` rows (and at
/// least one), more than a tenth of them not covered by the current index.
pub(crate) fn needs_rebuild(covered: u32, rows: u32, min_rows: u32) -> bool {
    rows >= min_rows.max(1) && rows.saturating_sub(covered) > rows / 10
}

/// Builds an index over rows `0..count` and saves it; removes the older ones.
pub(crate) fn build_and_save(
    dir: &Path,
    rows: &RowReader,
    count: u32,
    cancel: &CancellationToken,
) -> Result<()> {
    let count = count.min(rows.count());
    let mut vectors: Vec<(u32, Vec<f32>)> = Vec::with_capacity(count as usize);
    for r in 0..count {
        cancel.check()?;
        if let Some(v) = rows.vector(r) {
            vectors.push((r, v));
        }
    }
    // All-zero vectors have no direction; they are found by the exact scan of nothing else
    // anyway (their score is 0), so leave them out of the graph.
    let items: Vec<(u32, &[f32])> = vectors
        .iter()
        .filter(|(_, v)| v.iter().any(|x| *x != 0.0))
        .map(|(r, v)| (*r, v.as_slice()))
        .collect();
    let Some(dim) = items.first().map(|(_, v)| v.len()) else {
        return Ok(());
    };
    let params = AnnParams {
        ef_search: EF_SEARCH,
        ..AnnParams::default()
    };
    let index =
        AnnIndex::build(dim, &items, &params, &|| cancel.is_cancelled()).map_err(|e| match e {
            gnn_coder_ann::AnnError::Cancelled => StoreError::Cancelled,
            other => StoreError::Backend {
                message: format!("building the approximate index: {other}"),
            },
        })?;
    drop(vectors);
    let path = dir
        .join(VECTORS_DIR)
        .join(format!("{PREFIX}{count:010}{SUFFIX}"));
    // The rows are kept anyway (exact scores, the scan of rows added since): the file holds the
    // graph and names the row of each of its vectors, 384 bytes a row less than a copy.
    index
        .save_without_vectors(&path)
        .map_err(|e| StoreError::Backend {
            message: format!("saving the approximate index: {e}"),
        })?;
    for (n, old) in files(dir) {
        if n != count {
            let _ = fs::remove_file(old);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use gnn_coder_store::{
        EmbeddingInfo, FieldBoosts, FileEntry, FileWrite, Filters, LexicalQuery, Store,
        StoreReader, UnitKey, UnitRecord, UnitWrite, VectorQuery,
    };

    use crate::EmbeddedStore;

    use super::*;

    /// The approximate index is loaded by the first vector search that can use it, not by
    /// taking a snapshot, a lexical search or a file listing; an exact search does not load
    /// it either, and a later snapshot reuses the loaded index.
    #[test]
    fn the_approximate_index_loads_on_its_first_use() {
        const D: usize = 16;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let info = EmbeddingInfo {
            model: "test".into(),
            dim: D,
            trained: false,
        };
        let mut store = EmbeddedStore::open_or_create(&dir, Some(info)).unwrap();
        store.set_ann_min_rows(50);
        let vector = |i: usize| {
            let mut v = vec![0.0f32; D];
            v[i % D] = 1.0;
            v[(i * 7 + 3) % D] += 0.5 + (i % 5) as f32 * 0.1;
            let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            v.into_iter().map(|a| a / n).collect::<Vec<f32>>()
        };
        let units: Vec<UnitWrite> = (0..120usize)
            .map(|i| {
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&(i as u64).to_le_bytes());
                UnitWrite {
                    record: UnitRecord {
                        path: "a.py".into(),
                        language: "python".into(),
                        kind: "function".into(),
                        name: format!("u{i}"),
                        symbol: format!("u{i}"),
                        start_line: 1,
                        end_line: 1,
                        def_line: 1,
                        start_byte: i as u64,
                        end_byte: i as u64 + 1,
                        doc: None,
                        code: format!("def u{i}(): pass"),
                    },
                    key: UnitKey(key),
                    vector: Some(vector(i)),
                }
            })
            .collect();
        let mut w = store.writer().unwrap();
        let file = FileEntry {
            path: "a.py".into(),
            hash: "h".into(),
            units: 120,
            bytes: 1,
        };
        w.upsert_files("r", vec![FileWrite { file, units }])
            .unwrap();
        w.commit(&CancellationToken::new()).unwrap();
        w.maintain(&CancellationToken::new()).unwrap();
        drop(w);

        let s = store.snapshot().unwrap();
        assert_eq!(s.ann.file_covers(), Some(120));
        assert!(!s.ann.is_loaded(), "taking a snapshot loads nothing");
        let hits = s
            .lexical(&LexicalQuery {
                text: "u7".into(),
                boosts: FieldBoosts::default(),
                filters: Filters::default(),
                limit: 5,
            })
            .unwrap();
        assert!(!hits.is_empty());
        assert_eq!(s.files("r").unwrap().len(), 1);
        let query = |exact| VectorQuery {
            vector: vector(7),
            filters: Filters::default(),
            limit: 3,
            exact,
        };
        assert_eq!(s.vector(&query(true)).unwrap().len(), 3);
        assert!(
            !s.ann.is_loaded(),
            "lexical, listing and exact searches load nothing"
        );
        assert_eq!(s.vector(&query(false)).unwrap().len(), 3);
        assert!(s.ann.is_loaded(), "an approximate search loads it");
        let loaded = s.ann_state().map(Arc::as_ptr);
        assert!(loaded.is_some());
        // A snapshot taken after a commit elsewhere shares the loaded index.
        {
            let other = EmbeddedStore::open(&dir).unwrap();
            let mut w = other.writer().unwrap();
            w.delete_files("r", &["b.py".to_string()]).unwrap();
            w.commit(&CancellationToken::new()).unwrap();
        }
        let t = store.snapshot().unwrap();
        assert!(!Arc::ptr_eq(&s, &t), "a new snapshot after the commit");
        assert_eq!(t.ann_state().map(Arc::as_ptr), loaded);
        assert_eq!(t.stats().unwrap().ann_vectors, 120);
    }
}
