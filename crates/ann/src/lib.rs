//! # gnn-coder-ann
//!
//! DOCS-PLACEHOLDER

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

mod file;

use file::{DecodeError, ENCODING_I8_COS, HEADER_LEN, Header};

/// Largest vector dimension accepted (a sanity bound for file headers and parameters).
pub const MAX_DIM: usize = 1 << 16;

/// Largest `m` accepted; USearch stores neighbour lists of `m` (upper layers) and `2 m` (base
/// layer) slots per node.
pub const MAX_M: usize = 256;

/// Vectors claimed per work item by each build thread; `cancelled` is polled once per chunk.
const BUILD_CHUNK: usize = 64;

/// HNSW parameters. `Default` is the measured choice for 384-dimensional code embeddings (see the
/// crate docs): `m = 16`, `ef_construction = 128`, `ef_search = 64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnParams {
    /// Links per node on the upper layers; the base layer keeps `2 * m`. Range `2..=MAX_M`.
    pub m: usize,
    /// Candidate list size while inserting (build quality vs build time). At least 1.
    pub ef_construction: usize,
    /// Default candidate list size for [`AnnIndex::search`] when it is called with `ef == 0`.
    /// At least 1. Stored in the file.
    pub ef_search: usize,
    /// Build threads; 0 means `std::thread::available_parallelism()`. Not stored in the file.
    pub threads: usize,
}

impl Default for AnnParams {
    fn default() -> Self {
        AnnParams { m: 16, ef_construction: 128, ef_search: 64, threads: 0 }
    }
}

impl AnnParams {
    fn validate(&self) -> Result<(), AnnError> {
        if !(2..=MAX_M).contains(&self.m) {
            return Err(AnnError::InvalidParams(format!("m = {} is outside 2..={MAX_M}", self.m)));
        }
        if self.ef_construction == 0 || self.ef_construction > u32::MAX as usize {
            return Err(AnnError::InvalidParams(format!(
                "ef_construction = {} must be in 1..=u32::MAX",
                self.ef_construction
            )));
        }
        if self.ef_search == 0 || self.ef_search > u32::MAX as usize {
            return Err(AnnError::InvalidParams(format!(
                "ef_search = {} must be in 1..=u32::MAX",
                self.ef_search
            )));
        }
        Ok(())
    }
}

/// Everything that can go wrong; no input makes this crate panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnError {
    #[error("invalid ANN parameters: {0}")]
    InvalidParams(String),
    #[error("vector for id {id} has {got} dimensions, the index has {expected}")]
    DimMismatch { id: u32, expected: usize, got: usize },
    #[error("vector for id {id} has a NaN or infinite component")]
    NonFinite { id: u32 },
    #[error("vector for id {id} is all zeros (no direction to compare by cosine)")]
    ZeroVector { id: u32 },
    #[error("id {0} occurs more than once in the build input")]
    DuplicateId(u32),
    #[error("ANN build cancelled")]
    Cancelled,
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("corrupt ANN file {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("ANN file {path} has format version {found}; this build reads version {expected}")]
    UnsupportedVersion { path: PathBuf, found: u32, expected: u32 },
    /// An error reported by the USearch engine (for example out of memory).
    #[error("HNSW engine error: {0}")]
    Engine(String),
}

fn engine(e: impl std::fmt::Display) -> AnnError {
    AnnError::Engine(e.to_string())
}

/// Why a vector cannot be quantized.
enum BadVector {
    NonFinite,
    Zero,
}

/// int8 codes with a per-vector max-abs scale: `code = round(x * 127 / max|x|)`. The scale is not
/// stored: the index compares by cosine, which is invariant to it.
fn quantize(v: &[f32], out: &mut [i8]) -> Result<(), BadVector> {
    let mut max = 0f32;
    for &x in v {
        if !x.is_finite() {
            return Err(BadVector::NonFinite);
        }
        max = max.max(x.abs());
    }
    if max == 0.0 {
        return Err(BadVector::Zero);
    }
    let s = 127.0 / max;
    for (o, &x) in out.iter_mut().zip(v) {
        *o = (x * s).round().clamp(-127.0, 127.0) as i8;
    }
    Ok(())
}

