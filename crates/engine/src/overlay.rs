//! Unsaved buffers searched beside the committed index: an editor's keystrokes become visible
//! without a durable commit each.
//!
//! ```text
//! update_buffers: paths + buffer texts → the update's checks and plan (skip rules, parse)
//!   → vectors: this overlay's earlier ones, the committed unit with the same text, else embed
//!   → replace the file's overlay entry (a deleted file: an entry without units)   [no commit]
//! search: committed legs with the overlaid files' committed units excluded
//!   + overlay units passing the filters, scored with the store's BM25 statistics and dot
//!   products → one ranked list per leg → fusion as usual
//! flush_buffers: every entry written with update_files (one durable commit per repository)
//!   → entries not replaced meanwhile are dropped
//! ```
//!
//! An overlaid file hides what is committed for its path (so nothing deleted or edited away is
//! shown) and shows the buffer's units, with ids of their own (top bit set) that no store
//! hands out. Nothing committed is touched until the flush, which goes through the same
//! durable path as [`Engine::update_files`]; a crash before it loses only the buffers, which
//! the editor still holds. Lexical scores of buffer units come from the store's own statistics
//! ([`gnn_coder_store::StoreReader::lexical_scores`]), so they rank among committed units as
//! if they were committed; a store that cannot score outside texts gets a durable update
//! instead. Code→code search, repository listings and counts see committed state only.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use gnn_coder_store::{
    CancellationToken, Filters, LexicalQuery, StoreReader, StoredUnit, UnitId, UnitKey, UnitRecord,
};

use crate::indexing::{unit_key, unit_record};
use crate::update::{FileOutcome, FileReport, FileUpdate, Plan, UpdateSummary, check_updates};
use crate::{Engine, EngineError, Result};

/// Marks the ids of overlay units.
const OVERLAY_ID: u64 = 1 << 63;

/// Vectors of buffer units kept by text key, so a keystroke embeds only the function it
/// changed.
const VECTOR_CACHE_ENTRIES: usize = 4096;

/// One overlaid file: its buffer (`None`: deleted) and units.
pub(crate) struct OverlayFile {
    pub(crate) repository: String,
    pub(crate) path: String,
    contents: Option<Vec<u8>>,
    pub(crate) units: Vec<OverlayUnit>,
    /// Which update made this entry (a flush drops only entries it wrote).
    version: u64,
}

pub(crate) struct OverlayUnit {
    pub(crate) id: UnitId,
    pub(crate) record: UnitRecord,
    pub(crate) vector: Option<Vec<f32>>,
}

/// The engine's buffers.
#[derive(Default)]
pub(crate) struct Overlay {
    files: RwLock<BTreeMap<(String, String), Arc<OverlayFile>>>,
    next: AtomicU64,
    vectors: Mutex<HashMap<UnitKey, Vec<f32>>>,
}

/// What one search sees of the overlay.
pub(crate) struct OverlayView {
    pub(crate) files: Vec<Arc<OverlayFile>>,
}

impl Overlay {
    pub(crate) fn view(&self) -> OverlayView {
        let files = self.files.read().unwrap_or_else(|p| p.into_inner());
        OverlayView {
            files: files.values().cloned().collect(),
        }
    }

