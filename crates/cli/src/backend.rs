//! The one seam between the commands and where an index lives.
//!
//! Every command that reads or writes an index works through a [`Backend`]: a local index
//! opened by the engine, or a running `gnn-coder serve` reached with `--server`. Both take and
//! return the engine's types (requests, hits, summaries, repositories), so a command is written
//! once and works either way; the wire is spoken only here and in the service's `convert`
//! module. Errors come back as messages for people (engine errors and gRPC statuses advised).
//!
//! A remote backend owns a small tokio runtime and blocks on it: the commands stay synchronous
//! and can call a backend from several threads (`jobs --parallel`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gnn_coder_engine::{
    CancellationToken, EmbeddingInfo, Engine, EngineOptions, FileUpdate, IndexEvent, IndexOptions,
    IndexSummary, PreparedSearch, RepoInfo, SearchHit, SearchRequest, SimilarRequest, StoreStats,
    ValidIndexOptions,
};
use gnn_coder_service::client::Client;
use gnn_coder_service::convert;
use gnn_coder_service::proto as pb;

use crate::DEFAULT_INDEX_DIR;
use crate::advice::{advise, advise_status};
use crate::flags::ModelFlags;
use crate::remote::ServerFlags;

/// Lines of snippet asked of a server per hit (what the local listing shows).
const SNIPPET_LINES: usize = 3;

/// One result with the lines shown under it.
#[derive(Debug, Clone)]
pub struct Found {
    pub hit: SearchHit,
    pub snippet: Vec<String>,
}

impl Found {
    fn local(hit: SearchHit) -> Found {
        let snippet = gnn_coder_engine::snippet(&hit.unit, SNIPPET_LINES);
        Found { hit, snippet }
    }

    fn remote(h: &pb::Hit) -> Found {
        let (hit, snippet) = convert::hit_from_wire(h);
        Found { hit, snippet }
    }
}

/// What an index holds, with its model.
#[derive(Debug, Clone)]
pub struct Stats {
    pub stats: StoreStats,
    pub embedding: Option<EmbeddingInfo>,
}

/// A running server, reached through one client.
pub struct Remote {
    runtime: tokio::runtime::Runtime,
    client: Client,
    url: String,
}

impl Remote {
    /// One unary call, run to its end on the backend's runtime; a status comes back advised.
    fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        Ok(self
            .runtime
            .block_on(call(self.client.clone()))
            .map_err(advise_status)?
            .into_inner())
    }
}

/// Where the index lives.
pub enum Backend {
    Local(Engine),
    Remote(Remote),
}

/// The index directory to read: `--index`, else the nearest `.gnn-coder` containing a manifest
/// in the current directory or one of its parents.
pub fn resolve_index_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut here: Option<&Path> = Some(&cwd);
    while let Some(dir) = here {
        let candidate = dir.join(DEFAULT_INDEX_DIR);
        if candidate.join(gnn_coder_engine::MANIFEST_FILE).is_file() {
            return Ok(candidate);
        }
        here = dir.parent();
    }
    bail!(
        "no index found: no {DEFAULT_INDEX_DIR}/ in {} or its parents; build one with \
         `gnn-coder index ROOT` or pass --index DIR",
        cwd.display()
    )
}

/// Refuses local-only flags given with `--server` (`what` names them for the message).
pub fn refuse_with_server(server: &ServerFlags, given: bool, what: &str) -> Result<()> {
    if server.server.is_some() && given {
        bail!("{what} apply to a local index only");
    }
    Ok(())
}

/// Prepares a local index on a thread of its own ([`Engine::warm`](gnn_coder_engine::Engine::warm):
/// the snapshot with its approximate index, its columns, the writer's key map), so that the
/// first request of a long-running front end (MCP, LSP) does not pay for it; at a million
/// units that is seconds. A failure is only reported: the first request tries again. A server
/// backend has nothing to prepare here.
pub fn warm_in_background(backend: &Arc<Backend>) -> Option<std::thread::JoinHandle<()>> {
    if !matches!(backend.as_ref(), Backend::Local(_)) {
        return None;
    }
    let backend = backend.clone();
    Some(std::thread::spawn(move || {
        if let Backend::Local(engine) = backend.as_ref()
            && let Err(e) = engine.warm()
        {
            eprintln!("gnn-coder: preparing the index failed ({e}); the first request tries again");
        }
    }))
}

