//! Request filters resolved against one segment: [`SegCols`] and [`SegmentFilter`].
//!
//! The vector leg scans every unit passing the filters, and the lexical leg checks path globs
//! and exclusions on ranked hits, so a filter is asked about one document at a time, millions
//! of times per query. It therefore works on ordinals, never on strings: a snapshot
//! materializes once, per segment, the term ordinals of the exact fields (language, kind,
//! repository, path) and the vector row of every document as plain arrays ([`SegCols`]), and a
//! request's filter values are looked up once per segment in the fast-field dictionaries into a
//! bitmap of allowed ordinals. A path glob is matched at most once per distinct path of a
//! segment (cached per ordinal), with the glob set the caller compiled once
//! ([`gnn_coder_store::PathGlobs`]). A filter no document of a segment can pass marks the whole
//! segment skipped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use gnn_coder_store::{Filters, Result, StoreError, UnitId};
use tantivy::DocAddress;
use tantivy::columnar::{Column, ColumnIndex, StrColumn};
use tantivy::index::SegmentId;

use crate::error::{backend, io_backend};
use crate::snapshot::unit_id;

/// One segment's per-document columns the vector leg and the filters read, materialized once
/// per snapshot (plain arrays are several times faster to scan than bit-packed columns).
/// `NONE` marks a document without the value (file and repository documents, no vector).
pub(crate) struct SegCols {
    pub(crate) row: Vec<u32>,
    pub(crate) language: Vec<u32>,
    pub(crate) kind: Vec<u32>,
    pub(crate) repo: Vec<u32>,
    pub(crate) path: Vec<u32>,
}

pub(crate) const NONE: u32 = u32::MAX;

/// The first value of every document of a column as a plain array (`NONE` where it has none),
/// read in one pass over the column's values rather than one lookup per document.
fn first_values(col: &Column<u64>, n: usize) -> Vec<u32> {
    let clamp = |v: u64| v.min(u64::from(NONE - 1)) as u32;
    let mut out = vec![NONE; n];
    match &col.index {
        ColumnIndex::Empty { .. } => {}
        ColumnIndex::Full => {
            for (slot, v) in out.iter_mut().zip(col.values.iter()) {
                *slot = clamp(v);
            }
        }
        ColumnIndex::Optional(index) => {
            for (doc, v) in index.iter_non_null_docs().zip(col.values.iter()) {
                if let Some(slot) = out.get_mut(doc as usize) {
                    *slot = clamp(v);
                }
            }
        }
        ColumnIndex::Multivalued(_) => {
            for (d, slot) in out.iter_mut().enumerate() {
                if let Some(v) = col.first(d as u32) {
                    *slot = clamp(v);
                }
            }
        }
    }
    out
}

/// [`SegCols`] by segment, kept by the store across snapshots: segments never change (deletes
/// live in the alive bitset the filter reads from the segment reader), so a commit builds the
/// columns of its new segments only, not of the whole index.
#[derive(Default)]
pub(crate) struct SegColsCache(Mutex<HashMap<SegmentId, Arc<SegCols>>>);

impl SegColsCache {
    /// The columns of every segment of `segments`, in order; entries of segments no longer
    /// listed are dropped.
    pub(crate) fn columns(&self, segments: &[tantivy::SegmentReader]) -> Result<Vec<Arc<SegCols>>> {
        let mut map = self.0.lock().map_err(|_| StoreError::Backend {
            message: "a thread panicked while building segment columns".into(),
        })?;
        let cols = segments
            .iter()
            .map(|seg| {
                if let Some(c) = map.get(&seg.segment_id()) {
                    return Ok(c.clone());
                }
                let c = Arc::new(SegCols::build(seg)?);
                map.insert(seg.segment_id(), c.clone());
                Ok(c)
            })
            .collect::<Result<Vec<_>>>()?;
        let live: HashSet<SegmentId> = segments.iter().map(|s| s.segment_id()).collect();
        map.retain(|id, _| live.contains(id));
        Ok(cols)
    }
}

impl SegCols {
    pub(crate) fn build(seg: &tantivy::SegmentReader) -> Result<SegCols> {
        let n = seg.max_doc() as usize;
        let ff = seg.fast_fields();
        let row = first_values(&ff.u64("row").map_err(backend)?, n);
        let ords = |field: &str| -> Result<Vec<u32>> {
            Ok(match ff.str(field).map_err(backend)? {
                Some(col) => first_values(col.ords(), n),
                None => vec![NONE; n],
            })
        };
        Ok(SegCols {
            row,
            language: ords("language")?,
            kind: ords("kind")?,
            repo: ords("repo")?,
            path: ords("path")?,
        })
    }

