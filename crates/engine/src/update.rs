//! Updating a few files of an indexed repository at once: an editor's unsaved buffers, a
//! file-system watcher's changes.
//!
//! ```text
//! paths (+ optional contents) → refuse bad paths (absolute, `..`, NUL) → per file:
//!   deleted or gone from disk → delete │ path the walk would skip (hidden, ignored, no
//!   language) → skip, and drop what was indexed │ symlink → skip (never followed) │ read or
//!   take the buffer → content checks → same hash as indexed → unchanged │ parse
//! → the index run's batch step (cached vectors, embed the misses) → repository counts → commit
//! ```
//!
//! The result is what a full refresh would have made of the same bytes, so a later
//! `index_repository` finds these files unchanged (or re-reads them from disk when a buffer
//! was never saved). The commit makes them visible to the next search.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use gnn_coder_store::{CancellationToken, FileEntry};
use gnn_coder_syntax::{
    ExtractOptions, Language, ParsedFile, SkipReason, WalkOptions, check_source, extract_file,
    path_skip_reason,
};
use serde::Serialize;

use crate::indexing::{Batcher, Counters, content_hash};
use crate::{Engine, EngineError, IndexEvent, Result};

/// Most files one update may name.
pub const MAX_UPDATE_FILES: usize = 1000;

/// One changed file of a repository.
#[derive(Debug, Clone, Default)]
pub struct FileUpdate {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    /// The file's contents (an unsaved buffer); `None`: read it from disk.
    pub contents: Option<Vec<u8>>,
    /// The file was deleted.
    pub deleted: bool,
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum FileOutcome {
    /// Parsed and written, with this many units.
    Indexed { units: u64 },
    /// Same contents as indexed: nothing to do.
    Unchanged,
    /// Removed from the index (deleted, gone from disk, or no longer indexable).
    Removed,
    /// Not indexed, and nothing was indexed for it.
    Skipped {
        reason: String,
        detail: Option<String>,
    },
}

/// One file's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileReport {
    pub path: String,
    #[serde(flatten)]
    pub outcome: FileOutcome,
}

/// What an update did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UpdateSummary {
    pub repository: String,
    pub files: Vec<FileReport>,
    pub units_written: u64,
    pub units_removed: u64,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    pub embed_seconds: f64,
    pub seconds: f64,
}