impl Backend {
    /// The index to read: `--server URL`, else `--index DIR` or the nearest `.gnn-coder`.
    pub fn open(
        index: Option<PathBuf>,
        server: &ServerFlags,
        model: &ModelFlags,
    ) -> Result<Backend> {
        if server.server.is_some() {
            if index.is_some() {
                bail!("give either --index DIR or --server URL, not both");
            }
            if model.model_dir.is_some() || model.weights.is_some() {
                bail!(
                    "--model-dir and --weights apply to a local index; the server has its own model"
                );
            }
            return Backend::connect(server);
        }
        let location = server
            .location(index, || resolve_index_dir(None).map(Some))?
            .context("no index given")?;
        let engine = Engine::open_at(
            &location,
            EngineOptions {
                model: model.choice(),
                ..EngineOptions::default()
            },
        )
        .map_err(advise)
        .with_context(|| format!("cannot open the index at {location}"))?;
        Ok(Backend::Local(engine))
    }

    /// The index to write: `--server URL`, else `--store URL`, the local index at `dir`
    /// (`--index`), `$GNN_CODER_STORE` or the local index at `default_dir`, in that order
    /// (created when missing, deleted first with `rebuild`). A local index that had to be made
    /// lexical-only says so on stderr.
    pub fn open_for_writing(
        dir: Option<PathBuf>,
        default_dir: Option<PathBuf>,
        server: &ServerFlags,
        options: EngineOptions,
        rebuild: bool,
    ) -> Result<Backend> {
        if server.server.is_some() {
            return Backend::connect(server);
        }
        let Some(location) = server.location(dir, || Ok(default_dir))? else {
            bail!(
                "give --index DIR (the index the repositories go into), --store URL or \
                 --server URL"
            );
        };
        let engine = Engine::open_or_create_at(&location, options, rebuild)
            .map_err(advise)
            .with_context(|| format!("cannot open the index at {location}"))?;
        if let Some(w) = engine.model_warning() {
            eprintln!(
                "warning: {w}\nwarning: building a lexical-only index (fix or unset \
                 $GNN_CODER_MODEL_DIR / $GNN_CODER_WEIGHTS to use the model built in)"
            );
        } else if engine.could_have_vectors() {
            eprintln!(
                "note: the index at {location} is lexical-only (it was built without a model); a \
                 model is there now: add --rebuild to index with vectors (semantic and hybrid \
                 search)"
            );
        }
        Ok(Backend::Local(engine))
    }

    fn connect(server: &ServerFlags) -> Result<Backend> {
        // Several worker threads may block on the runtime at once (`jobs --parallel`).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let client = runtime.block_on(server.connect())?;
        Ok(Backend::Remote(Remote {
            runtime,
            client,
            url: server.url().to_string(),
        }))
    }

    /// Where the index is, for messages: its directory or the server's URL.
    pub fn location(&self) -> String {
        match self {
            Backend::Local(e) => e.dir().display().to_string(),
            Backend::Remote(r) => r.url.clone(),
        }
    }

    /// The model of the index's vectors, when a local index says so without a call.
    pub fn local_embedding(&self) -> Option<&EmbeddingInfo> {
        match self {
            Backend::Local(e) => e.embedding(),
            Backend::Remote(_) => None,
        }
    }

