//! [`EmbeddedWriter`]: the one writer of an index directory.
//!
//! A writer holds `writer.lock` (one writer per directory, across processes) and a tantivy
//! `IndexWriter`. Writing a file deletes the documents under its `key` term and adds its file
//! document and one document per unit; a unit's vector goes to the append-only rows first and
//! the unit document names its row ([`crate::rows`]). A unit whose embedding key is already
//! cached reuses its row, so an unchanged function is never embedded twice. Nothing is visible
//! to readers until [`StoreWriter::commit`], which fsyncs the rows before tantivy's commit: a
//! committed document never names a row that is not on disk. A commit that leaves too many
//! segments starts a merge and returns without waiting for it ([`crate::merge`]). After a
//! commit, [`EmbeddedWriter::maintain_ann`] rebuilds the approximate index when enough rows are
//! not covered by it.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use gnn_coder_store::{
    CancellationToken, FileWrite, RepoInfo, Result, StoreError, StoreWriter, UnitKey,
};
use tantivy::index::SegmentId;
use tantivy::{IndexWriter, TantivyDocument, Term};

use crate::ann::AnnState;
use crate::error::tantivy_err;
use crate::integrity::Checksums;
use crate::lock::WriterLock;
use crate::merge::{MergeRun, Parked, Parking};
use crate::rows::{RowReader, RowWriter, RowsVerified};
use crate::schema::{DOC_FILE, DOC_REPO, DOC_UNIT, Fields, file_key, repo_key};

/// The writer of an [`EmbeddedStore`]; holds `writer.lock` until dropped. Dropping it without
/// [`StoreWriter::commit`] discards what it wrote. It owns what it needs (no borrow of the
/// store), so a long-lived front end can keep one and share it between jobs.
pub struct EmbeddedWriter {
    pub(crate) dir: PathBuf,
    pub(crate) fields: Fields,
    /// The vector rows' layout; `None` for a lexical-only index.
    pub(crate) rows_format: Option<crate::rows::RowFormat>,
    pub(crate) writer: Option<IndexWriter>,
    pub(crate) rows: Option<RowWriter>,
    /// Rows from which the approximate index is built (the store's option).
    pub(crate) ann_min_rows: u32,
    /// The manifest's part of `checksums.json`.
    pub(crate) sums_base: Checksums,
    /// The record on disk (`None` before the first one of an index that predates them).
    pub(crate) sums_written: Option<Checksums>,
    /// The approximate index file this writer verified.
    pub(crate) ann_checked: Option<PathBuf>,
    /// Where the row writer's state goes for the next writer of this process.
    pub(crate) cache: std::sync::Arc<std::sync::Mutex<Option<crate::rows::CachedRows>>>,
    /// The merge this writer's tantivy writer runs, if any ([`crate::merge`]).
    pub(crate) merge: Option<MergeRun>,
    /// Where this writer goes when it is dropped while its merge runs.
    pub(crate) parking: Arc<Parking>,
    /// `None` only once handed to the parking.
    pub(crate) lock: Option<WriterLock>,
}

impl Drop for EmbeddedWriter {
    fn drop(&mut self) {
        // Only a state whose rows are all durable (none pending) is handed on; the next writer
        // still checks it against the committed record.
        if let Some(rows) = self.rows.take()
            && let Some(c) = rows.into_cached()
            && let Ok(mut slot) = self.cache.lock()
        {
            *slot = Some(c);
        }
        // A running merge would die with tantivy's writer: it is kept, with the lock, until
        // the merge ends.
        if let Some(merge) = self.merge.take().filter(MergeRun::running)
            && let Some(writer) = self.writer.take()
            && let Some(lock) = self.lock.take()
        {
            self.parking.park(Parked {
                writer,
                lock,
                merge,
            });
        }
    }
}

impl EmbeddedWriter {
    fn w(&self) -> Result<&IndexWriter> {
        self.writer.as_ref().ok_or_else(|| StoreError::Backend {
            message: "the index writer failed earlier".into(),
        })
    }