/// Admission control around the USearch index for searches.
///
/// USearch keeps one search context per reserved "thread" and takes the expansion (ef) from a
/// single index-wide setting. The gate lets at most `capacity` searches run at once (more callers
/// wait instead of failing) and changes the ef only while no search is running; a caller that
/// needs another ef blocks new entrants until the running ones drain, so it cannot starve.
struct Gate {
    state: Mutex<GateState>,
    changed: Condvar,
    capacity: usize,
}

struct GateState {
    active: usize,
    ef: usize,
    switch_waiting: usize,
}

impl Gate {
    fn new(capacity: usize, ef: usize) -> Gate {
        Gate {
            state: Mutex::new(GateState { active: 0, ef, switch_waiting: 0 }),
            changed: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, index: &Index, ef: usize) -> Permit<'_> {
        let mut st = self.lock();
        let mut switching = false;
        loop {
            if st.ef == ef {
                // Same ef: enter unless full, or unless another ef is waiting for the running
                // searches to drain (then queue behind it).
                if st.active < self.capacity && (switching || st.switch_waiting == 0) {
                    break;
                }
            } else if st.active == 0 {
                index.change_expansion_search(ef);
                st.ef = ef;
                self.changed.notify_all();
                continue;
            } else if !switching {
                switching = true;
                st.switch_waiting += 1;
            }
            st = self.changed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if switching {
            st.switch_waiting -= 1;
        }
        st.active += 1;
        Permit(self)
    }
}

struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.active -= 1;
        drop(st);
        self.0.changed.notify_all();
    }
}

/// Search contexts reserved in USearch = concurrent searches allowed before callers queue.
fn search_contexts() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).max(8)
}

fn usearch_options(dim: usize, params: &AnnParams) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::I8,
        connectivity: params.m,
        expansion_add: params.ef_construction,
        expansion_search: params.ef_search,
        multi: false,
    }
}

/// An HNSW index over `(u32 id, vector)` pairs, compared by cosine (= inner product for the
/// L2-normalized vectors it is meant for). Immutable once built; `Send + Sync`, so one instance
/// serves concurrent searches.
pub struct AnnIndex {
    dim: usize,
    params: AnnParams,
    /// `None` for an empty index (USearch is never asked to handle zero vectors).
    inner: Option<Index>,
    gate: Gate,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnIndex")
            .field("dim", &self.dim)
            .field("len", &self.len())
            .field("params", &self.params)
            .finish()
    }
}

