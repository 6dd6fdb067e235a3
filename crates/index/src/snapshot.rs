//! [`Snapshot`]: what a reader sees, one tantivy searcher and the vector rows of one commit.
//!
//! A snapshot pins a tantivy searcher (its segments stay on disk while it lives) and the row
//! count and approximate index that were current when it was taken; rows are append-only and
//! never rewritten, so everything a snapshot's documents name is complete. Unit ids are
//! document addresses (segment ordinal and document number), valid within the snapshot that
//! returned them. Per-segment columns ([`SegCols`]) and the row → units map are built lazily,
//! once per snapshot, by the first request that needs them; [`EmbeddedStore`] hands out the same
//! snapshot until something is committed.
//!
//! This module answers the record-level requests of [`StoreReader`] (repositories, files,
//! units, stats); the two search legs live in [`crate::lexical`] (BM25) and [`crate::topk`]
//! (vectors).
//!
//! [`EmbeddedStore`]: crate::EmbeddedStore

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gnn_coder_store::{
    EmbeddingInfo, FileEntry, LexicalQuery, RepoInfo, Result, StoreError, StoreReader, StoreStats,
    StoredUnit, UnitId, UnitRecord, VectorQuery,
};
use tantivy::collector::{Count, DocSetCollector};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::{DocAddress, Searcher, TantivyDocument, Term};

use crate::ann::{AnnState, LazyAnn};
use crate::error::{backend, guard};
use crate::filter::{SegCols, SegColsCache};
use crate::rows::RowReader;
use crate::schema::{DOC_FILE, DOC_REPO, DOC_UNIT, Fields, file_key, repo_key};

/// A reader snapshot of an [`EmbeddedStore`].
pub struct Snapshot {
    pub(crate) dir: PathBuf,
    pub(crate) searcher: Searcher,
    pub(crate) fields: Fields,
    pub(crate) embedding: Option<EmbeddingInfo>,
    pub(crate) rows: Option<Arc<RowReader>>,
    /// The approximate index, loaded by the first vector search that can use it.
    pub(crate) ann: LazyAnn,
    /// Row -> units naming it (built on first use by the approximate search).
    pub(crate) row_map: OnceLock<crate::topk::RowMap>,
    /// Units with a vector passing each filter seen, and all of them (the vector leg's choice
    /// between the approximate index and an exact scan; counted once per filter and snapshot).
    pub(crate) candidate_counts: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
    /// Per-segment columns (built on first use by the vector leg or a filter).
    pub(crate) seg_cols: OnceLock<std::result::Result<Vec<Arc<SegCols>>, String>>,
    /// Where the per-segment columns of earlier snapshots are kept.
    pub(crate) seg_cache: Arc<SegColsCache>,
    /// The lexical index's `meta.json` as read before this snapshot was taken: while it is
    /// unchanged, nothing was committed and the store hands this snapshot out again.
    pub(crate) meta: Option<Vec<u8>>,
    /// Filtered candidates above which the vector leg uses the approximate index (the store's
    /// `ann_min_rows` when the snapshot was taken).
    pub(crate) exact_scan_max: u64,
}

/// The id of the unit document at `addr` (segment ordinal and document number: valid within
/// one snapshot).
pub(crate) fn unit_id(addr: DocAddress) -> UnitId {
    UnitId((u64::from(addr.segment_ord) << 32) | u64::from(addr.doc_id))
}

/// The document address of a unit id.
pub(crate) fn address(id: UnitId) -> DocAddress {
    DocAddress::new((id.0 >> 32) as u32, id.0 as u32)
}

impl Snapshot {
    /// The approximate index, loaded now if this is its first use (see [`LazyAnn`]).
    pub(crate) fn ann_state(&self) -> Option<&Arc<AnnState>> {
        self.rows.as_ref().and_then(|rows| self.ann.get(rows))
    }

    /// Segments of the lexical index in this commit (every query visits each).
    pub fn segment_count(&self) -> usize {
        self.searcher.segment_readers().len()
    }

