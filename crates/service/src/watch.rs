//! `serve --watch`: file-system changes of indexed roots become [`Engine::update_files`] calls.
//!
//! ```text
//! notify (inotify, recursive per root) → one thread: collect paths until 200 ms pass without
//! a new one (at most 2 s) → group by repository (the longest root containing the path)
//! → existing file: update from disk │ gone: delete it (the engine also deletes every indexed
//!   file below it, when it was a directory) → update_files per repository, in chunks
//! ```
//!
//! The engine applies the walk's rules to each path, so changes under `.git/`, `target/`,
//! ignored or hidden paths and the index itself are skipped there. A directory moved in whole
//! shows as one event; the files below it are picked up by the next `IndexRepository`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gnn_coder_engine::{CancellationToken, Engine, FileUpdate, MAX_UPDATE_FILES};
use notify::{RecursiveMode, Watcher as _};
use tracing::{debug, info, warn};

use crate::metrics::Metrics;

const QUIET: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(2);

/// A running watcher; stops when the shutdown token is cancelled.
pub struct Watcher {
    inner: Mutex<notify::RecommendedWatcher>,
    watched: Mutex<BTreeSet<PathBuf>>,
}

impl Watcher {
    pub fn start(
        engine: Arc<Engine>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> notify::Result<Watcher> {
        let (tx, rx) = channel::<notify::Result<notify::Event>>();
        let watcher = notify::recommended_watcher(move |e| {
            let _ = tx.send(e);
        })?;
        std::thread::Builder::new()
            .name("gnn-coder-watch".into())
            .spawn(move || run(&engine, &metrics, &rx, &stop))
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Watcher {
            inner: Mutex::new(watcher),
            watched: Mutex::new(BTreeSet::new()),
        })
    }

    /// Follows changes below `root` (idempotent).
    pub fn watch(&self, root: &Path) {
        let Ok(mut watched) = self.watched.lock() else {
            return;
        };
        if watched.contains(root) {
            return;
        }
        let Ok(mut w) = self.inner.lock() else {
            return;
        };
        match w.watch(root, RecursiveMode::Recursive) {
            Ok(()) => {
                info!(root = %root.display(), "watching for changes");
                watched.insert(root.to_path_buf());
            }
            Err(e) => warn!(root = %root.display(), error = %e, "cannot watch"),
        }
    }

    pub fn unwatch(&self, root: &Path) {
        if let (Ok(mut watched), Ok(mut w)) = (self.watched.lock(), self.inner.lock())
            && watched.remove(root)
        {
            let _ = w.unwatch(root);
        }
    }
}

fn run(
    engine: &Engine,
    metrics: &Metrics,
    rx: &Receiver<notify::Result<notify::Event>>,
    stop: &CancellationToken,
) {
    loop {
        if stop.is_cancelled() {
            return;
        }
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(e) => collect(e, &mut paths),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let first = Instant::now();
        while first.elapsed() < MAX_WAIT {
            match rx.recv_timeout(QUIET) {
                Ok(e) => collect(e, &mut paths),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        if !paths.is_empty() {
            apply(engine, metrics, &paths, stop);
        }
    }
}

fn collect(event: notify::Result<notify::Event>, paths: &mut BTreeSet<PathBuf>) {
    match event {
        Ok(e) => {
            if matches!(e.kind, notify::EventKind::Access(_)) {
                return;
            }
            paths.extend(e.paths);
        }
        Err(e) => warn!(error = %e, "file watch error"),
    }
}

/// Applies a set of changed paths to the repositories containing them.
fn apply(engine: &Engine, metrics: &Metrics, paths: &BTreeSet<PathBuf>, stop: &CancellationToken) {
    let repos = match engine.repositories() {
        Ok(r) => r,
        Err(e) => {
            warn!(error = %e, "cannot list repositories");
            return;
        }
    };
    let mut per_repo: BTreeMap<String, Vec<FileUpdate>> = BTreeMap::new();
    for path in paths {
        // The repository with the longest root containing the path.
        let Some((repo, root)) = repos
            .iter()
            .map(|r| (r, crate::server::repo_root_path(&r.root)))
            .filter(|(_, root)| path.starts_with(root))
            .max_by_key(|(r, _)| r.root.len())
        else {
            continue;
        };
        let Ok(rel) = path.strip_prefix(&root) else {
            continue;
        };
        // The exact text of the name, as the walk records it.
        let rel = gnn_coder_syntax::encode_rel_path(rel);
        if rel.is_empty() {
            continue;
        }
        let updates = per_repo.entry(repo.name.clone()).or_default();
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => updates.push(FileUpdate {
                path: rel,
                ..FileUpdate::default()
            }),
            // Gone: the file, or a directory (the engine removes what was indexed below it).
            Err(_) => updates.push(FileUpdate {
                path: rel,
                deleted: true,
                ..FileUpdate::default()
            }),
        }
    }
    for (repo, updates) in per_repo {
        for chunk in updates.chunks(MAX_UPDATE_FILES) {
            match engine.update_files(&repo, chunk, stop) {
                Ok(s) => {
                    metrics.embedded(s.embeddings_computed, s.embed_seconds);
                    metrics.indexed(s.units_written);
                    let changed = s
                        .files
                        .iter()
                        .filter(|f| {
                            !matches!(
                                f.outcome,
                                gnn_coder_engine::FileOutcome::Unchanged
                                    | gnn_coder_engine::FileOutcome::Skipped { .. }
                            )
                        })
                        .count();
                    if changed > 0 {
                        info!(repository = %repo, files = changed, units = s.units_written, seconds = s.seconds, "applied file changes");
                    } else {
                        debug!(repository = %repo, "file events without indexable changes");
                    }
                }
                Err(e) => warn!(repository = %repo, error = %e, "cannot apply file changes"),
            }
        }
    }
}