impl AnnIndex {
    /// Builds over `(id, vector)` pairs. Ids are caller-chosen row numbers (not necessarily
    /// dense, must be distinct). Vectors need not be normalized (the metric is cosine) but must
    /// have `dim` finite components, not all zero.
    ///
    /// Insertion runs on `params.threads` threads; `cancelled` is polled every
    /// 64 insertions per thread and ends the build with [`AnnError::Cancelled`].
    pub fn build(
        dim: usize,
        items: &[(u32, &[f32])],
        params: &AnnParams,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<AnnIndex, AnnError> {
        params.validate()?;
        if dim == 0 || dim > MAX_DIM {
            return Err(AnnError::InvalidParams(format!("dim = {dim} is outside 1..={MAX_DIM}")));
        }
        let mut scratch = vec![0i8; dim];
        for &(id, v) in items {
            if v.len() != dim {
                return Err(AnnError::DimMismatch { id, expected: dim, got: v.len() });
            }
            match quantize(v, &mut scratch) {
                Ok(()) => {}
                Err(BadVector::NonFinite) => return Err(AnnError::NonFinite { id }),
                Err(BadVector::Zero) => return Err(AnnError::ZeroVector { id }),
            }
        }
        let mut ids: Vec<u32> = items.iter().map(|&(id, _)| id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(AnnError::DuplicateId(w[0]));
        }
        drop(ids);
        if cancelled() {
            return Err(AnnError::Cancelled);
        }
        let contexts = search_contexts();
        if items.is_empty() {
            return Ok(AnnIndex { dim, params: *params, inner: None, gate: Gate::new(contexts, params.ef_search) });
        }

        let threads = match params.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        }
        .clamp(1, items.len().div_ceil(BUILD_CHUNK));
        let index = Index::new(&usearch_options(dim, params)).map_err(engine)?;
        index.reserve_capacity_and_threads(items.len(), threads.max(contexts)).map_err(engine)?;

        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let failure: Mutex<Option<AnnError>> = Mutex::new(None);
        let fail = |e: AnnError| {
            stop.store(true, Ordering::Relaxed);
            let mut slot = failure.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.is_none() {
                *slot = Some(e);
            }
        };
        let worker = || {
            let mut codes = vec![0i8; dim];
            while !stop.load(Ordering::Relaxed) {
                let start = next.fetch_add(BUILD_CHUNK, Ordering::Relaxed);
                if start >= items.len() {
                    return;
                }
                if cancelled() {
                    fail(AnnError::Cancelled);
                    return;
                }
                for &(id, v) in &items[start..(start + BUILD_CHUNK).min(items.len())] {
                    // Validated above, so quantization succeeds.
                    if quantize(v, &mut codes).is_err() {
                        fail(AnnError::NonFinite { id });
                        return;
                    }
                    if let Err(e) = index.add(u64::from(id), &codes) {
                        fail(engine(e));
                        return;
                    }
                }
            }
        };
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(worker);
            }
            worker();
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            return Err(e);
        }
        if index.size() != items.len() {
            return Err(AnnError::Engine(format!(
                "index holds {} vectors after inserting {}",
                index.size(),
                items.len()
            )));
        }
        Ok(AnnIndex { dim, params: *params, inner: Some(index), gate: Gate::new(contexts, params.ef_search) })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.size())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The parameters the index was built with (`threads` is 0 after [`AnnIndex::load`]).
    pub fn params(&self) -> &AnnParams {
        &self.params
    }

    /// Bytes of memory held by the graph and the int8 vectors (as reported by USearch).
    pub fn memory_bytes(&self) -> usize {
        self.inner.as_ref().map_or(0, |i| i.memory_usage())
    }

    /// The SIMD distance kernel USearch picked on this CPU (for example `"haswell"`), for logs;
    /// `None` for an empty index.
    pub fn kernel(&self) -> Option<String> {
        self.inner.as_ref().map(|i| i.hardware_acceleration())
    }

    /// The best `k` ids by cosine similarity to `query`, best first, with their similarity
    /// (computed on the int8 codes, within about 1e-2 of the f32 value), among the ids for which
    /// `keep(id)` is true.
    ///
    /// `ef` is the HNSW candidate list size (recall vs latency; raised to at least `k`); 0 means
    /// the index's `params().ef_search`. The filter is applied during the graph walk: rejected
    /// nodes are still traversed, and the walk goes on until `ef` kept candidates are collected
    /// or the graph is exhausted, so a selective filter still returns `k` results whenever `k`
    /// ids pass (at the cost of visiting more of the graph: under ~1% selectivity an exact scan
    /// of the caller's candidates is cheaper).
    ///
    /// A query of the wrong dimension, with non-finite components or all zeros, `k == 0` and an
    /// empty index all give an empty result. If `keep` panics, the panic is resumed here after
    /// the engine has unwound cleanly.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: &(dyn Fn(u32) -> bool + Sync),
    ) -> Vec<(u32, f32)> {
        let Some(index) = &self.inner else { return Vec::new() };
        if k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let mut codes = vec![0i8; self.dim];
        if quantize(query, &mut codes).is_err() {
            return Vec::new();
        }
        let ef = match ef {
            0 => self.params.ef_search,
            e => e,
        }
        .max(k);
        let panic: RefCell<Option<Box<dyn Any + Send>>> = RefCell::new(None);
        let filter = |key: u64| -> bool {
            if panic.borrow().is_some() {
                return false;
            }
            let Ok(id) = u32::try_from(key) else { return false };
            // A panic must not unwind into the C++ engine (that aborts): catch it, reject every
            // further candidate, and resume it once the engine has returned.
            match catch_unwind(AssertUnwindSafe(|| keep(id))) {
                Ok(kept) => kept,
                Err(p) => {
                    *panic.borrow_mut() = Some(p);
                    false
                }
            }
        };
        let permit = self.gate.enter(index, ef);
        let found = index.filtered_search(&codes, k, filter);
        drop(permit);
        if let Some(p) = panic.into_inner() {
            resume_unwind(p);
        }
        match found {
            Ok(m) => m
                .keys
                .iter()
                .zip(&m.distances)
                .filter_map(|(&key, &d)| Some((u32::try_from(key).ok()?, 1.0 - d)))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes the index to `path` atomically (temporary file in the same directory, fsync,
    /// rename, directory fsync). See the crate docs for the format.
    pub fn save(&self, path: &Path) -> Result<(), AnnError> {
        let payload = match &self.inner {
            None => Vec::new(),
            Some(index) => {
                let mut buf = vec![0u8; index.serialized_length()];
                index.save_to_buffer(&mut buf).map_err(engine)?;
                buf
            }
        };
        let header = Header {
            dim: self.dim as u32,
            count: self.len() as u64,
            m: self.params.m as u32,
            ef_construction: self.params.ef_construction as u32,
            ef_search: self.params.ef_search as u32,
            encoding: ENCODING_I8_COS,
            payload_len: payload.len() as u64,
            payload_crc: crc32fast::hash(&payload),
        };
        file::write_atomic(path, &header.encode(), &payload)
            .map_err(|source| AnnError::Io { path: path.to_path_buf(), source })
    }

    /// Reads an index written by [`AnnIndex::save`]. The header and both checksums are verified
    /// before the payload is parsed, and the parsed index is checked against the header, so a
    /// truncated, corrupt or foreign file is an error, never a panic or a wrong index.
    pub fn load(path: &Path) -> Result<AnnIndex, AnnError> {
        let corrupt = |reason: String| AnnError::Corrupt { path: path.to_path_buf(), reason };
        let bytes = std::fs::read(path).map_err(|source| AnnError::Io { path: path.to_path_buf(), source })?;
        let (h, payload) = Header::decode(&bytes).map_err(|e| match e {
            DecodeError::Corrupt(reason) => corrupt(reason),
            DecodeError::Version(found) => AnnError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                expected: file::FORMAT_VERSION,
            },
        })?;
        let dim = h.dim as usize;
        let params = AnnParams {
            m: h.m as usize,
            ef_construction: h.ef_construction as usize,
            ef_search: h.ef_search as usize,
            threads: 0,
        };
        if dim == 0 || dim > MAX_DIM || params.validate().is_err() {
            return Err(corrupt(format!("implausible header: dim {dim}, {params:?}")));
        }
        let contexts = search_contexts();
        if h.count == 0 {
            return Ok(AnnIndex { dim, params, inner: None, gate: Gate::new(contexts, params.ef_search) });
        }
        let meta = Index::metadata_from_buffer(payload).map_err(|e| corrupt(format!("engine header: {e}")))?;
        if meta.dimensions != h.dim as u64
            || meta.metric != MetricKind::Cos
            || meta.quantization != ScalarKind::I8
            || meta.multi
            || meta.count_present != h.count
            || meta.count_deleted != 0
        {
            return Err(corrupt("engine header disagrees with the file header".to_owned()));
        }
        let index = Index::new(&usearch_options(dim, &params)).map_err(engine)?;
        index.load_from_buffer(payload).map_err(|e| corrupt(format!("engine payload: {e}")))?;
        if index.dimensions() != dim || index.size() as u64 != h.count {
            return Err(corrupt(format!(
                "loaded {} vectors of dim {}, header says {} of dim {dim}",
                index.size(),
                index.dimensions(),
                h.count
            )));
        }
        index.reserve_capacity_and_threads(index.size(), contexts).map_err(engine)?;
        index.change_expansion_search(params.ef_search);
        drop(bytes);
        Ok(AnnIndex { dim, params, inner: Some(index), gate: Gate::new(contexts, params.ef_search) })
    }
}

// `AnnIndex` is shared across search threads by the engine.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AnnIndex>();
};

#[doc(hidden)]
pub const _HEADER_LEN: usize = HEADER_LEN;