    fn add(&mut self, doc: TantivyDocument) -> Result<()> {
        match self.w()?.add_document(doc) {
            Ok(_) => Ok(()),
            Err(e @ tantivy::TantivyError::ErrorInThread(_)) => Err(self.worker_failure(e)),
            Err(e) => Err(tantivy_err(&self.dir)(e)),
        }
    }

    /// The cause of a dead indexing worker (tantivy says only "an index writer was killed"):
    /// preparing a commit joins the workers and returns the first one's error (a full disk,
    /// most likely), before anything is committed. The writer is unusable either way.
    fn worker_failure(&mut self, killed: tantivy::TantivyError) -> StoreError {
        let Some(mut writer) = self.writer.take() else {
            return tantivy_err(&self.dir)(killed);
        };
        let err = match writer.prepare_commit() {
            Err(cause) => tantivy_err(&self.dir)(cause),
            Ok(prepared) => {
                let _ = prepared.abort();
                tantivy_err(&self.dir)(killed)
            }
        };
        if err.kind() == gnn_coder_store::ErrorKind::NoSpace {
            return err;
        }
        // A healthy worker joined first can hide the failed one's cause behind "killed" again:
        // a small write tells a full disk from the rest.
        let probe = self.dir.join(".gnn-coder-space-probe");
        let full = std::fs::write(&probe, [0u8; 64 << 10])
            .err()
            .and_then(|e| StoreError::no_space_in(&self.dir, &e));
        let _ = std::fs::remove_file(&probe);
        full.unwrap_or(err)
    }
}

fn check_repo_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.contains('\0') {
        return Err(StoreError::InvalidArgument {
            message: format!("bad repository name {name:?}"),
        });
    }
    Ok(())
}

