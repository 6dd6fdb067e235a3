//! The `CodeSearch` implementation and the server around it (see the crate docs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gnn_coder_engine::{
    CancellationToken, Engine, EngineError, EngineOptions, FileOutcome, FileUpdate, IndexEvent,
    IndexOptions, ValidIndexOptions,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use crate::auth::Tokens;
use crate::convert;
use crate::metrics::{Metrics, Sizes};
use crate::proto as pb;
use crate::proto::code_search_server::{CodeSearch, CodeSearchServer};
use crate::watch::Watcher;
use crate::{Limits, TlsFiles};

/// Largest `max_file_size` a client may ask for: every parsing thread holds one file.
const MAX_FILE_SIZE: u64 = 16 << 20;

/// What `gnn-coder serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The index: a directory or a PostgreSQL store (replicas may share one).
    pub location: gnn_coder_engine::StoreLocation,
    pub engine: EngineOptions,
    pub listen: SocketAddr,
    /// Roots under which `IndexRepository` may index (and `UpdateFiles` may read).
    pub allow_roots: Vec<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub tokens: Tokens,
    pub limits: Limits,
    pub metrics_listen: Option<SocketAddr>,
    /// Follow file-system changes of indexed roots.
    pub watch: bool,
    /// Listen on a non-loopback address without tokens.
    pub allow_unauthenticated_remote: bool,
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Config(String),
    /// A non-loopback address without tokens.
    #[error("{0} is reachable from other machines, and no --auth-token-file is given")]
    Unprotected(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(String),
}

struct State {
    engine: Arc<Engine>,
    limits: Limits,
    allowed: Vec<PathBuf>,
    requests: Arc<Semaphore>,
    index_jobs: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// Cancelled at shutdown: index jobs stop at their last commit.
    shutdown: CancellationToken,
    watcher: Option<Watcher>,
    /// Searches running per session, for search as you type.
    sessions: Arc<Sessions>,
    /// Bumped by every unsaved-buffer update: a flush waits for a quiet second.
    buffers: Arc<std::sync::atomic::AtomicU64>,
}

/// How long after the last unsaved-buffer update the buffers are written.
const FLUSH_BUFFERS_AFTER: Duration = Duration::from_secs(1);

/// Longest `SearchRequest.session`, in bytes.
const MAX_SESSION_BYTES: usize = 128;

/// The search running in each session (`SearchRequest.session`): a new one cancels the one it
/// supersedes, so an editor sending a request per keystroke keeps one search busy, not one per
/// key. Entries live while their search runs.
#[derive(Default)]
struct Sessions {
    running: Mutex<HashMap<String, (u64, CancellationToken)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Sessions {
    /// Registers `cancel` as the search of session `key`, cancelling the one it replaces.
    fn begin(self: &Arc<Self>, key: String, cancel: CancellationToken) -> SessionEntry {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, previous)) = running.insert(key.clone(), (id, cancel)) {
            previous.cancel();
        }
        SessionEntry {
            sessions: self.clone(),
            key,
            id,
        }
    }
}

/// A search's place in [`Sessions`], removed when the search ends (unless superseded).
struct SessionEntry {
    sessions: Arc<Sessions>,
    key: String,
    id: u64,
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        let mut running = self
            .sessions
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if running.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            running.remove(&self.key);
        }
    }
}

/// The key of a request's session: its bearer credential (hashed) and the session name, so
/// callers holding different tokens cannot cancel each other's searches.
fn session_key<T>(request: &Request<T>, session: &str) -> Result<Option<String>, Status> {
    if session.is_empty() {
        return Ok(None);
    }
    if session.len() > MAX_SESSION_BYTES {
        return Err(Status::invalid_argument(format!(
            "the session is {} bytes; the limit is {MAX_SESSION_BYTES}",
            session.len()
        )));
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes())
        .hash(&mut h);
    Ok(Some(format!("{:016x}/{session}", h.finish())))
}