/// A root-relative path as given by a client, checked and normalized (`./a//b` → `a/b`).
pub(crate) fn clean_relative_path(path: &str) -> Result<String> {
    let bad = |why: &str| EngineError::InvalidArgument(format!("bad path {path:?}: {why}"));
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > 4096 || path.contains('\0') || path.contains('\\') {
        return Err(bad("too long, or a NUL or backslash in it"));
    }
    if path.starts_with('/') || Path::new(path).is_absolute() {
        return Err(bad("absolute; give it relative to the repository root"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("`..` is not allowed")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(bad("names no file"));
    }
    Ok(parts.join("/"))
}

enum Plan {
    /// Parsed; the file carries its content hash.
    Parse(ParsedFile),
    Remove,
    Skip(String, Option<String>),
    Unchanged,
}

impl Engine {
    /// Applies file changes to an indexed repository and commits them (see the module docs).
    /// Bad paths fail the whole update; a file that cannot be indexed is reported and skipped.
    pub fn update_files(
        &self,
        repository: &str,
        updates: &[FileUpdate],
        cancel: &CancellationToken,
    ) -> Result<UpdateSummary> {
        let started = Instant::now();
        if updates.len() > MAX_UPDATE_FILES {
            return Err(EngineError::InvalidArgument(format!(
                "{} files in one update; at most {MAX_UPDATE_FILES}",
                updates.len()
            )));
        }
        let mut cleaned = Vec::with_capacity(updates.len());
        for u in updates {
            cleaned.push(clean_relative_path(&u.path)?);
        }
        let info = self.repository(repository)?;
        let root = Path::new(&info.root);
        let (model, model_id) = self.write_model()?;
        // The entries of the named files only (one lookup each, not the repository's list).
        let reader = self.store.reader()?;
        let mut old: HashMap<String, FileEntry> = HashMap::new();
        for path in &cleaned {
            if !old.contains_key(path)
                && let Some(e) = reader.file(repository, path)?
            {
                old.insert(path.clone(), e);
            }
        }
        drop(reader);
        let walk = WalkOptions::default();
        let extract = ExtractOptions {
            graphs: model.as_ref().is_some_and(|m| m.embedder.graphs_enabled()),
            ..ExtractOptions::default()
        };

        // Later changes of the same path win.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, p) in cleaned.iter().enumerate() {
            last.insert(p.as_str(), i);
        }
        let mut plans: Vec<(String, Plan)> = Vec::new();
        for (i, (u, path)) in updates.iter().zip(&cleaned).enumerate() {
            if last.get(path.as_str()) != Some(&i) {
                continue;
            }
            cancel.check()?;
            let plan = self.plan(root, path, u, &walk, &extract, old.get(path.as_str()));
            plans.push((path.clone(), plan));
        }

        let mut summary = UpdateSummary {
            repository: repository.to_string(),
            ..UpdateSummary::default()
        };
        let mut removals = Vec::new();
        let mut parsed = Vec::new();
        let mut new_bytes: HashMap<String, u64> = HashMap::new();
        for (path, plan) in plans {
            let outcome = match plan {
                Plan::Parse(file) => {
                    let units = file.units.len() as u64;
                    new_bytes.insert(path.clone(), file.bytes as u64);
                    parsed.push(file);
                    FileOutcome::Indexed { units }
                }
                Plan::Unchanged => FileOutcome::Unchanged,
                Plan::Remove | Plan::Skip(..) if old.contains_key(&path) => {
                    removals.push(path.clone());
                    FileOutcome::Removed
                }
                Plan::Remove => FileOutcome::Removed,
                Plan::Skip(reason, detail) => FileOutcome::Skipped { reason, detail },
            };
            summary.files.push(FileReport { path, outcome });
        }
        if parsed.is_empty() && removals.is_empty() {
            summary.seconds = started.elapsed().as_secs_f64();
            return Ok(summary);
        }

        let writer = self.lease_writer()?;
        let counters = Counters::default();
        let no_events = |_: &IndexEvent| {};
        let mut batcher = Batcher {
            writer: &writer,
            repository: repository.to_string(),
            model: model.as_deref(),
            model_id,
            counters: &counters,
            on_event: &no_events,
            cancel,
            commit_every: usize::MAX,
            since_commit: 0,
            written: HashMap::new(),
            embed_seconds: 0.0,
            syntax_errors: 0,
        };
        batcher.flush(&mut parsed)?;
        writer.with(|w| w.delete_files(repository, &removals))?;

        // The repository's counts follow the files.
        let mut repo = self.repository(repository)?;
        let written = std::mem::take(&mut batcher.written);
        // Every file written or removed drops its old entry from the counts first.
        for path in written.keys().chain(&removals) {
            if let Some(e) = old.get(path) {
                repo.files = repo.files.saturating_sub(1);
                repo.units = repo.units.saturating_sub(u64::from(e.units));
                repo.bytes = repo.bytes.saturating_sub(e.bytes);
                summary.units_removed += u64::from(e.units);
            }
        }
        for (path, units) in &written {
            repo.files += 1;
            repo.units += units;
            repo.bytes += new_bytes.get(path).copied().unwrap_or(0);
        }
        writer.with(|w| w.put_repository(&repo))?;
        batcher.commit()?;
        let c = counters.snapshot();
        summary.units_written = c.units_written;
        summary.embeddings_computed = c.embeddings_computed;
        summary.embeddings_reused = c.embeddings_reused;
        summary.embed_seconds = batcher.embed_seconds;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    fn plan(
        &self,
        root: &Path,
        path: &str,
        update: &FileUpdate,
        walk: &WalkOptions,
        extract: &ExtractOptions,
        old: Option<&FileEntry>,
    ) -> Plan {
        if update.deleted {
            return Plan::Remove;
        }
        if let Some(reason) = path_skip_reason(root, path, walk) {
            return Plan::Skip(reason.as_str().to_string(), None);
        }
        // The index's own directory is never indexed.
        if root.join(path).starts_with(&self.dir) {
            return Plan::Skip(
                SkipReason::ExcludedDir.as_str().into(),
                Some("the index itself".into()),
            );
        }
        let bytes = match &update.contents {
            Some(b) => b.clone(),
            None => match read_inside(root, path, walk.max_file_size) {
                Ok(Some(b)) => b,
                Ok(None) => return Plan::Remove,
                Err((reason, detail)) => return Plan::Skip(reason, detail),
            },
        };
        if let Err((reason, detail)) = check_source(&bytes, walk) {
            return Plan::Skip(reason.as_str().to_string(), detail);
        }
        let hash = content_hash(&bytes);
        if old.is_some_and(|e| e.hash == hash) {
            return Plan::Unchanged;
        }
        let Some(lang) = Language::for_path(Path::new(path)) else {
            return Plan::Skip(SkipReason::UnsupportedLanguage.as_str().into(), None);
        };
        match extract_file(lang, path, &bytes, extract) {
            Ok(file) => Plan::Parse(ParsedFile {
                content_hash: hash,
                ..file
            }),
            Err(e) => Plan::Skip(SkipReason::ParseFailed.as_str().into(), Some(e.to_string())),
        }
    }
}

/// Reads `root/rel` without following a symbolic link anywhere on the way (a link could lead
/// out of the repository). `Ok(None)`: the file does not exist (deleted).
fn read_inside(
    root: &Path,
    rel: &str,
    max: u64,
) -> std::result::Result<Option<Vec<u8>>, (String, Option<String>)> {
    let mut here = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts {
        here.push(part);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err((
                    "symbolic link".into(),
                    Some("links are not followed".into()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err((SkipReason::Unreadable.as_str().into(), Some(e.to_string()))),
        }
    }
    let meta = std::fs::metadata(&here)
        .map_err(|e| (SkipReason::Unreadable.as_str().into(), Some(e.to_string())))?;
    if !meta.is_file() {
        return Err((
            SkipReason::Unreadable.as_str().into(),
            Some("not a regular file".into()),
        ));
    }
    if meta.len() > max {
        return Err((
            SkipReason::TooLarge.as_str().into(),
            Some(format!("{} bytes", meta.len())),
        ));
    }
    match std::fs::read(&here) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err((SkipReason::Unreadable.as_str().into(), Some(e.to_string()))),
    }
}

#[cfg(test)]
mod tests {
    use super::clean_relative_path;

    #[test]
    fn paths_are_checked_and_normalized() {
        assert_eq!(clean_relative_path("./src//a.py").unwrap(), "src/a.py");
        for bad in [
            "",
            "/etc/passwd",
            "../x.py",
            "a/../../b.py",
            "a\0b",
            ".",
            "a\\b",
        ] {
            assert!(clean_relative_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