impl StoreWriter for EmbeddedWriter {
    fn upsert_files(&mut self, repository: &str, files: Vec<FileWrite>) -> Result<()> {
        check_repo_name(repository)?;
        let f = self.fields;
        for file in files {
            let key = file_key(repository, &file.file.path);
            self.w()?.delete_term(Term::from_field_text(f.key, &key));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.doc_type, DOC_FILE);
            doc.add_text(f.key, &key);
            doc.add_text(f.repo, repository);
            doc.add_text(f.path, &file.file.path);
            doc.add_text(f.file_hash, &file.file.hash);
            doc.add_u64(f.file_units, file.units.len() as u64);
            doc.add_u64(f.file_bytes, file.file.bytes);
            self.add(doc)?;
            for unit in file.units {
                let row = match self.rows.as_mut() {
                    None => None,
                    Some(rows) => Some(match (&unit.vector, rows.lookup(&unit.key)) {
                        (_, Some(row)) => row,
                        (Some(v), None) => rows.insert(unit.key, v)?,
                        (None, None) => {
                            return Err(StoreError::InvalidArgument {
                                message: format!(
                                    "unit {} of {} has no vector and none is cached",
                                    unit.record.symbol, unit.record.path
                                ),
                            });
                        }
                    }),
                };
                let r = &unit.record;
                let mut doc = TantivyDocument::default();
                doc.add_text(f.doc_type, DOC_UNIT);
                doc.add_text(f.key, &key);
                doc.add_text(f.repo, repository);
                doc.add_text(f.path, &r.path);
                doc.add_text(f.path_text, &r.path);
                doc.add_text(f.language, &r.language);
                doc.add_text(f.kind, &r.kind);
                doc.add_text(f.name, &r.name);
                doc.add_text(f.symbol, &r.symbol);
                if let Some(d) = &r.doc {
                    doc.add_text(f.doc, d);
                }
                doc.add_text(f.code, &r.code);
                doc.add_u64(f.start_line, r.start_line);
                doc.add_u64(f.end_line, r.end_line);
                doc.add_u64(f.def_line, r.def_line);
                doc.add_u64(f.start_byte, r.start_byte);
                doc.add_u64(f.end_byte, r.end_byte);
                if let Some(row) = row {
                    doc.add_u64(f.row, u64::from(row));
                }
                self.add(doc)?;
            }
        }
        Ok(())
    }

    fn delete_files(&mut self, repository: &str, paths: &[String]) -> Result<()> {
        let f = self.fields;
        for p in paths {
            self.w()?
                .delete_term(Term::from_field_text(f.key, &file_key(repository, p)));
        }
        Ok(())
    }

    fn put_repository(&mut self, info: &RepoInfo) -> Result<()> {
        check_repo_name(&info.name)?;
        let f = self.fields;
        let key = repo_key(&info.name);
        self.w()?.delete_term(Term::from_field_text(f.key, &key));
        let mut doc = TantivyDocument::default();
        doc.add_text(f.doc_type, DOC_REPO);
        doc.add_text(f.key, &key);
        doc.add_text(f.repo, &info.name);
        let json = serde_json::to_string(info).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        doc.add_text(f.repo_json, &json);
        self.add(doc)
    }

    fn delete_repository(&mut self, name: &str) -> Result<()> {
        let f = self.fields;
        self.w()?.delete_term(Term::from_field_text(f.repo, name));
        Ok(())
    }

    fn known_keys(&self, keys: &[UnitKey]) -> Result<Vec<bool>> {
        // Answered from the key map: a unit written with `vector: None` reuses the row (see
        // `upsert_files`), so nothing is read back.
        Ok(keys
            .iter()
            .map(|k| self.rows.as_ref().is_some_and(|r| r.lookup(k).is_some()))
            .collect())
    }

    fn commit(&mut self, cancel: &CancellationToken) -> Result<()> {
        cancel.check()?;
        // Rows first: a committed document must never name a row that is not on disk.
        if let Some(rows) = self.rows.as_mut() {
            rows.sync()?;
        }
        // Then their checksums, before any document naming them is visible.
        let sums = match &self.rows {
            Some(rows) => rows.checksums(&self.sums_base),
            None => self.sums_base.clone(),
        };
        if self.sums_written.as_ref() != Some(&sums) {
            sums.store(&self.dir)?;
            self.sums_written = Some(sums);
        }
        let dir = self.dir.clone();
        let writer = self.writer.as_mut().ok_or_else(|| StoreError::Backend {
            message: "the index writer failed earlier".into(),
        })?;
        let before: HashSet<SegmentId> = writer
            .index()
            .searchable_segment_metas()
            .map(|metas| metas.iter().map(|m| m.id()).collect())
            .unwrap_or_default();
        if let Err(e) = writer.commit() {
            // tantivy's writer is unusable after a failed commit.
            self.writer = None;
            return Err(tantivy_err(&dir)(e));
        }
        self.compact(&before)
    }

    fn maintain(&mut self, cancel: &CancellationToken) -> Result<()> {
        self.maintain_ann(cancel).map(|_| ())
    }
}

/// Segments a commit leaves at most: past it the smallest are merged down to
/// [`COMPACT_TO`]. Each query visits every segment, and one update makes one segment.
const MAX_SEGMENTS: usize = 12;
const COMPACT_TO: usize = 6;

/// The segments to merge, given every committed segment's (id, documents) and the ids that
/// were there before the last commit: none while at most [`MAX_SEGMENTS`] exist, else the
/// smallest of the older ones (at least two), enough to leave [`COMPACT_TO`]. See
/// [`EmbeddedWriter::compact`] for why the last commit's segments wait.
fn merge_choice<T: Copy + Ord + std::hash::Hash>(
    segments: &[(T, u32)],
    before: &HashSet<T>,
) -> Vec<T> {
    if segments.len() <= MAX_SEGMENTS {
        return Vec::new();
    }
    let mut older: Vec<(u32, T)> = segments
        .iter()
        .filter(|(id, _)| before.contains(id))
        .map(|&(id, docs)| (docs, id))
        .collect();
    older.sort();
    let ids: Vec<T> = older
        .iter()
        .take(segments.len() - COMPACT_TO + 1)
        .map(|&(_, id)| id)
        .collect();
    if ids.len() < 2 { Vec::new() } else { ids }
}