/// The `CodeSearch` service.
#[derive(Clone)]
struct Service {
    state: Arc<State>,
}

/// Cancels a token when dropped: a handler future dropped because the client hung up or its
/// deadline passed stops the work it started.
struct CancelOnDrop(CancellationToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Why blocking work failed: the engine said so, or a check on the way.
enum Failure {
    Engine(EngineError),
    Status(Status),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure::Status(s)
    }
}

/// Records one request in the metrics when it ends (a dropped request counts as CANCELLED).
struct Observed {
    metrics: Arc<Metrics>,
    method: &'static str,
    started: Instant,
    code: Option<Code>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.metrics.in_flight(-1);
        self.metrics.request(
            self.method,
            self.code.unwrap_or(Code::Cancelled),
            self.started.elapsed(),
        );
    }
}

fn exhausted(what: &str, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "the server is at its limit of {limit} concurrent {what}; retry later"
    ))
}

impl Service {
    fn observe(&self, method: &'static str) -> Observed {
        self.state.metrics.in_flight(1);
        Observed {
            metrics: self.state.metrics.clone(),
            method,
            started: Instant::now(),
            code: None,
        }
    }

    fn request_permit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.state
            .requests
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                self.state.metrics.rejected("requests");
                exhausted("requests", self.state.limits.max_concurrent_requests)
            })
    }

    /// Runs `work` (a unary call) under a request permit, observed.
    async fn unary<T>(
        &self,
        method: &'static str,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let mut obs = self.observe(method);
        let result = match self.request_permit() {
            Ok(_permit) => work.await,
            Err(s) => Err(s),
        };
        obs.code = Some(match &result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        });
        result.map(Response::new).map_err(convert::bounded)
    }

    /// Runs engine work on a blocking thread with a token that is cancelled if this future is
    /// dropped or the server shuts down.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Engine, &CancellationToken) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Status> {
        self.blocking_in(None, work).await
    }

    /// [`Service::blocking`] as the running search of a session, cancelling the one before.
    async fn blocking_in<T: Send + 'static>(
        &self,
        session: Option<String>,
        work: impl FnOnce(&Engine, &CancellationToken) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Status> {
        let cancel = self.state.shutdown.child_token();
        let _guard = CancelOnDrop(cancel.clone());
        let _entry = session.map(|key| self.state.sessions.begin(key, cancel.clone()));
        let engine = self.state.engine.clone();
        match tokio::task::spawn_blocking(move || work(&engine, &cancel)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Failure::Engine(e))) => Err(convert::status(&e)),
            Ok(Err(Failure::Status(s))) => Err(s),
            Err(e) => Err(Status::internal(format!("the request failed: {e}"))),
        }
    }

    /// Writes the unsaved buffers once no buffer update came for [`FLUSH_BUFFERS_AFTER`] (the
    /// last update's task does it; earlier ones see a newer update and leave it).
    fn flush_buffers_later(&self) {
        use std::sync::atomic::Ordering;
        let mine = self.state.buffers.fetch_add(1, Ordering::SeqCst) + 1;
        let state = self.state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_BUFFERS_AFTER).await;
            if state.buffers.load(Ordering::SeqCst) != mine {
                return;
            }
            let engine = state.engine.clone();
            let cancel = state.shutdown.child_token();
            match tokio::task::spawn_blocking(move || engine.flush_buffers(&cancel)).await {
                Ok(Ok(n)) => tracing::debug!("wrote {n} unsaved buffers"),
                Ok(Err(e)) => warn!("writing unsaved buffers failed (kept for the next try): {e}"),
                Err(e) => warn!("writing unsaved buffers failed: {e}"),
            }
        });
    }

    fn allowed(&self, path: &Path) -> bool {
        self.state.allowed.iter().any(|a| path.starts_with(a))
    }

    /// A root a client asked to index, as a path: absolute, without `..`, on a server that
    /// indexes some roots. The engine resolves it ([`Service::index_options`]).
    fn check_root<'r>(&self, root: &'r str) -> Result<&'r Path, Status> {
        if root.is_empty() {
            return Err(Status::invalid_argument("the root is empty"));
        }
        if root.contains('\0') || root.len() > 4096 {
            return Err(Status::invalid_argument("the root is not a usable path"));
        }
        let p = Path::new(root);
        if !p.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "the root {root:?} is relative; give an absolute path on the server"
            )));
        }
        if p.components().any(|c| c == Component::ParentDir) {
            return Err(Status::invalid_argument(format!(
                "the root {root:?} contains `..`"
            )));
        }
        if self.state.allowed.is_empty() {
            return Err(Status::permission_denied(
                "this server indexes no roots (it was started without --allow-root)",
            ));
        }
        Ok(p)
    }

    /// The options of an index request, validated once by the engine (which resolves the root
    /// once and holds it open: the run reads every file through that handle) and checked
    /// against the allowed roots on the path the handle was opened from, never resolved again.
    /// Nothing is said about a path outside them, not even whether it exists.
    fn index_options(&self, r: &pb::IndexRepositoryRequest) -> Result<ValidIndexOptions, Status> {
        let p = self.check_root(&r.root)?;
        let mut opts = IndexOptions::new(p);
        if !r.name.is_empty() {
            opts.name = Some(r.name.clone());
        }
        if r.max_file_size > MAX_FILE_SIZE {
            return Err(Status::invalid_argument(format!(
                "max_file_size {} is over this server's limit of {MAX_FILE_SIZE} bytes",
                r.max_file_size
            )));
        }
        if r.max_file_size > 0 {
            opts.max_file_size = r.max_file_size;
        }
        opts.languages = r.languages.clone();
        opts.exclude = r.exclude_globs.clone();
        if r.commit_every > 0 {
            opts.commit_every = r.commit_every as usize;
        }
        let outside = || {
            Status::permission_denied(format!(
                "{} is outside the roots this server may index",
                r.root
            ))
        };
        let valid = opts.validate().map_err(|e| {
            // Only a failure's path resolves again, to tell an escape from a real error.
            let escapes = p.canonicalize().is_ok_and(|c| !self.allowed(&c));
            if !self.allowed(p) || escapes {
                outside()
            } else {
                convert::status(&e)
            }
        })?;
        if !self.allowed(valid.root()) {
            return Err(if valid.root() != p {
                Status::permission_denied(format!(
                    "{} resolves to {}, outside the roots this server may index",
                    r.root,
                    valid.root().display()
                ))
            } else {
                outside()
            });
        }
        Ok(valid)
    }

    async fn sizes(&self) -> Sizes {
        let engine = self.state.engine.clone();
        tokio::task::spawn_blocking(move || engine.stats())
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| Sizes {
                repositories: s.repositories,
                files: s.files,
                units: s.units,
                vectors: s.vectors,
                bytes_on_disk: s.bytes_on_disk,
            })
            .unwrap_or_default()
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::IndexEvent, Status>> + Send>>;

