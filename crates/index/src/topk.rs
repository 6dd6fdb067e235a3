//! The vector leg: top-k by dot product over the int8 rows, exactly or through the ANN index.
//!
//! Units that share a text share a row, so the leg works on rows and maps back to units. Two
//! ways to find the best `k`:
//!
//! * **Exact scan** ([`Snapshot::exact_scan`]): every unit passing the filters (per-segment
//!   [`SegmentFilter`], ordinals only, no stored-field reads) has its row scored once, and a
//!   bounded heap ([`TopK`]) keeps the best. This is the default, and it is exact.
//! * **Approximate** (when the snapshot has an approximate index, the query does not ask for an
//!   exact answer and more units pass the filters than the store's `ann_min_rows`, by default
//!   20,000; below it an exact scan of the candidates is as fast, and exact): the HNSW graph is walked with the filters inside the walk (a row is kept when one
//!   of the units naming it passes), with a candidate list widened in proportion to how much of
//!   the index the filters drop; rows appended since the graph was built are then scanned
//!   exactly, so fresh units are never missed.
//!
//! Ties are broken by the lower unit id, so results are deterministic.

use std::collections::{BinaryHeap, HashSet};

use gnn_coder_store::{Filters, Result, UnitId, VectorQuery};
use tantivy::DocAddress;

use crate::filter::{NONE, SegmentFilter};
use crate::rows::RowReader;
use crate::snapshot::{Snapshot, address, unit_id};

/// Units by vector row, as offsets into one array (a few bytes per unit; a map of vectors
/// cost about a hundred bytes per unit at a million).
pub(crate) struct RowMap {
    /// `ids[starts[r]..starts[r + 1]]` name row `r`.
    starts: Vec<u32>,
    ids: Vec<UnitId>,
}