    /// Runs a read, turning a panic inside tantivy into [`StoreError::Damaged`].
    fn guarded<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        guard(&self.dir, Some(self.searcher.index()), what, f)
    }

    /// Documents of type `doc_type` of `repository` in this commit.
    fn count_in(&self, doc_type: &str, repository: &str) -> Result<u64> {
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(self.fields.doc_type, doc_type)),
            (Occur::Must, self.term(self.fields.repo, repository)),
        ]);
        self.searcher
            .search(&q, &Count)
            .map(|n| n as u64)
            .map_err(backend)
    }

    /// The bytes of `repository`'s files in this commit; `None` for an index whose
    /// `file_bytes` is not a fast field (made before it was).
    fn bytes_in(&self, repository: &str) -> Result<Option<u64>> {
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(self.fields.doc_type, DOC_FILE)),
            (Occur::Must, self.term(self.fields.repo, repository)),
        ]);
        let segments = self.searcher.segment_readers();
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        let mut total = 0u64;
        for addr in self.docs_of(&q)? {
            let col = match columns.entry(addr.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let seg = &segments[addr.segment_ord as usize];
                    match seg.fast_fields().u64("file_bytes") {
                        Ok(col) => e.insert(col),
                        Err(_) => return Ok(None),
                    }
                }
            };
            total = total.saturating_add(col.first(addr.doc_id).unwrap_or(0));
        }
        Ok(Some(total))
    }

    pub(crate) fn seg_cols(&self) -> Result<&[Arc<SegCols>]> {
        self.seg_cols
            .get_or_init(|| {
                self.seg_cache
                    .columns(self.searcher.segment_readers())
                    .map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(|e| StoreError::Backend { message: e.clone() })
    }

    pub(crate) fn term(&self, field: Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    }

    pub(crate) fn docs_of(&self, query: &dyn Query) -> Result<Vec<DocAddress>> {
        let mut docs: Vec<DocAddress> = self
            .searcher
            .search(query, &DocSetCollector)
            .map_err(backend)?
            .into_iter()
            .collect();
        docs.sort();
        Ok(docs)
    }

    pub(crate) fn stored(&self, addr: DocAddress) -> Result<TantivyDocument> {
        self.searcher.doc(addr).map_err(backend)
    }

    fn str_of(doc: &TantivyDocument, field: Field) -> String {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn u64_of(doc: &TantivyDocument, field: Field) -> u64 {
        doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0)
    }

    fn unit_from(&self, id: UnitId, doc: &TantivyDocument) -> StoredUnit {
        let f = &self.fields;
        let d = Self::str_of(doc, f.doc);
        StoredUnit {
            id,
            repository: Self::str_of(doc, f.repo),
            record: UnitRecord {
                path: Self::str_of(doc, f.path),
                language: Self::str_of(doc, f.language),
                kind: Self::str_of(doc, f.kind),
                name: Self::str_of(doc, f.name),
                symbol: Self::str_of(doc, f.symbol),
                start_line: Self::u64_of(doc, f.start_line),
                end_line: Self::u64_of(doc, f.end_line),
                def_line: Self::u64_of(doc, f.def_line),
                start_byte: Self::u64_of(doc, f.start_byte),
                end_byte: Self::u64_of(doc, f.end_byte),
                doc: (!d.is_empty()).then_some(d),
                code: Self::str_of(doc, f.code),
            },
        }
    }

    fn is_live_unit(&self, addr: DocAddress) -> bool {
        let Some(seg) = self
            .searcher
            .segment_readers()
            .get(addr.segment_ord as usize)
        else {
            return false;
        };
        if addr.doc_id >= seg.max_doc()
            || seg.alive_bitset().is_some_and(|a| !a.is_alive(addr.doc_id))
        {
            return false;
        }
        // Only unit documents have a kind.
        seg.fast_fields()
            .str("kind")
            .ok()
            .flatten()
            .is_some_and(|c| c.ords().first(addr.doc_id).is_some())
    }

    pub(crate) fn check_vector(&self, v: &[f32]) -> Result<&RowReader> {
        let (Some(info), Some(rows)) = (&self.embedding, &self.rows) else {
            return Err(StoreError::NoVectors {
                path: self.dir.clone(),
            });
        };
        if v.len() != info.dim {
            return Err(StoreError::DimensionMismatch {
                path: self.dir.clone(),
                index: info.dim,
                query: v.len(),
            });
        }
        Ok(rows)
    }
}

impl Snapshot {
    fn repositories_unguarded(&self) -> Result<Vec<RepoInfo>> {
        let docs = self.docs_of(self.term(self.fields.doc_type, DOC_REPO).as_ref())?;
        let mut out = self.repository_records(docs)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The record of repository `name` alone: an update needs its root, and counting every
    /// repository (what [`Self::repositories_unguarded`] does) took 16 ms of a 50 ms one-file
    /// update at a million units in 73 repositories.
    fn repository_unguarded(&self, name: &str) -> Result<Option<RepoInfo>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_REPO)),
            (Occur::Must, self.term(f.key, &repo_key(name))),
        ]);
        let docs = self.docs_of(&q)?;
        Ok(self
            .repository_records(docs)?
            .into_iter()
            .find(|r| r.name == name))
    }

    /// The repository records at `docs`, with the counts of this commit.
    fn repository_records(&self, docs: Vec<DocAddress>) -> Result<Vec<RepoInfo>> {
        let mut out = Vec::with_capacity(docs.len());
        for addr in docs {
            let doc = self.stored(addr)?;
            let json = Self::str_of(&doc, self.fields.repo_json);
            let mut info: RepoInfo =
                serde_json::from_str(&json).map_err(|e| StoreError::Damaged {
                    path: self.dir.clone(),
                    reason: format!("a repository record is not valid: {e}"),
                })?;
            // The counts are those of the documents of this commit, whatever the record says:
            // concurrent updates and interrupted runs cannot make them drift.
            info.files = self.count_in(DOC_FILE, &info.name)?;
            info.units = self.count_in(DOC_UNIT, &info.name)?;
            if let Some(bytes) = self.bytes_in(&info.name)? {
                info.bytes = bytes;
            }
            out.push(info);
        }
        Ok(out)
    }

    fn files_unguarded(&self, repository: &str) -> Result<Vec<FileEntry>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_FILE)),
            (Occur::Must, self.term(f.repo, repository)),
        ]);
        let mut out = Vec::new();
        for addr in self.docs_of(&q)? {
            let doc = self.stored(addr)?;
            out.push(FileEntry {
                path: Self::str_of(&doc, f.path),
                hash: Self::str_of(&doc, f.file_hash),
                units: Self::u64_of(&doc, f.file_units) as u32,
                bytes: Self::u64_of(&doc, f.file_bytes),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn file_unguarded(&self, repository: &str, path: &str) -> Result<Option<FileEntry>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_FILE)),
            (Occur::Must, self.term(f.key, &file_key(repository, path))),
        ]);
        let Some(addr) = self.docs_of(&q)?.into_iter().next() else {
            return Ok(None);
        };
        let doc = self.stored(addr)?;
        Ok(Some(FileEntry {
            path: Self::str_of(&doc, f.path),
            hash: Self::str_of(&doc, f.file_hash),
            units: Self::u64_of(&doc, f.file_units) as u32,
            bytes: Self::u64_of(&doc, f.file_bytes),
        }))
    }

    fn lexical_unguarded(&self, q: &LexicalQuery) -> Result<Vec<(UnitId, f32)>> {
        self.lexical_search(q)
    }

    fn vector_unguarded(&self, q: &VectorQuery) -> Result<Vec<(UnitId, f32)>> {
        self.vector_search(q)
    }

    fn units_unguarded(&self, ids: &[UnitId]) -> Result<Vec<StoredUnit>> {
        let mut out = Vec::with_capacity(ids.len());
        let segments = self.searcher.segment_readers();
        for &id in ids {
            let addr = address(id);
            let Some(seg) = segments.get(addr.segment_ord as usize) else {
                continue;
            };
            if addr.doc_id >= seg.max_doc()
                || seg.alive_bitset().is_some_and(|a| !a.is_alive(addr.doc_id))
            {
                continue;
            }
            let doc = self.stored(addr)?;
            // Only unit documents have a kind.
            if doc.get_first(self.fields.kind).is_none() {
                continue;
            }
            out.push(self.unit_from(id, &doc));
        }
        Ok(out)
    }

    fn units_of_file_unguarded(&self, repository: &str, path: &str) -> Result<Vec<StoredUnit>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_UNIT)),
            (Occur::Must, self.term(f.key, &file_key(repository, path))),
        ]);
        let mut out = Vec::new();
        for addr in self.docs_of(&q)? {
            let doc = self.stored(addr)?;
            out.push(self.unit_from(unit_id(addr), &doc));
        }
        out.sort_by_key(|u| (u.record.start_byte, std::cmp::Reverse(u.record.end_byte)));
        Ok(out)
    }

    fn unit_vector_unguarded(&self, id: UnitId) -> Result<Option<Vec<f32>>> {
        let Some(rows) = &self.rows else {
            return Err(StoreError::NoVectors {
                path: self.dir.clone(),
            });
        };
        let addr = address(id);
        if !self.is_live_unit(addr) {
            return Ok(None);
        }
        let seg = self.searcher.segment_reader(addr.segment_ord);
        let col = seg.fast_fields().u64("row").map_err(backend)?;
        Ok(col.first(addr.doc_id).and_then(|r| rows.vector(r as u32)))
    }

    fn vector_scores_unguarded(&self, ids: &[UnitId], query: &[f32]) -> Result<Vec<Option<f32>>> {
        let rows = self.check_vector(query)?;
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        let segments = self.searcher.segment_readers();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let a = address(*id);
            let Some(seg) = segments.get(a.segment_ord as usize) else {
                out.push(None);
                continue;
            };
            if a.doc_id >= seg.max_doc()
                || seg.alive_bitset().is_some_and(|b| !b.is_alive(a.doc_id))
            {
                out.push(None);
                continue;
            }
            let col = match columns.entry(a.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(seg.fast_fields().u64("row").map_err(backend)?)
                }
            };
            out.push(col.first(a.doc_id).and_then(|r| rows.dot(r as u32, query)));
        }
        Ok(out)
    }

    fn stats_unguarded(&self) -> Result<StoreStats> {
        let f = &self.fields;
        let count = |t: &str| -> Result<u64> {
            self.searcher
                .search(self.term(f.doc_type, t).as_ref(), &Count)
                .map(|n| n as u64)
                .map_err(backend)
        };
        Ok(StoreStats {
            repositories: count(DOC_REPO)?,
            files: count(DOC_FILE)?,
            units: count(DOC_UNIT)?,
            vectors: self.rows.as_ref().map_or(0, |r| u64::from(r.count())),
            ann_vectors: self.ann_state().map_or(0, |a| u64::from(a.covered)),
            bytes_on_disk: dir_bytes(&self.dir),
        })
    }
}