#[tonic::async_trait]
impl CodeSearch for Service {
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.unary("Search", async {
            let session = session_key(&request, &request.get_ref().session)?;
            let r = request.into_inner();
            let req = convert::search_request(&r)?;
            let lines = convert::snippet_lines(r.snippet_lines)?;
            self.blocking_in(session, move |engine, cancel| {
                let prepared = engine.prepare(&req)?;
                let hits = engine.run_prepared_until(&prepared, cancel)?;
                Ok(pb::SearchResponse {
                    hits: hits.iter().map(|h| convert::hit(h, lines)).collect(),
                    mode: convert::mode_to_wire(prepared.mode()) as i32,
                    origin: None,
                })
            })
            .await
        })
        .await
    }

    async fn search_similar(
        &self,
        request: Request<pb::SimilarRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.unary("SearchSimilar", async {
            let r = request.into_inner();
            let req = convert::similar_request(&r)?;
            let lines = convert::snippet_lines(r.snippet_lines)?;
            self.blocking(move |engine, cancel| {
                let (origin, hits) = engine.similar_until(&req, cancel)?;
                Ok(pb::SearchResponse {
                    hits: hits.iter().map(|h| convert::hit(h, lines)).collect(),
                    mode: pb::Mode::Semantic as i32,
                    origin: origin.as_ref().map(|h| convert::hit(h, lines)),
                })
            })
            .await
        })
        .await
    }

    type IndexRepositoryStream = EventStream;

    async fn index_repository(
        &self,
        request: Request<pb::IndexRepositoryRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let mut obs = self.observe("IndexRepository");
        let state = self.state.clone();
        let permit = match state.index_jobs.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                state.metrics.rejected("index_jobs");
                let s = exhausted("index jobs", state.limits.max_index_jobs);
                obs.code = Some(s.code());
                return Err(s);
            }
        };
        let r = request.into_inner();
        let opts = match self.index_options(&r) {
            Ok(o) => o,
            Err(s) => {
                obs.code = Some(s.code());
                return Err(convert::bounded(s));
            }
        };
        let interval = Duration::from_millis(match r.progress_interval_ms {
            0 => 200,
            n => u64::from(n),
        });
        let (tx, rx) = mpsc::channel::<Result<pb::IndexEvent, Status>>(256);
        let cancel = state.shutdown.child_token();
        // A client that hangs up cancels the run.
        let hangup = {
            let tx = tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                tx.closed().await;
                cancel.cancel();
            })
        };
        info!(root = %opts.root().display(), name = %opts.name(), "index job started");
        tokio::task::spawn_blocking(move || {
            state.metrics.index_jobs(1);
            let last: Mutex<Option<Instant>> = Mutex::new(None);
            let on_event = |e: &IndexEvent| match e {
                IndexEvent::Progress(_) => {
                    let due = match last.lock() {
                        Ok(mut l) => {
                            let due = l.is_none_or(|t| t.elapsed() >= interval);
                            if due {
                                *l = Some(Instant::now());
                            }
                            due
                        }
                        Err(_) => false,
                    };
                    // Progress is dropped, never waited for, when the client reads slowly.
                    if due {
                        let _ = tx.try_send(Ok(convert::event(e)));
                    }
                }
                _ => {
                    let _ = tx.blocking_send(Ok(convert::event(e)));
                }
            };
            let result = state.engine.index_repository(&opts, &on_event, &cancel);
            // The job's slot is free before its last message reaches the client, so a client
            // that starts the next job on seeing it is not refused.
            drop(permit);
            state.metrics.index_jobs(-1);
            let code = match result {
                Ok(summary) => {
                    state
                        .metrics
                        .embedded(summary.embeddings_computed, summary.embed_seconds);
                    state.metrics.indexed(summary.units_written);
                    if let Some(w) = &state.watcher {
                        w.watch(&repo_root_path(&summary.root));
                    }
                    info!(
                        repository = %summary.repository,
                        files = summary.files,
                        units = summary.units,
                        seconds = summary.seconds,
                        "index job finished"
                    );
                    let _ = tx.blocking_send(Ok(convert::summary(&summary)));
                    Code::Ok
                }
                Err(e) => {
                    let status = if state.shutdown.is_cancelled()
                        && e.kind() == gnn_coder_engine::ErrorKind::Cancelled
                    {
                        Status::unavailable(
                            "the server is shutting down; the run stopped at its last commit",
                        )
                    } else {
                        convert::status(&e)
                    };
                    warn!(error = %e, "index job failed");
                    let code = status.code();
                    let _ = tx.blocking_send(Err(convert::bounded(status)));
                    code
                }
            };
            hangup.abort();
            obs.code = Some(code);
            drop(obs);
        });
        // Errors before the run starts (a busy repository, a locked index, a missing model)
        // are the call's status, not a message of the stream.
        let mut rx = rx;
        match rx.recv().await {
            Some(Ok(first)) => {
                let rest = ReceiverStream::new(rx);
                Ok(Response::new(Box::pin(
                    tokio_stream::once(Ok(first)).chain(rest),
                )))
            }
            Some(Err(status)) => Err(status),
            None => Err(Status::internal("the index job ended without a word")),
        }
    }

    async fn update_files(
        &self,
        request: Request<pb::UpdateFilesRequest>,
    ) -> Result<Response<pb::UpdateFilesResponse>, Status> {
        self.unary("UpdateFiles", async {
            let r = request.into_inner();
            if r.repository.is_empty() {
                return Err(Status::invalid_argument("the repository is empty"));
            }
            if r.changes.is_empty() {
                return Err(Status::invalid_argument("no changes"));
            }
            let unsaved = r.unsaved;
            // Buffers never read the disk (a change without contents closes its buffer).
            let from_disk =
                !unsaved && r.changes.iter().any(|c| c.contents.is_none() && !c.deleted);
            let updates: Vec<FileUpdate> = r
                .changes
                .into_iter()
                .map(|c| FileUpdate {
                    path: c.path,
                    contents: c.contents,
                    deleted: c.deleted,
                })
                .collect();
            let name = r.repository;
            let allowed = self.state.allowed.clone();
            let metrics = self.state.metrics.clone();
            let response = self.blocking(move |engine, cancel| {
                if from_disk {
                    // Reading files needs the same permission as indexing the root.
                    // The engine opens the recorded canonical root without following links,
                    // so the check is on the path it reads from.
                    let info = engine.repository(&name)?;
                    let root = repo_root_path(&info.root);
                    if !allowed.iter().any(|a| root.starts_with(a)) {
                        return Err(Status::permission_denied(format!(
                            "the root of {name:?} ({}) is outside the roots this server may read; send the contents",
                            info.root
                        ))
                        .into());
                    }
                }
                let s = if unsaved {
                    engine.update_buffers(&name, &updates, cancel)?
                } else {
                    engine.update_files(&name, &updates, cancel)?
                };
                metrics.embedded(s.embeddings_computed, s.embed_seconds);
                metrics.indexed(s.units_written);
                Ok(pb::UpdateFilesResponse {
                    files: s
                        .files
                        .iter()
                        .map(|f| {
                            let (outcome, units, reason, detail) = match &f.outcome {
                                FileOutcome::Indexed { units } => ("indexed", *units, "", None),
                                FileOutcome::Unchanged => ("unchanged", 0, "", None),
                                FileOutcome::Removed => ("removed", 0, "", None),
                                FileOutcome::Skipped { reason, detail } => {
                                    ("skipped", 0, reason.as_str(), detail.clone())
                                }
                            };
                            pb::FileResult {
                                path: f.path.clone(),
                                outcome: outcome.into(),
                                units,
                                reason: reason.into(),
                                detail: detail.unwrap_or_default(),
                            }
                        })
                        .collect(),
                    units_written: s.units_written,
                    units_removed: s.units_removed,
                    embeddings_computed: s.embeddings_computed,
                    embeddings_reused: s.embeddings_reused,
                    seconds: s.seconds,
                })
            })
            .await;
            if unsaved && response.is_ok() {
                self.flush_buffers_later();
            }
            response
        })
        .await
    }

    async fn list_repositories(
        &self,
        _request: Request<pb::ListRepositoriesRequest>,
    ) -> Result<Response<pb::ListRepositoriesResponse>, Status> {
        self.unary("ListRepositories", async {
            self.blocking(|engine, _| {
                Ok(pb::ListRepositoriesResponse {
                    repositories: engine
                        .repositories()?
                        .iter()
                        .map(convert::repository)
                        .collect(),
                })
            })
            .await
        })
        .await
    }

    async fn get_repository(
        &self,
        request: Request<pb::GetRepositoryRequest>,
    ) -> Result<Response<pb::Repository>, Status> {
        self.unary("GetRepository", async {
            let name = request.into_inner().name;
            if name.is_empty() {
                return Err(Status::invalid_argument("the name is empty"));
            }
            self.blocking(move |engine, _| Ok(convert::repository(&engine.repository(&name)?)))
                .await
        })
        .await
    }

    async fn remove_repository(
        &self,
        request: Request<pb::RemoveRepositoryRequest>,
    ) -> Result<Response<pb::Repository>, Status> {
        self.unary("RemoveRepository", async {
            let name = request.into_inner().name;
            if name.is_empty() {
                return Err(Status::invalid_argument("the name is empty"));
            }
            let state = self.state.clone();
            self.blocking(move |engine, cancel| {
                let info = engine.remove_repository(&name, cancel)?;
                if let Some(w) = &state.watcher {
                    w.unwatch(&repo_root_path(&info.root));
                }
                info!(repository = %name, "repository removed");
                Ok(convert::repository(&info))
            })
            .await
        })
        .await
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        self.unary("GetStats", async {
            self.blocking(|engine, _| Ok(convert::stats(&engine.stats()?, engine.embedding())))
                .await
        })
        .await
    }
}