impl RowMap {
    fn get(&self, row: u32) -> &[UnitId] {
        let r = row as usize;
        match (self.starts.get(r), self.starts.get(r + 1)) {
            (Some(&a), Some(&b)) => self.ids.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Top-k by score (ties: lower id first).
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<(OrdF32, std::cmp::Reverse<UnitId>)>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    pub(crate) fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    pub(crate) fn push(&mut self, id: UnitId, score: f32) {
        if self.k == 0 || !score.is_finite() {
            return;
        }
        let item = std::cmp::Reverse((OrdF32(score), std::cmp::Reverse(id)));
        if self.heap.len() < self.k {
            self.heap.push(item);
        } else if let Some(min) = self.heap.peek()
            && item < *min
        {
            self.heap.pop();
            self.heap.push(item);
        }
    }

    /// The lowest score kept once `k` are kept: what a new score must beat to enter.
    pub(crate) fn threshold(&self) -> Option<f32> {
        if self.heap.len() < self.k {
            return None;
        }
        self.heap.peek().map(|std::cmp::Reverse((s, _))| s.0)
    }

    pub(crate) fn into_sorted(self) -> Vec<(UnitId, f32)> {
        let mut v: Vec<(UnitId, f32)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse((s, std::cmp::Reverse(id)))| (id, s.0))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

impl Snapshot {
    /// Exact scan: scores every unit passing the filters.
    fn exact_scan(
        &self,
        rows: &RowReader,
        q: &VectorQuery,
        globs: Option<&globset::GlobSet>,
        exclude: &HashSet<UnitId>,
        top: &mut TopK,
    ) -> Result<u64> {
        let mut candidates = 0u64;
        // Units that share a text share a row: score each row once.
        let mut scores: Vec<f32> = vec![f32::NAN; rows.count() as usize];
        let cols = self.seg_cols()?;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let filter = SegmentFilter::new(seg, c, ord as u32, &q.filters, globs, exclude)?;
            if filter.none {
                continue;
            }
            for (doc, &row) in c.row.iter().enumerate() {
                let doc = doc as u32;
                if row == NONE || !filter.accepts(doc) {
                    continue;
                }
                candidates += 1;
                let Some(slot) = scores.get_mut(row as usize) else {
                    continue;
                };
                if slot.is_nan() {
                    *slot = rows.dot(row, &q.vector).unwrap_or(f32::NEG_INFINITY);
                }
                top.push(unit_id(DocAddress::new(ord as u32, doc)), *slot);
            }
        }
        Ok(candidates)
    }

    /// [`Snapshot::candidate_counts`] of the query's term and path filters, counted once per
    /// snapshot: a product search filters by kind every time, and counting walks every unit.
    /// Exclusions (the unit `similar` starts from, the committed units of files open as unsaved
    /// buffers) are left out of the count: a few units more or less barely move the choice it
    /// makes, and they change with every request.
    pub(crate) fn cached_candidate_counts(
        &self,
        f: &Filters,
        globs: Option<&globset::GlobSet>,
    ) -> Result<(u64, u64)> {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let key = serde_json::json!([
            sorted(&f.languages),
            sorted(&f.kinds),
            sorted(&f.repositories),
            f.path_globs.patterns(),
        ])
        .to_string();
        let cached = self
            .candidate_counts
            .lock()
            .ok()
            .and_then(|c| c.get(&key).copied());
        if let Some(counts) = cached {
            return Ok(counts);
        }
        let counts = self.candidate_counts(f, globs, &HashSet::new())?;
        if let Ok(mut c) = self.candidate_counts.lock() {
            // Filters come from requests: keep a bounded number of them.
            if c.len() >= 256 {
                c.clear();
            }
            c.insert(key, counts);
        }
        Ok(counts)
    }

    /// Units with a vector passing the filters, and all units with a vector (counted without
    /// scoring).
    fn candidate_counts(
        &self,
        filters: &Filters,
        globs: Option<&globset::GlobSet>,
        exclude: &HashSet<UnitId>,
    ) -> Result<(u64, u64)> {
        let (mut passing, mut total) = (0, 0);
        let cols = self.seg_cols()?;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let filter = SegmentFilter::new(seg, c, ord as u32, filters, globs, exclude)?;
            let alive = seg.alive_bitset();
            for (doc, &row) in c.row.iter().enumerate() {
                let doc = doc as u32;
                if row == NONE || alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                total += 1;
                if filter.accepts(doc) {
                    passing += 1;
                }
            }
        }
        Ok((passing, total))
    }

    /// Builds the row map now (see [`StoreReader::warm`](gnn_coder_store::StoreReader::warm)).
    pub(crate) fn warm_row_map(&self) -> Result<()> {
        self.row_map().map(|_| ())
    }

    fn row_map(&self) -> Result<&RowMap> {
        if let Some(m) = self.row_map.get() {
            return Ok(m);
        }
        let rows = self.rows.as_ref().map_or(0, |r| r.count()) as usize;
        let cols = self.seg_cols()?;
        let live = || {
            self.searcher
                .segment_readers()
                .iter()
                .zip(cols)
                .enumerate()
                .flat_map(|(ord, (seg, c))| {
                    let alive = seg.alive_bitset();
                    c.row.iter().enumerate().filter_map(move |(doc, &row)| {
                        let doc = doc as u32;
                        (row != NONE
                            && (row as usize) < rows
                            && alive.is_none_or(|a| a.is_alive(doc)))
                        .then(|| (row, unit_id(DocAddress::new(ord as u32, doc))))
                    })
                })
        };
        // Units per row (counted), then placed: two passes over the columns, no hashing.
        let mut starts = vec![0u32; rows + 1];
        for (row, _) in live() {
            starts[row as usize + 1] += 1;
        }
        for i in 0..rows {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut ids = vec![UnitId(0); starts[rows] as usize];
        for (row, id) in live() {
            let slot = &mut next[row as usize];
            ids[*slot as usize] = id;
            *slot += 1;
        }
        Ok(self.row_map.get_or_init(|| RowMap { starts, ids }))
    }

    /// The vector leg: the best `q.limit` units passing the filters by dot product with
    /// `q.vector`, best first.
    pub(crate) fn vector_search(&self, q: &VectorQuery) -> Result<Vec<(UnitId, f32)>> {
        let rows = self.check_vector(&q.vector)?;
        let globs = q.filters.path_globs.set();
        let exclude: HashSet<UnitId> = q.filters.exclude_units.iter().copied().collect();
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut top = TopK::new(q.limit);
        let unfiltered = q.filters.languages.is_empty()
            && q.filters.kinds.is_empty()
            && q.filters.repositories.is_empty()
            && q.filters.path_globs.is_empty()
            && exclude.is_empty();
        // An exact search never loads the approximate index.
        let ann = if q.exact { None } else { self.ann_state() };
        let (passing, total) = match ann {
            // Every unit with a vector passes: the row map (built once per snapshot, and
            // needed by the walk anyway) has counted them.
            Some(_) if unfiltered => {
                let n = self.row_map()?.ids.len() as u64;
                (n, n)
            }
            Some(_) => self.cached_candidate_counts(&q.filters, globs)?,
            None => (0, 0),
        };
        match (ann, passing > self.exact_scan_max) {
            (Some(ann), true) => {
                // A filter that keeps a fraction of the graph needs a proportionally wider
                // walk for the same recall (measured in gnn-coder-ann's docs).
                let ef = (crate::ann::EF_SEARCH as u64 * total / passing.max(1))
                    .clamp(crate::ann::EF_SEARCH as u64, 1024) as usize;
                let map = self.row_map()?;
                let segments = self.searcher.segment_readers();
                let cols = self.seg_cols()?;
                let filters: Vec<SegmentFilter<'_>> = segments
                    .iter()
                    .zip(cols)
                    .enumerate()
                    .map(|(ord, (seg, c))| {
                        SegmentFilter::new(seg, c, ord as u32, &q.filters, globs, &exclude)
                    })
                    .collect::<Result<_>>()?;
                // The row map holds live units only: without filters every one passes.
                let passes = |id: &UnitId| {
                    if unfiltered {
                        return true;
                    }
                    let a = address(*id);
                    filters
                        .get(a.segment_ord as usize)
                        .is_some_and(|f| f.accepts(a.doc_id))
                };
                let keep = |row: u32| map.get(row).iter().any(passes);
                for (row, _) in ann.search(&q.vector, q.limit, ef.max(q.limit), &keep) {
                    let Some(score) = rows.dot(row, &q.vector) else {
                        continue;
                    };
                    for id in map.get(row).iter().filter(|id| passes(id)) {
                        top.push(*id, score);
                    }
                }
                // Rows appended since the approximate index was built are scanned exactly,
                // found through the row map rather than a walk over every unit.
                for row in ann.covered..rows.count() {
                    let ids = map.get(row);
                    if !ids.iter().any(passes) {
                        continue;
                    }
                    let Some(score) = rows.dot(row, &q.vector) else {
                        continue;
                    };
                    for id in ids.iter().filter(|id| passes(id)) {
                        top.push(*id, score);
                    }
                }
            }
            _ => {
                self.exact_scan(rows, q, globs, &exclude, &mut top)?;
            }
        }
        Ok(top.into_sorted())
    }
}