impl StoreReader for Snapshot {
    /// The per-segment columns and, with vectors, the row map: built by the first search
    /// otherwise (at a million units, most of its time after the snapshot's own opening).
    fn warm(&self) -> Result<()> {
        self.guarded("preparing the index for searches", || {
            self.seg_cols()?;
            if self.rows.is_some() {
                self.ann_state();
                self.warm_row_map()?;
            }
            Ok(())
        })
    }

    fn repositories(&self) -> Result<Vec<RepoInfo>> {
        self.guarded("reading the repositories", || self.repositories_unguarded())
    }

    fn repository(&self, name: &str) -> Result<Option<RepoInfo>> {
        self.guarded("reading a repository record", || {
            self.repository_unguarded(name)
        })
    }

    fn files(&self, repository: &str) -> Result<Vec<FileEntry>> {
        self.guarded("reading the files", || self.files_unguarded(repository))
    }

    fn file(&self, repository: &str, path: &str) -> Result<Option<FileEntry>> {
        self.guarded("reading a file record", || {
            self.file_unguarded(repository, path)
        })
    }

    fn lexical(&self, q: &LexicalQuery) -> Result<Vec<(UnitId, f32)>> {
        self.guarded("a lexical search", || self.lexical_unguarded(q))
    }

    fn vector(&self, q: &VectorQuery) -> Result<Vec<(UnitId, f32)>> {
        self.guarded("a vector search", || self.vector_unguarded(q))
    }

    fn units(&self, ids: &[UnitId]) -> Result<Vec<StoredUnit>> {
        self.guarded("reading units", || self.units_unguarded(ids))
    }

    fn units_of_file(&self, repository: &str, path: &str) -> Result<Vec<StoredUnit>> {
        self.guarded("reading the units of a file", || {
            self.units_of_file_unguarded(repository, path)
        })
    }

    fn unit_vector(&self, id: UnitId) -> Result<Option<Vec<f32>>> {
        self.guarded("reading a vector", || self.unit_vector_unguarded(id))
    }

    fn lexical_scores(&self, q: &LexicalQuery, units: &[UnitRecord]) -> Result<Option<Vec<f32>>> {
        self.guarded("scoring texts", || self.score_texts(q, units).map(Some))
    }

    fn vector_scores(&self, ids: &[UnitId], query: &[f32]) -> Result<Vec<Option<f32>>> {
        self.guarded("scoring units", || self.vector_scores_unguarded(ids, query))
    }

    fn stats(&self) -> Result<StoreStats> {
        self.guarded("counting", || self.stats_unguarded())
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