/// Runs the server until `shutdown` resolves (or SIGTERM / Ctrl-C when `signals`), then drains.
/// `ready` is called with the bound address once the server accepts connections.
pub async fn serve(
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let allowed = check_config(&config)?;
    let tls = tls_config(&config)?;
    let engine = open_engine(&config).await?;
    // The snapshot, its columns and the writer's key map are built while the server already
    // listens: a search or update arriving meanwhile waits for the part it needs, and one
    // arriving later pays nothing for them.
    let warming = engine.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match warming.warm() {
            Ok(()) => info!(
                seconds = started.elapsed().as_secs_f64(),
                "index ready for searches and updates"
            ),
            Err(e) => {
                warn!(error = %e, "preparing the index failed; the first request will try again")
            }
        }
    });
    let metrics = Arc::new(Metrics::default());
    let shutdown_token = CancellationToken::new();
    let watcher = start_watcher(&config, &engine, &allowed, &metrics, &shutdown_token)?;
    let limits = config.limits.clone();
    let state = Arc::new(State {
        engine,
        limits: limits.clone(),
        allowed,
        requests: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        index_jobs: Arc::new(Semaphore::new(limits.max_index_jobs.max(1))),
        metrics: metrics.clone(),
        shutdown: shutdown_token.clone(),
        watcher,
        sessions: Arc::default(),
        buffers: Arc::default(),
    });
    let service = Service {
        state: state.clone(),
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let metrics_stop = CancellationToken::new();
    if let Some(m) = config.metrics_listen {
        spawn_metrics(m, &service, &metrics_stop).await?;
    }
    info!(
        address = %addr,
        tls = config.tls.is_some(),
        tokens = config.tokens.enabled(),
        index = %config.location,
        "serving gnn_coder.v1.CodeSearch"
    );
    if config.tokens.enabled() && config.tls.is_none() && !crate::is_loopback(&addr) {
        warn!("bearer tokens travel in clear text without --tls-cert/--tls-key");
    }
    ready(addr);
    let result = run_server(&config, service, listener, tls, &shutdown_token, shutdown).await;
    metrics_stop.cancel();
    // Unsaved buffers are written before the server goes (nothing an editor sent is lost to
    // a clean shutdown).
    {
        let engine = state.engine.clone();
        match tokio::task::spawn_blocking(move || engine.flush_buffers(&CancellationToken::new()))
            .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!("wrote {n} unsaved buffers"),
            Ok(Err(e)) => warn!("unsaved buffers were not written: {e}"),
            Err(e) => warn!("unsaved buffers were not written: {e}"),
        }
    }
    shutdown_token.cancel();
    // Index jobs have been cancelled; each stops at a commit and hands its permit back.
    let drain_timeout = limits.drain_timeout;
    let jobs = limits.max_index_jobs.max(1) as u32;
    if tokio::time::timeout(drain_timeout, state.index_jobs.acquire_many(jobs))
        .await
        .is_err()
    {
        warn!("an index job did not stop within {drain_timeout:?}");
    }
    info!("stopped");
    result
}