    /// Drops every buffer of `repository` (removed from the index).
    pub(crate) fn drop_repository(&self, repository: &str) {
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(repo, _), _| repo != repository);
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether a buffer unit passes a request's filters (the store applies the same ones).
fn passes(f: &Filters, repository: &str, u: &OverlayUnit) -> bool {
    let r = &u.record;
    (f.languages.is_empty() || f.languages.contains(&r.language))
        && (f.kinds.is_empty() || f.kinds.contains(&r.kind))
        && (f.repositories.is_empty() || f.repositories.iter().any(|x| x == repository))
        && f.path_globs.set().is_none_or(|g| g.is_match(&r.path))
        && !f.exclude_units.contains(&u.id)
}

impl OverlayView {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    fn units<'a>(
        &'a self,
        f: &'a Filters,
    ) -> impl Iterator<Item = (&'a str, &'a OverlayUnit)> + 'a {
        self.files.iter().flat_map(move |file| {
            file.units
                .iter()
                .filter(move |u| passes(f, &file.repository, u))
                .map(move |u| (file.repository.as_str(), u))
        })
    }

    fn unit(&self, id: UnitId) -> Option<(&str, &OverlayUnit)> {
        self.files.iter().find_map(|f| {
            f.units
                .iter()
                .find(|u| u.id == id)
                .map(|u| (f.repository.as_str(), u))
        })
    }

    /// The committed units the overlay hides (those of every overlaid path).
    pub(crate) fn hidden(&self, reader: &dyn StoreReader) -> Result<Vec<UnitId>> {
        let mut ids = Vec::new();
        for f in &self.files {
            ids.extend(
                reader
                    .units_of_file(&f.repository, &f.path)?
                    .into_iter()
                    .map(|u| u.id),
            );
        }
        Ok(ids)
    }

    /// Adds the buffer units' BM25 scores to a committed lexical list.
    pub(crate) fn merge_lexical(
        &self,
        reader: &dyn StoreReader,
        q: &LexicalQuery,
        ranked: &mut Vec<(UnitId, f32)>,
    ) -> Result<()> {
        let units: Vec<(&str, &OverlayUnit)> = self.units(&q.filters).collect();
        if units.is_empty() {
            return Ok(());
        }
        let records: Vec<UnitRecord> = units.iter().map(|(_, u)| u.record.clone()).collect();
        let Some(scores) = reader.lexical_scores(q, &records)? else {
            return Ok(());
        };
        for ((_, u), s) in units.iter().zip(scores) {
            if s > 0.0 && s.is_finite() {
                ranked.push((u.id, s));
            }
        }
        rank(ranked, q.limit);
        Ok(())
    }

    /// Adds the buffer units' dot products to a committed vector list.
    pub(crate) fn merge_dense(
        &self,
        filters: &Filters,
        q: &[f32],
        limit: usize,
        ranked: &mut Vec<(UnitId, f32)>,
    ) {
        let before = ranked.len();
        for (_, u) in self.units(filters) {
            if let Some(v) = &u.vector {
                ranked.push((u.id, dot(v, q)));
            }
        }
        if ranked.len() > before {
            rank(ranked, limit);
        }
    }

    /// Dense scores of buffer units among `ids` (others `None`).
    pub(crate) fn dense_scores(&self, ids: &[UnitId], q: &[f32]) -> Vec<Option<f32>> {
        ids.iter()
            .map(|id| {
                self.unit(*id)
                    .and_then(|(_, u)| u.vector.as_ref().map(|v| dot(v, q)))
            })
            .collect()
    }

    /// Units by id, committed ones from `reader`, buffer ones from here, in the order asked.
    pub(crate) fn resolve(
        &self,
        reader: &dyn StoreReader,
        ids: &[UnitId],
    ) -> Result<Vec<StoredUnit>> {
        let committed: Vec<UnitId> = ids.iter().copied().filter(|id| !is_overlay(*id)).collect();
        let mut found: HashMap<UnitId, StoredUnit> = reader
            .units(&committed)?
            .into_iter()
            .map(|u| (u.id, u))
            .collect();
        Ok(ids
            .iter()
            .filter_map(|id| {
                if is_overlay(*id) {
                    self.unit(*id).map(|(repository, u)| StoredUnit {
                        id: u.id,
                        repository: repository.to_string(),
                        record: u.record.clone(),
                    })
                } else {
                    found.remove(id)
                }
            })
            .collect())
    }
}