    /// Answers searches in input order. A local backend checks every request before it answers
    /// any (a bad one fails with `query ID: bad query` before any output) and embeds all their
    /// queries in one batch; a server answers a few at a time.
    pub fn search_all<I: std::fmt::Display + Send + 'static>(
        &self,
        requests: Vec<(I, SearchRequest)>,
        mut answer: impl FnMut(&I, Vec<Found>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Backend::Local(engine) => {
                let mut prepared: Vec<(I, PreparedSearch)> = Vec::with_capacity(requests.len());
                for (id, req) in requests {
                    let p = engine
                        .prepare(&req)
                        .map_err(advise)
                        .with_context(|| format!("query {id}: bad query"))?;
                    prepared.push((id, p));
                }
                let texts: Vec<&str> = prepared
                    .iter()
                    .filter(|(_, p)| p.needs_vector())
                    .map(|(_, p)| p.request().query.as_str())
                    .collect();
                let mut vectors = if texts.is_empty() {
                    Vec::new()
                } else {
                    engine.embed_queries(&texts).map_err(advise)?
                }
                .into_iter();
                for (id, p) in &prepared {
                    let vector = if p.needs_vector() {
                        vectors.next()
                    } else {
                        None
                    };
                    let hits = engine
                        .run_with_vector(p, vector.as_deref())
                        .map_err(advise)
                        .with_context(|| format!("query {id}: search failed"))?;
                    answer(id, hits.into_iter().map(Found::local).collect())?;
                }
                Ok(())
            }
            Backend::Remote(r) => r.runtime.block_on(async {
                // A few requests in flight; answers are written in input order.
                let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
                let mut tasks = Vec::with_capacity(requests.len());
                for (id, req) in requests {
                    let mut client = r.client.clone();
                    let wire = convert::search_request_to_wire(&req, SNIPPET_LINES as u32);
                    let limit = limit.clone();
                    tasks.push((
                        id,
                        tokio::spawn(async move {
                            let _permit = limit.acquire_owned().await;
                            client.search(wire).await
                        }),
                    ));
                }
                for (id, task) in tasks {
                    let resp = task
                        .await
                        .context("a search task failed")?
                        .map_err(advise_status)
                        .with_context(|| format!("query {id}: search failed"))?
                        .into_inner();
                    answer(&id, resp.hits.iter().map(Found::remote).collect())?;
                }
                Ok(())
            }),
        }
    }

    /// Answers one search.
    pub fn search(&self, request: SearchRequest) -> Result<Vec<Found>> {
        match self {
            Backend::Local(engine) => Ok(engine
                .search(&request)
                .map_err(advise)?
                .into_iter()
                .map(Found::local)
                .collect()),
            Backend::Remote(r) => {
                let wire = convert::search_request_to_wire(&request, SNIPPET_LINES as u32);
                let resp = r.call(|mut c| async move { c.search(wire).await })?;
                Ok(resp.hits.iter().map(Found::remote).collect())
            }
        }
    }

    /// A code→code search: the unit it started from (for a unit target) and the results.
    pub fn similar(&self, request: &SimilarRequest) -> Result<(Option<Found>, Vec<Found>)> {
        match self {
            Backend::Local(engine) => {
                let (origin, hits) = engine.similar(request).map_err(advise)?;
                Ok((
                    origin.map(Found::local),
                    hits.into_iter().map(Found::local).collect(),
                ))
            }
            Backend::Remote(r) => {
                let wire = convert::similar_request_to_wire(request, SNIPPET_LINES as u32);
                let resp = r.call(|mut c| async move { c.search_similar(wire).await })?;
                Ok((
                    resp.origin.as_ref().map(Found::remote),
                    resp.hits.iter().map(Found::remote).collect(),
                ))
            }
        }
    }

    /// The repositories of the index.
    pub fn repositories(&self) -> Result<Vec<RepoInfo>> {
        match self {
            Backend::Local(engine) => engine.repositories().map_err(advise),
            Backend::Remote(r) => {
                let resp = r.call(|mut c| async move {
                    c.list_repositories(pb::ListRepositoriesRequest {}).await
                })?;
                Ok(resp
                    .repositories
                    .iter()
                    .map(convert::repository_from_wire)
                    .collect())
            }
        }
    }

    /// Removes a repository and everything indexed from it.
    pub fn remove_repository(&self, name: &str) -> Result<RepoInfo> {
        match self {
            Backend::Local(engine) => engine
                .remove_repository(name, &CancellationToken::new())
                .map_err(advise),
            Backend::Remote(r) => {
                let request = pb::RemoveRepositoryRequest {
                    name: name.to_string(),
                };
                let resp = r.call(|mut c| async move { c.remove_repository(request).await })?;
                Ok(convert::repository_from_wire(&resp))
            }
        }
    }

    /// Makes files searchable as given (unsaved contents, or the file on disk, or a deletion);
    /// returns the units written.
    pub fn update_files(
        &self,
        repository: &str,
        updates: &[FileUpdate],
        cancel: &CancellationToken,
    ) -> Result<u64> {
        self.update(repository, updates, false, cancel)
    }

    /// An editor's unsaved buffers: searchable at once, written later (locally by
    /// [`Backend::flush_buffers`]; a server writes them itself a second after the last).
    pub fn update_buffers(&self, repository: &str, updates: &[FileUpdate]) -> Result<u64> {
        self.update(repository, updates, true, &CancellationToken::new())
    }

    fn update(
        &self,
        repository: &str,
        updates: &[FileUpdate],
        unsaved: bool,
        cancel: &CancellationToken,
    ) -> Result<u64> {
        match self {
            Backend::Local(engine) => {
                let s = if unsaved {
                    engine.update_buffers(repository, updates, cancel)
                } else {
                    engine.update_files(repository, updates, cancel)
                };
                Ok(s.map_err(advise)?.units_written)
            }
            Backend::Remote(r) => {
                let request = pb::UpdateFilesRequest {
                    repository: repository.to_string(),
                    changes: updates
                        .iter()
                        .map(|u| pb::FileChange {
                            path: u.path.clone(),
                            contents: u.contents.clone(),
                            deleted: u.deleted,
                        })
                        .collect(),
                    unsaved,
                };
                let resp = r.call(|mut c| async move { c.update_files(request).await })?;
                Ok(resp.units_written)
            }
        }
    }

    /// Writes the unsaved buffers of a local engine (a server writes its own).
    pub fn flush_buffers(&self) -> Result<usize> {
        match self {
            Backend::Local(engine) => Ok(engine
                .flush_buffers(&CancellationToken::new())
                .map_err(advise)?),
            Backend::Remote(_) => Ok(0),
        }
    }

    /// Counts over the last commit, and the model of the vectors.
    pub fn stats(&self) -> Result<Stats> {
        match self {
            Backend::Local(engine) => Ok(Stats {
                stats: engine.stats().map_err(advise)?,
                embedding: engine.embedding().cloned(),
            }),
            Backend::Remote(r) => {
                let s = r.call(|mut c| async move { c.get_stats(pb::GetStatsRequest {}).await })?;
                let (stats, embedding) = convert::stats_from_wire(&s);
                Ok(Stats { stats, embedding })
            }
        }
    }

    /// Indexes or refreshes one repository. `checked` is the options as the engine already
    /// validated them (a local command validates before it creates an index), so they are not
    /// checked twice; a server validates on its side. Events reach `on_event` as the run makes
    /// them (from worker threads for a local index); cancelling stops at the last commit. A
    /// busy server (too many index jobs) is asked again, waiting longer each time, up to a
    /// minute.
    pub fn index(
        &self,
        options: &IndexOptions,
        checked: Option<&ValidIndexOptions>,
        on_event: &(dyn Fn(&IndexEvent) + Sync),
        cancel: &CancellationToken,
    ) -> Result<IndexSummary> {
        match self {
            Backend::Local(engine) => match checked {
                Some(valid) => engine.index_repository(valid, on_event, cancel),
                None => engine.index_repository(options, on_event, cancel),
            }
            .map_err(advise),
            Backend::Remote(r) => r.runtime.block_on(remote_index(r, options, on_event)),
        }
    }
}