/// Refuses an unprotected non-loopback address; resolves the allowed roots (each must be a
/// directory), once.
fn check_config(config: &ServeConfig) -> Result<Vec<PathBuf>, ServeError> {
    if !crate::is_loopback(&config.listen)
        && !config.tokens.enabled()
        && !config.allow_unauthenticated_remote
    {
        return Err(ServeError::Unprotected(config.listen));
    }
    let mut allowed = Vec::new();
    for root in &config.allow_roots {
        let canon = root.canonicalize().map_err(|source| ServeError::Read {
            path: root.clone(),
            source,
        })?;
        if !canon.is_dir() {
            return Err(ServeError::Config(format!(
                "--allow-root {} is not a directory",
                root.display()
            )));
        }
        allowed.push(canon);
    }
    Ok(allowed)
}

/// The TLS identity read from its PEM files, when TLS is on.
fn tls_config(config: &ServeConfig) -> Result<Option<ServerTlsConfig>, ServeError> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| ServeError::Read {
            path: p.clone(),
            source,
        })
    };
    Ok(Some(ServerTlsConfig::new().identity(Identity::from_pem(
        read(&t.cert)?,
        read(&t.key)?,
    ))))
}

/// Opens (or creates) the index with the server's request limits, and loads the model now so
/// the first search does not pay for it.
async fn open_engine(config: &ServeConfig) -> Result<Arc<Engine>, ServeError> {
    let location = config.location.clone();
    // The engine checks every request against the server's limits: one limit, one message.
    let mut options = config.engine.clone();
    options.limits = gnn_coder_engine::RequestLimits {
        max_query_bytes: config.limits.max_query_bytes,
        max_top_k: config.limits.max_top_k,
    };
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, EngineError> {
        let engine = Engine::open_or_create_at(&location, options, false)?;
        if engine.embedding().is_some()
            && let Err(e) = engine.model()
        {
            warn!(error = %e, "the model could not be loaded; only lexical search will work");
        }
        Ok(engine)
    })
    .await
    .map_err(|e| ServeError::Config(format!("opening the index failed: {e}")))??;
    if let Some(w) = engine.model_warning() {
        warn!("{w}; the index is lexical-only");
    }
    Ok(Arc::new(engine))
}

