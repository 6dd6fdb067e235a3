//! Updating a few files of an indexed repository at once: an editor's unsaved buffers, a
//! file-system watcher's changes.
//!
//! ```text
//! paths (+ optional contents) → refuse bad paths (absolute, `..`, NUL, not canonical text)
//!   → open the repository's root once, held (only when a file is read from disk) → per file:
//!   deleted or gone from disk → delete (nothing indexed at it: a removed directory, delete
//!   every file indexed below it) │ path the walk would skip (hidden, ignored, no
//!   language) → skip, and drop what was indexed │ symlink on the way → skip (never
//!   followed) │ read through the held root or take the buffer → content checks → same
//!   hash as indexed → unchanged │ parse
//! → the index run's batch step (cached vectors, embed the misses) → repository counts → commit
//! ```
//!
//! Paths are the exact text of file names ([`gnn_coder_syntax::relpath`]): a name that is not
//! UTF-8 is written with `\xHH` escapes (and a backslash as `\\`), as the index and search
//! results show it; the text is decoded back to the name's bytes to open the file. Files are
//! read through a [`RepoRoot`] opened from the repository's recorded canonical root, so a
//! path component swapped for a symbolic link cannot make an update read outside the root.
//!
//! The result is what a full refresh would have made of the same bytes, so a later
//! `index_repository` finds these files unchanged (or re-reads them from disk when a buffer
//! was never saved). The commit makes them visible to the next search.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use gnn_coder_store::{CancellationToken, FileEntry};
use gnn_coder_syntax::{
    ExtractOptions, Language, ParsedFile, ReadError, RepoRoot, SkipReason, WalkOptions,
    check_source, decode_path, decode_rel_path, extract_file, path_skip_reason, read_skip,
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
    /// The file was deleted; when nothing is indexed at `path`, a directory was, and every
    /// file indexed below it goes too.
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

/// The paths of an update, checked and normalized, refusing more than [`MAX_UPDATE_FILES`]:
/// the one check of [`Engine::update_files`] and [`Engine::update_buffers`].
pub(crate) fn check_updates(updates: &[FileUpdate]) -> Result<Vec<String>> {
    if updates.len() > MAX_UPDATE_FILES {
        return Err(EngineError::InvalidArgument(format!(
            "{} files in one update; at most {MAX_UPDATE_FILES}",
            updates.len()
        )));
    }
    updates
        .iter()
        .map(|u| clean_relative_path(&u.path))
        .collect()
}

/// A root-relative path as given by a client, checked and normalized (`./a//b` → `a/b`).
/// It is the exact text of the name ([`gnn_coder_syntax::relpath`]): a backslash may only
/// start `\\` (a backslash) or `\xHH` (a byte that is not UTF-8).
pub(crate) fn clean_relative_path(path: &str) -> Result<String> {
    let bad = |why: &str| EngineError::InvalidArgument(format!("bad path {path:?}: {why}"));
    if path.is_empty() {
        return Err(bad("empty"));
    }
    if path.len() > 4096 || path.contains('\0') {
        return Err(bad("too long, or a NUL in it"));
    }
    if decode_rel_path(path).is_none() {
        return Err(bad(
            "a backslash may only start `\\\\` (a backslash) or `\\xHH` (a byte that is not UTF-8)",
        ));
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

pub(crate) enum Plan {
    /// Parsed; the file carries its content hash.
    Parse(ParsedFile),
    Remove,
    Skip(String, Option<String>),
    Unchanged,
}

/// The planned change of one named path.
pub(crate) struct Planned {
    /// Index of the update that named it (the last one naming it).
    pub(crate) at: usize,
    pub(crate) path: String,
    pub(crate) plan: Plan,
    /// Indexed files below the path, removed with it (the path was a directory).
    pub(crate) below: Vec<String>,
}

impl Engine {
    /// Applies file changes to an indexed repository and commits them (see the module docs).
    /// Bad paths fail the whole update; a file that cannot be indexed is reported and skipped.
    ///
    /// A path that no longer exists (`deleted`, or gone from disk) and has no file indexed at
    /// it is taken for a removed directory: every file indexed below it is removed too, each
    /// reported as [`FileOutcome::Removed`] after the path itself, unless a later update of
    /// the same call names that file.
    pub fn update_files(
        &self,
        repository: &str,
        updates: &[FileUpdate],
        cancel: &CancellationToken,
    ) -> Result<UpdateSummary> {
        let started = Instant::now();
        let cleaned = check_updates(updates)?;
        let info = self.repository(repository)?;
        let (model, model_id) = self.write_model()?;
        let graphs = model.as_ref().is_some_and(|m| m.embedder.graphs_enabled());
        let mut old = self.indexed_entries(repository, &cleaned)?;
        let from_disk = updates.iter().any(|u| !u.deleted && u.contents.is_none());
        let root = self.open_root(repository, &info.root, from_disk)?;
        let mut planned = self.plan_all(&root, updates, &cleaned, graphs, &old, cancel)?;
        self.expand_directories(repository, &mut planned, &cleaned, &mut old, cancel)?;

        let mut summary = UpdateSummary {
            repository: repository.to_string(),
            ..UpdateSummary::default()
        };
        let mut removals = Vec::new();
        let mut parsed = Vec::new();
        for Planned {
            path, plan, below, ..
        } in planned
        {
            let outcome = match plan {
                Plan::Parse(file) => {
                    let units = file.units.len() as u64;
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
            for path in below {
                removals.push(path.clone());
                summary.files.push(FileReport {
                    path,
                    outcome: FileOutcome::Removed,
                });
            }
        }
        if !parsed.is_empty() || !removals.is_empty() {
            let model = model.as_deref();
            self.write_update(
                &mut summary,
                model,
                model_id,
                parsed,
                &removals,
                &old,
                cancel,
            )?;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The index entries of the named files only (one lookup each, not the repository's list).
    pub(crate) fn indexed_entries(
        &self,
        repository: &str,
        paths: &[String],
    ) -> Result<HashMap<String, FileEntry>> {
        let reader = self.store.reader()?;
        let mut old: HashMap<String, FileEntry> = HashMap::new();
        for path in paths {
            if !old.contains_key(path)
                && let Some(e) = reader.file(repository, path)?
            {
                old.insert(path.clone(), e);
            }
        }
        Ok(old)
    }

    /// The repository's root for reading files: its recorded canonical root, opened once
    /// without following links ([`RepoRoot::open`]), when `read` (some file is read from
    /// disk). `held` is `None` when nothing is read or the root is gone (every file read from
    /// it is then gone too).
    pub(crate) fn open_root(&self, repository: &str, root: &str, read: bool) -> Result<UpdateRoot> {
        let path = decode_path(root).unwrap_or_else(|| PathBuf::from(root));
        if !read {
            return Ok(UpdateRoot { path, held: None });
        }
        match RepoRoot::open(&path) {
            Ok(held) => Ok(UpdateRoot {
                path,
                held: Some(held),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(UpdateRoot { path, held: None })
            }
            Err(e) => Err(EngineError::InvalidArgument(format!(
                "the root of {repository:?} cannot be opened ({e}); index it again"
            ))),
        }
    }

    /// Plans each named path once, as its last update says (later changes of a path win).
    pub(crate) fn plan_all(
        &self,
        root: &UpdateRoot,
        updates: &[FileUpdate],
        cleaned: &[String],
        graphs: bool,
        old: &HashMap<String, FileEntry>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Planned>> {
        let walk = WalkOptions::default();
        let extract = ExtractOptions {
            graphs,
            ..ExtractOptions::default()
        };
        let last = last_updates(cleaned);
        let mut planned = Vec::new();
        for (at, (u, path)) in updates.iter().zip(cleaned).enumerate() {
            if last.get(path.as_str()) != Some(&at) {
                continue;
            }
            cancel.check()?;
            planned.push(Planned {
                at,
                path: path.clone(),
                plan: self.plan(root, path, u, &walk, &extract, old.get(path.as_str())),
                below: Vec::new(),
            });
        }
        Ok(planned)
    }

    /// Fills [`Planned::below`] of removed paths with nothing indexed at them (removed
    /// directories) from the repository's file list, read once and only when there is one;
    /// their entries join `old`. A file named by a later update is left to that update; one
    /// named by an earlier update is removed (its own plan is dropped).
    fn expand_directories(
        &self,
        repository: &str,
        planned: &mut Vec<Planned>,
        cleaned: &[String],
        old: &mut HashMap<String, FileEntry>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let is_dir = |p: &Planned| matches!(p.plan, Plan::Remove) && !old.contains_key(&p.path);
        if !planned.iter().any(is_dir) {
            return Ok(());
        }
        let last = last_updates(cleaned);
        let files = self.store.reader()?.files(repository)?;
        let mut taken: HashMap<String, FileEntry> = HashMap::new();
        for p in planned.iter_mut().filter(|p| is_dir(p)) {
            cancel.check()?;
            let prefix = format!("{}/", p.path);
            for f in files.iter().filter(|f| f.path.starts_with(&prefix)) {
                let later = last.get(f.path.as_str()).is_some_and(|&at| at > p.at);
                if !later && !taken.contains_key(&f.path) {
                    p.below.push(f.path.clone());
                    taken.insert(f.path.clone(), f.clone());
                }
            }
            p.below.sort();
        }
        planned.retain(|p| !taken.contains_key(&p.path));
        old.extend(taken);
        Ok(())
    }

    /// Writes the parsed files through the index run's batch step, deletes `removals`, brings
    /// the repository's counts up to date and commits; fills the summary's counts.
    #[allow(clippy::too_many_arguments)]
    fn write_update(
        &self,
        summary: &mut UpdateSummary,
        model: Option<&crate::LoadedModel>,
        model_id: String,
        mut parsed: Vec<ParsedFile>,
        removals: &[String],
        old: &HashMap<String, FileEntry>,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let repository = summary.repository.clone();
        let new_bytes: HashMap<String, u64> = parsed
            .iter()
            .map(|f| (f.path.clone(), f.bytes as u64))
            .collect();
        let writer = self.lease_writer()?;
        let counters = Counters::default();
        let no_events = |_: &IndexEvent| {};
        let mut batcher = Batcher {
            writer: &writer,
            repository: repository.clone(),
            model,
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
        writer.with(|w| w.delete_files(&repository, removals))?;

        // The repository's counts follow the files.
        let mut repo = self.repository(&repository)?;
        let written = std::mem::take(&mut batcher.written);
        // Every file written or removed drops its old entry from the counts first.
        for path in written.keys().chain(removals) {
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
        Ok(())
    }

    fn plan(
        &self,
        root: &UpdateRoot,
        path: &str,
        update: &FileUpdate,
        walk: &WalkOptions,
        extract: &ExtractOptions,
        old: Option<&FileEntry>,
    ) -> Plan {
        if update.deleted {
            return Plan::Remove;
        }
        if let Some(reason) = path_skip_reason(&root.path, path, walk) {
            return Plan::Skip(reason.as_str().to_string(), None);
        }
        // Checked by `clean_relative_path`.
        let Some(rel) = decode_rel_path(path) else {
            return Plan::Skip(SkipReason::Unreadable.as_str().into(), None);
        };
        // The index's own directory is never indexed.
        if root.path.join(&rel).starts_with(&self.dir) {
            return Plan::Skip(
                SkipReason::ExcludedDir.as_str().into(),
                Some("the index itself".into()),
            );
        }
        let bytes = match &update.contents {
            Some(b) => b.clone(),
            None => match root.read(&rel, walk.max_file_size) {
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
            Err(e) => Plan::Skip(e.skip_reason().as_str().into(), Some(e.to_string())),
        }
    }
}

/// The index of the last update naming each path.
fn last_updates(cleaned: &[String]) -> HashMap<&str, usize> {
    cleaned
        .iter()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect()
}

/// The root of an update: its recorded path (for the path-based skip rules), and the handle
/// files are read through.
pub(crate) struct UpdateRoot {
    path: PathBuf,
    held: Option<RepoRoot>,
}

impl UpdateRoot {
    /// Reads `rel` through the held root, following no link anywhere on the way (a link could
    /// lead out of the repository). `Ok(None)`: the file does not exist (deleted).
    fn read(
        &self,
        rel: &Path,
        max: u64,
    ) -> std::result::Result<Option<Vec<u8>>, (String, Option<String>)> {
        let Some(held) = &self.held else {
            return Ok(None);
        };
        match held.read_file(rel, max) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::NotFound) => Ok(None),
            Err(ReadError::Symlink) => Err((
                "symbolic link".into(),
                Some("links are not followed".into()),
            )),
            Err(ReadError::NotAFile) => Err((
                SkipReason::Unreadable.as_str().into(),
                Some("not a regular file".into()),
            )),
            Err(e) => {
                let (reason, detail) = read_skip(e);
                Err((reason.as_str().into(), detail))
            }
        }
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
            "a\\x61.py",
            "a\\x2fb.py",
            "a\\x00.py",
        ] {
            assert!(clean_relative_path(bad).is_err(), "{bad:?} accepted");
        }
        // The exact text of names that are not UTF-8, or hold a backslash.
        assert_eq!(
            clean_relative_path("./d/bad\\xffname.py").unwrap(),
            "d/bad\\xffname.py"
        );
        assert_eq!(clean_relative_path("a\\\\b.py").unwrap(), "a\\\\b.py");
    }
}