/// One index run through a server: its event stream turned back into the engine's events.
async fn remote_index(
    r: &Remote,
    options: &IndexOptions,
    on_event: &(dyn Fn(&IndexEvent) + Sync),
) -> Result<IndexSummary> {
    let root = crate::remote::server_path(&options.root)?;
    let request = convert::index_request_to_wire(options, root.to_string_lossy().into_owned(), 100);
    let mut client = r.client.clone();
    let mut wait = Duration::from_millis(200);
    let mut stream = loop {
        match client.index_repository(request.clone()).await {
            Ok(s) => break s.into_inner(),
            // Busy: retry. A full disk is not retried.
            Err(s)
                if s.code() == tonic::Code::ResourceExhausted
                    && !crate::advice::server_disk_full(&s)
                    && wait < Duration::from_secs(60) =>
            {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(s) => return Err(advise_status(s)),
        }
    };
    loop {
        let message = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => bail!("the server ended the stream without a summary"),
            Err(s) => return Err(advise_status(s)),
        };
        match convert::stream_item(message) {
            Some(convert::StreamItem::Event(e)) => on_event(&e),
            Some(convert::StreamItem::Summary(s)) => return Ok(s),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use gnn_coder_engine::{CancellationToken, Engine, EngineOptions, IndexOptions};

    use super::*;

    /// A local backend is prepared on a thread that finishes cleanly; a damaged index only
    /// reports it (the thread still ends without panicking).
    #[test]
    fn a_local_index_is_prepared_in_the_background() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join("a.py"),
            "def parse_config(path):\n    return path\n",
        )
        .unwrap();
        let idx = tmp.path().join("idx");
        let options = || EngineOptions {
            lexical_only: true,
            ..EngineOptions::default()
        };
        {
            let engine = Engine::open_or_create(&idx, options(), false).unwrap();
            let valid = IndexOptions::new(&root).validate().unwrap();
            engine
                .index_repository(&valid, &|_| {}, &CancellationToken::new())
                .unwrap();
        }
        let backend = Arc::new(Backend::Local(Engine::open(&idx, options()).unwrap()));
        let handle = warm_in_background(&backend).expect("a local backend is prepared");
        handle
            .join()
            .expect("the preparation ends without panicking");
        // Damaged after opening: the preparation reports and ends.
        let meta = idx.join("lexical").join("meta.json");
        std::fs::write(&meta, b"{ not json").unwrap();
        let handle = warm_in_background(&backend).expect("a local backend is prepared");
        handle
            .join()
            .expect("a failed preparation ends without panicking");
    }
}