/// With `--watch`: a watcher over every indexed repository below an allowed root.
fn start_watcher(
    config: &ServeConfig,
    engine: &Arc<Engine>,
    allowed: &[PathBuf],
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> Result<Option<Watcher>, ServeError> {
    if !config.watch {
        return Ok(None);
    }
    let w = Watcher::start(engine.clone(), metrics.clone(), shutdown.clone())
        .map_err(|e| ServeError::Config(format!("cannot watch files: {e}")))?;
    for repo in engine.repositories()? {
        let root = repo_root_path(&repo.root);
        if allowed.iter().any(|a| root.starts_with(a)) {
            w.watch(&root);
        } else {
            warn!(repository = %repo.name, root = %repo.root, "not watched: outside --allow-root");
        }
    }
    Ok(Some(w))
}

/// Serves `/metrics` on its own port until `stop` is cancelled.
async fn spawn_metrics(
    addr: SocketAddr,
    service: &Service,
    stop: &CancellationToken,
) -> Result<(), ServeError> {
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen { addr, source })?;
    let bound = l.local_addr().unwrap_or(addr);
    info!(address = %bound, "metrics on http://{bound}/metrics");
    let svc = service.clone();
    let stop = stop.clone();
    tokio::spawn(crate::metrics::serve_http(
        l,
        move || {
            let svc = svc.clone();
            tokio::spawn(async move {
                let sizes = svc.sizes().await;
                svc.state.metrics.render(&sizes)
            })
        },
        async move {
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    ));
    Ok(())
}

/// The gRPC server (search service behind the token check, health, reflection) on `listener`
/// until `shutdown`; then health says NOT_SERVING, index jobs are cancelled, and in-flight
/// requests get the drain timeout to finish.
async fn run_server(
    config: &ServeConfig,
    service: Service,
    listener: tokio::net::TcpListener,
    tls: Option<ServerTlsConfig>,
    stop_token: &CancellationToken,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = &config.limits;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CodeSearchServer<Service>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let tokens = config.tokens.clone();
    let auth_metrics = service.state.metrics.clone();
    let auth = move |req: Request<()>| -> Result<Request<()>, Status> {
        match tokens.check(&req) {
            Ok(()) => Ok(req),
            Err(s) => {
                auth_metrics.auth_failure();
                Err(s)
            }
        }
    };
    let code_search = CodeSearchServer::new(service)
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let mut builder = Server::builder()
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let drain = Arc::new(tokio::sync::Notify::new());
    let drain_started = drain.clone();
    let stop_token = stop_token.clone();
    let signal = async move {
        shutdown.await;
        info!("shutting down: no new connections; index jobs stop at their last commit");
        health.set_not_serving::<CodeSearchServer<Service>>().await;
        stop_token.cancel();
        drain_started.notify_one();
    };
    let server = builder
        .add_service(health_service)
        .add_service(InterceptedService::new(code_search, auth.clone()))
        .add_service(InterceptedService::new(reflection_v1, auth.clone()))
        .add_service(InterceptedService::new(reflection_v1alpha, auth))
        // Our own listener (bound above, for port 0), so tonic's TCP settings are not applied
        // by it: without TCP_NODELAY every answer waits ~40 ms for a delayed ACK.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60))),
            signal,
        );
    let drain_timeout = limits.drain_timeout;
    tokio::select! {
        r = server => r.map_err(ServeError::from),
        _ = async { drain.notified().await; tokio::time::sleep(drain_timeout).await } => {
            warn!("in-flight requests did not finish within {drain_timeout:?}; stopping anyway");
            Ok(())
        }
    }
}