    fn field(&self, i: usize) -> &[u32] {
        match i {
            0 => &self.language,
            1 => &self.kind,
            _ => &self.repo,
        }
    }
}

/// The filters of a request, resolved against one segment's dictionaries.
pub(crate) struct SegmentFilter<'a> {
    cols: &'a SegCols,
    /// For language (0), kind (1), repository (2): allowed term ordinals.
    exact: Vec<(usize, Vec<bool>)>,
    /// Some filter admits no value present in this segment.
    pub(crate) none: bool,
    /// Path column, globs, and per path ordinal 0 = not checked yet, 1 = matches, 2 = not.
    path: Option<(
        StrColumn,
        &'a globset::GlobSet,
        Vec<std::sync::atomic::AtomicU8>,
    )>,
    exclude: &'a HashSet<UnitId>,
    segment_ord: u32,
    alive: Option<&'a tantivy::fastfield::AliveBitSet>,
}

impl<'a> SegmentFilter<'a> {
    pub(crate) fn new(
        seg: &'a tantivy::SegmentReader,
        cols: &'a SegCols,
        segment_ord: u32,
        filters: &Filters,
        globs: Option<&'a globset::GlobSet>,
        exclude: &'a HashSet<UnitId>,
    ) -> Result<SegmentFilter<'a>> {
        let ff = seg.fast_fields();
        let mut exact = Vec::new();
        let mut none = false;
        for (i, (field, wanted)) in [
            ("language", &filters.languages),
            ("kind", &filters.kinds),
            ("repo", &filters.repositories),
        ]
        .into_iter()
        .enumerate()
        {
            if wanted.is_empty() {
                continue;
            }
            let Some(col) = ff.str(field).map_err(backend)? else {
                none = true;
                continue;
            };
            let mut allowed = vec![false; col.num_terms()];
            let mut any = false;
            for w in wanted {
                if let Some(ord) = col
                    .dictionary()
                    .term_ord(w.as_bytes())
                    .map_err(io_backend)?
                    && let Some(slot) = allowed.get_mut(ord as usize)
                {
                    *slot = true;
                    any = true;
                }
            }
            if !any {
                none = true;
            }
            exact.push((i, allowed));
        }
        let path = match globs {
            Some(g) => match ff.str("path").map_err(backend)? {
                Some(col) => {
                    let n = col.num_terms();
                    Some((
                        col,
                        g,
                        (0..n)
                            .map(|_| std::sync::atomic::AtomicU8::new(0))
                            .collect(),
                    ))
                }
                None => {
                    none = true;
                    None
                }
            },
            None => None,
        };
        Ok(SegmentFilter {
            cols,
            exact,
            none,
            path,
            exclude,
            segment_ord,
            alive: seg.alive_bitset(),
        })
    }

    pub(crate) fn accepts(&self, doc: u32) -> bool {
        if self.none || self.alive.is_some_and(|a| !a.is_alive(doc)) {
            return false;
        }
        for (i, allowed) in &self.exact {
            let ord = self
                .cols
                .field(*i)
                .get(doc as usize)
                .copied()
                .unwrap_or(NONE);
            if !allowed.get(ord as usize).copied().unwrap_or(false) {
                return false;
            }
        }
        if let Some((col, globs, cache)) = &self.path {
            let ord = self.cols.path.get(doc as usize).copied().unwrap_or(NONE);
            if ord == NONE {
                return false;
            }
            let ord = u64::from(ord);
            let Some(slot) = cache.get(ord as usize) else {
                return false;
            };
            let mut state = slot.load(std::sync::atomic::Ordering::Relaxed);
            if state == 0 {
                let mut s = String::new();
                let ok = col.ord_to_str(ord, &mut s).unwrap_or(false) && globs.is_match(&s);
                state = if ok { 1 } else { 2 };
                slot.store(state, std::sync::atomic::Ordering::Relaxed);
            }
            if state != 1 {
                return false;
            }
        }
        self.exclude.is_empty()
            || !self
                .exclude
                .contains(&unit_id(DocAddress::new(self.segment_ord, doc)))
    }
}