pub(crate) fn is_overlay(id: UnitId) -> bool {
    id.0 & OVERLAY_ID != 0
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Best first (ties: lower id), cut to `limit`.
fn rank(ranked: &mut Vec<(UnitId, f32)>, limit: usize) {
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(limit);
}

impl Engine {
    /// An editor's unsaved buffers (or deleted files): visible to the next search at once,
    /// with no durable commit, and written by the next [`Engine::flush_buffers`] (see
    /// [`crate::overlay`]). An update without `contents` and not `deleted` drops the path's
    /// buffer (the editor closed it unsaved: what is committed shows again). Checked and
    /// planned as [`Engine::update_files`] plans, and reported the same way; a store that
    /// cannot score outside texts gets that durable update instead.
    pub fn update_buffers(
        &self,
        repository: &str,
        updates: &[FileUpdate],
        cancel: &CancellationToken,
    ) -> Result<UpdateSummary> {
        let started = std::time::Instant::now();
        let cleaned = check_updates(updates)?;
        let info = self.repository(repository)?;
        let reader = self.store.reader()?;
        let probe = LexicalQuery {
            text: "x".into(),
            boosts: Default::default(),
            filters: Filters::default(),
            limit: 1,
        };
        if reader.lexical_scores(&probe, &[])?.is_none() {
            return self.update_files(repository, updates, cancel);
        }
        let (model, model_id) = self.write_model()?;
        let graphs = model.as_ref().is_some_and(|m| m.embedder.graphs_enabled());
        let old = self.indexed_entries(repository, &cleaned)?;
        let root = self.open_root(repository, &info.root, false)?;
        // Buffers only: nothing is read from disk; an update without contents closes the
        // buffer.
        let mut closed = Vec::new();
        let mut buffered: Vec<FileUpdate> = Vec::new();
        let mut buffered_paths = Vec::new();
        for (u, path) in updates.iter().zip(&cleaned) {
            if u.contents.is_none() && !u.deleted {
                closed.push(path.clone());
            } else {
                buffered.push(u.clone());
                buffered_paths.push(path.clone());
            }
        }
        let planned = self.plan_all(&root, &buffered, &buffered_paths, graphs, &old, cancel)?;
        let mut summary = UpdateSummary {
            repository: repository.to_string(),
            ..UpdateSummary::default()
        };
        let mut entries: Vec<(String, Option<OverlayFile>)> = Vec::new();
        for path in closed {
            summary.files.push(FileReport {
                path: path.clone(),
                outcome: FileOutcome::Unchanged,
            });
            entries.push((path, None));
        }
        for p in planned {
            let contents = buffered
                .get(p.at)
                .and_then(|u| if u.deleted { None } else { u.contents.clone() });
            let (outcome, entry) = match p.plan {
                Plan::Parse(file) => {
                    let units = file.units.len() as u64;
                    let vectors = self.buffer_vectors(
                        reader.as_ref(),
                        repository,
                        &p.path,
                        &file,
                        model.as_deref(),
                        &model_id,
                        &mut summary,
                        cancel,
                    )?;
                    let units_of = file
                        .units
                        .iter()
                        .zip(vectors)
                        .map(|(u, vector)| OverlayUnit {
                            id: UnitId(OVERLAY_ID | self.overlay.next()),
                            record: unit_record(u),
                            vector,
                        })
                        .collect();
                    summary.units_written += units;
                    (
                        FileOutcome::Indexed { units },
                        Some(OverlayFile {
                            repository: repository.to_string(),
                            path: p.path.clone(),
                            contents,
                            units: units_of,
                            version: self.overlay.next(),
                        }),
                    )
                }
                // The buffer is what is committed: nothing to overlay.
                Plan::Unchanged => (FileOutcome::Unchanged, None),
                Plan::Remove | Plan::Skip(..) if old.contains_key(&p.path) => (
                    FileOutcome::Removed,
                    Some(OverlayFile {
                        repository: repository.to_string(),
                        path: p.path.clone(),
                        contents: None,
                        units: Vec::new(),
                        version: self.overlay.next(),
                    }),
                ),
                Plan::Remove => (FileOutcome::Removed, None),
                Plan::Skip(reason, detail) => (FileOutcome::Skipped { reason, detail }, None),
            };
            summary.files.push(FileReport {
                path: p.path.clone(),
                outcome,
            });
            entries.push((p.path, entry));
        }
        {
            let mut files = self
                .overlay
                .files
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (path, entry) in entries {
                let key = (repository.to_string(), path);
                match entry {
                    Some(e) => {
                        files.insert(key, Arc::new(e));
                    }
                    None => {
                        files.remove(&key);
                    }
                }
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// Vectors of a buffer's units: kept from earlier keystrokes, else the committed unit of
    /// the same file with the same text, else embedded (only those).
    #[allow(clippy::too_many_arguments)]
    fn buffer_vectors(
        &self,
        reader: &dyn StoreReader,
        repository: &str,
        path: &str,
        file: &gnn_coder_syntax::ParsedFile,
        model: Option<&crate::LoadedModel>,
        model_id: &str,
        summary: &mut UpdateSummary,
        cancel: &CancellationToken,
    ) -> Result<Vec<Option<Vec<f32>>>> {
        let Some(model) = model else {
            return Ok(vec![None; file.units.len()]);
        };
        let keys: Vec<UnitKey> = file
            .units
            .iter()
            .map(|u| unit_key(model_id, &u.language, &u.code))
            .collect();
        let mut out: Vec<Option<Vec<f32>>> = {
            let cache = self
                .overlay
                .vectors
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| cache.get(k).cloned()).collect()
        };
        if out.iter().any(Option::is_none) {
            // The committed version of the file: units whose text did not change.
            let committed = reader.units_of_file(repository, path)?;
            let by_key: HashMap<UnitKey, UnitId> = committed
                .iter()
                .map(|u| (unit_key(model_id, &u.record.language, &u.record.code), u.id))
                .collect();
            for (slot, k) in out.iter_mut().zip(&keys) {
                if slot.is_none()
                    && let Some(id) = by_key.get(k)
                {
                    *slot = reader.unit_vector(*id)?;
                }
            }
        }
        let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
        summary.embeddings_reused += (out.len() - missing.len()) as u64;
        if !missing.is_empty() {
            let t = std::time::Instant::now();
            let inputs: Vec<_> = missing
                .iter()
                .map(|&i| {
                    let u = &file.units[i];
                    (u.code.as_str(), file.graphs.get(i), u.language.as_str())
                })
                .collect();
            let vectors = crate::embed_units(&model.embedder, &inputs, cancel, &|_| {})?;
            summary.embed_seconds += t.elapsed().as_secs_f64();
            summary.embeddings_computed += vectors.len() as u64;
            for (&i, v) in missing.iter().zip(vectors) {
                out[i] = Some(v);
            }
        }
        let mut cache = self
            .overlay
            .vectors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if cache.len() + keys.len() > VECTOR_CACHE_ENTRIES {
            cache.clear();
        }
        for (k, v) in keys.iter().zip(&out) {
            if let Some(v) = v {
                cache.insert(*k, v.clone());
            }
        }
        Ok(out)
    }

    /// Writes every buffer with [`Engine::update_files`] (one durable commit per repository)
    /// and drops the entries it wrote (one replaced meanwhile stays for the next flush).
    /// Returns the files written.
    pub fn flush_buffers(&self, cancel: &CancellationToken) -> Result<usize> {
        let taken: Vec<Arc<OverlayFile>> = self.overlay.view().files;
        let mut by_repo: BTreeMap<&str, Vec<&Arc<OverlayFile>>> = BTreeMap::new();
        for f in &taken {
            by_repo.entry(f.repository.as_str()).or_default().push(f);
        }
        let mut written = 0;
        for (repo, files) in by_repo {
            let updates: Vec<FileUpdate> = files
                .iter()
                .map(|f| FileUpdate {
                    path: f.path.clone(),
                    contents: f.contents.clone(),
                    deleted: f.contents.is_none(),
                })
                .collect();
            match self.update_files(repo, &updates, cancel) {
                Ok(_) => {}
                // The repository was removed meanwhile: its buffers go with it.
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            let mut map = self
                .overlay
                .files
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for f in files {
                let key = (f.repository.clone(), f.path.clone());
                if map.get(&key).is_some_and(|e| e.version == f.version) {
                    map.remove(&key);
                }
                written += 1;
            }
        }
        Ok(written)
    }

    /// Files held as buffers, not yet written.
    pub fn buffered_files(&self) -> usize {
        self.overlay
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }
}