/// The path of a repository's recorded root (its exact text, `gnn_coder_syntax::relpath`).
pub(crate) fn repo_root_path(root: &str) -> PathBuf {
    gnn_coder_syntax::decode_path(root).unwrap_or_else(|| PathBuf::from(root))
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn a_new_search_cancels_the_one_it_supersedes() {
        let sessions: Arc<Sessions> = Arc::default();
        let first = CancellationToken::new();
        let a = sessions.begin("k/s".into(), first.clone());
        let second = CancellationToken::new();
        let b = sessions.begin("k/s".into(), second.clone());
        assert!(first.is_cancelled(), "superseded");
        assert!(!second.is_cancelled());
        // Another session is untouched.
        let other = CancellationToken::new();
        let c = sessions.begin("k/t".into(), other.clone());
        assert!(!other.is_cancelled() && !second.is_cancelled());
        // The superseded search ending does not remove its successor's entry.
        drop(a);
        assert_eq!(sessions.running.lock().unwrap().len(), 2);
        drop(b);
        drop(c);
        assert!(
            sessions.running.lock().unwrap().is_empty(),
            "entries end with their search"
        );
    }

    #[test]
    fn sessions_are_scoped_by_credential_and_bounded() {
        let mut a = Request::new(());
        a.metadata_mut()
            .insert("authorization", "Bearer one".parse().unwrap());
        let mut b = Request::new(());
        b.metadata_mut()
            .insert("authorization", "Bearer two".parse().unwrap());
        let ka = session_key(&a, "editor-1").unwrap().unwrap();
        let kb = session_key(&b, "editor-1").unwrap().unwrap();
        assert_ne!(ka, kb, "different tokens never share a session");
        assert_eq!(session_key(&a, "editor-1").unwrap().unwrap(), ka);
        assert_eq!(session_key(&a, "").unwrap(), None);
        let long = "x".repeat(MAX_SESSION_BYTES + 1);
        assert_eq!(
            session_key(&a, &long).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