impl EmbeddedWriter {
    /// Starts merging the smallest committed segments into one when there are more than
    /// [`MAX_SEGMENTS`], so that [`COMPACT_TO`] remain, unless this writer's last merge still
    /// runs. The smallest first: many small segments (updates) merge cheaply, and equal ones (a
    /// growing index) merge level by level. The segments this commit made (those not in
    /// `before`) wait for the next merge: an editor saves the same file again and again, and a
    /// merge fails when one of its segments has lost all its documents by its end (tantivy
    /// drops empty segments at commit), which the newest one of such a file always does. The
    /// merge runs in the background ([`crate::merge`]); tantivy saves its result as a new
    /// `meta.json` and removes the merged files. A merge that fails leaves the segments as they
    /// were (searches stay correct, only slower) and is tried again at the next commit.
    fn compact(&mut self, before: &HashSet<SegmentId>) -> Result<()> {
        if self.merge.as_ref().is_some_and(MergeRun::running) {
            return Ok(());
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let metas = match writer.index().searchable_segment_metas() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("listing segments to merge: {e}");
                return Ok(());
            }
        };
        let sizes: Vec<(SegmentId, u32)> = metas.iter().map(|m| (m.id(), m.num_docs())).collect();
        let ids = merge_choice(&sizes, before);
        if ids.is_empty() {
            return Ok(());
        }
        self.merge = Some(MergeRun::watch(writer.merge(&ids), ids.len()));
        Ok(())
    }

    /// Rebuilds the approximate nearest-neighbour index over all durable rows when enough rows
    /// are not covered yet (see [`crate::ann`]). Returns whether it built one.
    pub fn maintain_ann(&mut self, cancel: &CancellationToken) -> Result<bool> {
        let Some(rows) = self.rows.as_ref() else {
            return Ok(false);
        };
        let durable = rows.durable_rows();
        let Some(format) = self.rows_format else {
            return Ok(false);
        };
        // The writer verified the rows when it opened them and wrote the rest itself, so the
        // reader skips the scale scan it gives an index without checksums.
        let open_rows = || {
            let mut done = RowsVerified {
                blocks: 0,
                scanned: durable,
            };
            RowReader::open(&self.dir, format, None, &mut done)
        };
        let mut covered = 0;
        if let Some((c, path)) = crate::ann::newest(&self.dir, durable) {
            covered = c;
            // A damaged approximate index is rebuilt from the rows (checked once per file).
            if self.ann_checked.as_ref() != Some(&path)
                && !crate::ann::needs_rebuild(covered, durable, self.ann_min_rows)
            {
                match AnnState::load(&path, &open_rows()?) {
                    Ok(_) => self.ann_checked = Some(path),
                    Err(e) => {
                        tracing::warn!("{e}; rebuilding the approximate index from the rows");
                        let _ = std::fs::remove_file(&path);
                        covered = 0;
                    }
                }
            }
        }
        if !crate::ann::needs_rebuild(covered, durable, self.ann_min_rows) {
            return Ok(false);
        }
        crate::ann::build_and_save(&self.dir, &open_rows()?, durable, cancel)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_choose_the_smallest_older_segments() {
        // Twelve segments: nothing to merge.
        let twelve: Vec<(u32, u32)> = (0..12).map(|i| (i, 100 + i)).collect();
        let all: HashSet<u32> = (0..20).collect();
        assert!(merge_choice(&twelve, &all).is_empty());
        // Fourteen: the nine smallest merge into one, so that six remain.
        let fourteen: Vec<(u32, u32)> = (0..14).map(|i| (i, 1000 - i)).collect();
        assert_eq!(
            merge_choice(&fourteen, &all),
            vec![13, 12, 11, 10, 9, 8, 7, 6, 5]
        );
        // The last commit's segment (id 13, the smallest) waits for the next merge.
        let before: HashSet<u32> = (0..13).collect();
        assert_eq!(
            merge_choice(&fourteen, &before),
            vec![12, 11, 10, 9, 8, 7, 6, 5, 4]
        );
        // Fewer than two older segments: no merge.
        let before: HashSet<u32> = [0].into_iter().collect();
        assert!(merge_choice(&fourteen, &before).is_empty());
    }
}
