//! `gnn-coder mcp`: a Model Context Protocol server, so coding agents search with GNN-Coder.
//!
//! An agent launches `gnn-coder mcp` (stdio, the transport agent configurations use) or talks
//! to `gnn-coder mcp --listen ADDR` (streamable HTTP, loopback by default, behind the same
//! bearer tokens as `serve`). The tools are thin: each one builds an engine request and hands it
//! to the CLI's one [`Backend`] seam, so the MCP server works on a local index or, with
//! `--server URL`, on a running `gnn-coder serve`, and every request is checked by the engine
//! exactly as the CLI's and the gRPC service's are (one validator, one message).
//!
//! * `search_code`: a question or an identifier; optional limit, language, path glob,
//!   repository, mode; results as `path:start-end  symbol (kind, language) score` with their
//!   first lines, cut to a size budget (`max_tokens`, estimated as 4 bytes of text per token)
//!   with a cursor for the next page.
//! * `find_similar`: code like the unit at a file and line, or like a snippet.
//! * `index_repository` / `refresh`: index a directory under an allowed root (`--allow-root`,
//!   default the directory the server started in), or re-read the changed files of an indexed
//!   repository; progress goes out as MCP progress notifications when the caller asked for
//!   them, and a cancelled call stops at the last commit.
//! * `index_status`: repositories, files, units, the model, when each was indexed, its HEAD.
//!
//! A tool that fails answers a tool error with the engine's message (an empty query, an
//! unknown repository, a path outside the allowed roots, no index yet); the session goes on.
//! The engine is synchronous, so each call runs on a blocking thread.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{
    CancellationToken, EngineOptions, IndexEvent, IndexOptions, KindFilter, Mode, SearchRequest,
    SimilarRequest, SimilarTarget,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::schemars::JsonSchema;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt, tool, tool_handler, tool_router};
use serde::Deserialize;

use crate::DEFAULT_INDEX_DIR;
use crate::backend::{Backend, Found, resolve_index_dir};
use crate::flags::ModelFlags;
use crate::remote::ServerFlags;

/// Results per page when the caller names no limit, and the most a page may hold.
const DEFAULT_LIMIT: usize = 10;
const MAX_LIMIT: usize = 50;
/// The default size budget of one answer, in tokens (4 bytes of text each, an estimate that
/// errs on the large side for code).
const DEFAULT_MAX_TOKENS: usize = 2_000;
const BYTES_PER_TOKEN: usize = 4;
/// Lines of each hit shown under it.
const SNIPPET_LINES: usize = 3;

#[derive(Args)]
pub struct McpArgs {
    /// Index directory (default: the nearest .gnn-coder above the current directory, else
    /// ./.gnn-coder, made by the first index_repository).
    #[arg(long)]
    index: Option<PathBuf>,
    /// A directory index_repository may index (repeatable; default: the current directory).
    #[arg(long = "allow-root", value_name = "DIR")]
    allow_roots: Vec<PathBuf>,
    /// Serve the streamable HTTP transport at this address (e.g. 127.0.0.1:8765; the endpoint
    /// is /mcp) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Bearer tokens HTTP clients must send, one per line (at least 16 characters each), as
    /// `serve --auth-token-file`.
    #[arg(long, value_name = "FILE", requires = "listen")]
    auth_token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without tokens (anyone who can connect may search and
    /// index).
    #[arg(long, requires = "listen")]
    allow_unauthenticated_remote: bool,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    server: ServerFlags,
}

/// `search_code`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SearchCodeArgs {
    /// What to find: a plain-English description of what the code does ("retry a request with
    /// exponential backoff") or an identifier (`parse_http_header`).
    pub query: String,
    /// How many results (1 to 50; default 10).
    pub limit: Option<usize>,
    /// Only this language (python, rust, go, java, javascript, typescript, tsx, ruby, php, c,
    /// cpp).
    pub language: Option<String>,
    /// Only files whose path (relative to the repository root) matches this glob, e.g.
    /// `src/**/*.rs`.
    pub path: Option<String>,
    /// Only this indexed repository (index_status lists them).
    pub repository: Option<String>,
    /// `hybrid` (the default: meaning and words), `semantic` (meaning) or `lexical` (words).
    pub mode: Option<String>,
    /// The most text to return, in tokens (estimated as 4 bytes each; default 2000); results
    /// past it are left for the next page.
    pub max_tokens: Option<usize>,
    /// The cursor a previous answer to the same query gave, for the next page.
    pub cursor: Option<String>,
    /// Reorder the top 20 by reading the question and each function's code together (a
    /// cross-encoder): a better order, at a transformer pass per result (default false).
    pub rerank: Option<bool>,
}

/// `find_similar`'s arguments: a unit (path and line) or a snippet (code and language).
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct FindSimilarArgs {
    /// A file of an indexed repository: relative to its root, or an absolute path.
    pub path: Option<String>,
    /// A line inside the function or class (1-based), with `path`.
    pub line: Option<u64>,
    /// A code snippet, instead of `path` and `line`.
    pub code: Option<String>,
    /// The snippet's language, with `code`.
    pub language: Option<String>,
    /// The repository of `path`, when several hold it.
    pub repository: Option<String>,
    /// How many results (1 to 50; default 10).
    pub limit: Option<usize>,
    /// The most text to return, in tokens (default 2000).
    pub max_tokens: Option<usize>,
}

/// `index_repository`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct IndexRepositoryArgs {
    /// The repository's directory: absolute, or relative to where the server runs; it must
    /// be under a root the server may index.
    pub path: String,
    /// The name to give it in the index (default: the directory's name).
    pub name: Option<String>,
}

/// `refresh`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct RefreshArgs {
    /// The indexed repository to re-read (default: every one).
    pub repository: Option<String>,
}

/// An index run: the options, and locally the engine's check of them (the held root).
struct IndexJob {
    options: IndexOptions,
    checked: Option<gnn_coder_engine::ValidIndexOptions>,
}

/// The MCP server: the backend and what it may index.
#[derive(Clone)]
pub struct CodeSearchMcp {
    backend: Arc<Backend>,
    /// Canonical directories index_repository may index (a local index only; a server
    /// applies its own --allow-root).
    roots: Arc<Vec<PathBuf>>,
    remote: bool,
    tool_router: ToolRouter<Self>,
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn text(message: String) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(message)])
}

/// The error chain as one message (the engine's words first).
fn message(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Hits as text within a budget of bytes; returns the text and how many hits it holds.
fn render(hits: &[Found], budget: usize, numbered_from: usize) -> (String, usize) {
    let mut out = String::new();
    let mut shown = 0;
    for (i, f) in hits.iter().enumerate() {
        let h = &f.hit;
        let u = &h.unit;
        let mut entry = format!(
            "{}. {}:{}-{}  {}  ({} {}, score {:.3}{})\n",
            numbered_from + i + 1,
            u.path,
            u.start_line,
            u.end_line,
            u.symbol,
            u.language,
            u.kind,
            h.score,
            if h.repository.is_empty() {
                String::new()
            } else {
                format!(", repository {}", h.repository)
            }
        );
        for line in f.snippet.iter().take(SNIPPET_LINES) {
            let _ = writeln!(entry, "    {line}");
        }
        // The first hit is always shown, however small the budget.
        if shown > 0 && out.len() + entry.len() > budget {
            break;
        }
        out.push_str(&entry);
        shown += 1;
    }
    (out, shown)
}

fn limit(limit: Option<usize>) -> Result<usize, String> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(format!("limit {n} is out of range; give 1 to {MAX_LIMIT}")),
    }
}

fn budget(max_tokens: Option<usize>) -> Result<usize, String> {
    match max_tokens.unwrap_or(DEFAULT_MAX_TOKENS) {
        0 => Err("max_tokens must be at least 1".into()),
        n => Ok(n.saturating_mul(BYTES_PER_TOKEN)),
    }
}

/// A cursor is the number of results already returned, as text.
fn offset(cursor: Option<&str>) -> Result<usize, String> {
    match cursor {
        None => Ok(0),
        Some(c) => c
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n <= MAX_LIMIT)
            .ok_or_else(|| format!("{c:?} is not a cursor this server gave")),
    }
}

impl CodeSearchMcp {
    /// Runs blocking work on a blocking thread; a failure becomes a tool error.
    async fn blocking<F>(&self, work: F) -> Result<CallToolResult, ErrorData>
    where
        F: FnOnce(&Backend) -> Result<String, String> + Send + 'static,
    {
        let backend = self.backend.clone();
        match tokio::task::spawn_blocking(move || work(&backend)).await {
            Ok(Ok(s)) => Ok(text(s)),
            Ok(Err(m)) => Ok(tool_error(m)),
            Err(e) => Ok(tool_error(format!("the call failed: {e}"))),
        }
    }

    /// Index options for a directory the caller named: resolved once and checked against the
    /// allowed roots locally (on the path the engine's held handle was opened from, which the
    /// run then reads through); a server checks its own.
    fn index_options(&self, path: &str, name: Option<String>) -> Result<IndexJob, String> {
        if path.trim().is_empty() {
            return Err("the path is empty".into());
        }
        let given = Path::new(path);
        let root = if given.is_absolute() {
            given.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot read the current directory: {e}"))?
                .join(given)
        };
        let mut opts = IndexOptions::new(&root);
        opts.name = name;
        if self.remote {
            opts.root = crate::remote::server_path(&root).map_err(|e| e.to_string())?;
            return Ok(IndexJob {
                options: opts,
                checked: None,
            });
        }
        let outside = || format!("{path} is outside the roots this server may index");
        let valid = opts.validate().map_err(|e| {
            let escapes = root
                .canonicalize()
                .is_ok_and(|c| !self.roots.iter().any(|r| c.starts_with(r)));
            if escapes { outside() } else { e.to_string() }
        })?;
        if !self.roots.iter().any(|r| valid.root().starts_with(r)) {
            return Err(outside());
        }
        Ok(IndexJob {
            options: opts,
            checked: Some(valid),
        })
    }

    /// Runs one index job, with progress notifications when the caller asked for them.
    async fn run_index(
        &self,
        job: IndexJob,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<String, String> {
        let token = ctx.meta.get_progress_token();
        let peer = ctx.peer.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let ct = ctx.ct.clone();
        // A cancelled call stops the run at its last commit.
        let watch = tokio::spawn(async move {
            ct.cancelled().await;
            stop.cancel();
        });
        let forward = tokio::spawn(async move {
            let mut step = 0f64;
            while let Some(m) = rx.recv().await {
                if let Some(t) = &token {
                    step += 1.0;
                    let _ = peer
                        .notify_progress(
                            ProgressNotificationParam::new(t.clone(), step).with_message(m),
                        )
                        .await;
                }
            }
        });
        let backend = self.backend.clone();
        let result = tokio::task::spawn_blocking(move || {
            let last = std::sync::Mutex::new(std::time::Instant::now());
            let on_event = |e: &IndexEvent| {
                if let IndexEvent::Progress(p) = e {
                    // At most a few notifications a second.
                    let mut t = last.lock().unwrap_or_else(|p| p.into_inner());
                    if t.elapsed() >= std::time::Duration::from_millis(250) {
                        *t = std::time::Instant::now();
                        let total = if p.files_total > 0 {
                            format!(" of {}", p.files_total)
                        } else {
                            String::new()
                        };
                        let _ = tx.send(format!(
                            "{} files{total} read, {} units parsed, {} embedded, {} written",
                            p.files_done, p.units, p.embeddings_computed, p.units_written
                        ));
                    }
                }
            };
            let IndexJob { options, checked } = job;
            let summary = backend
                .index(&options, checked.as_ref(), &on_event, &cancel)
                .map_err(|e| message(&e))?;
            Ok::<_, String>(format!(
                "indexed {} as {}: {} files ({} added, {} changed, {} removed, {} unchanged), \
                 {} units, {} embedded, in {:.1}s",
                options.root.display(),
                summary.repository,
                summary.files,
                summary.files_added,
                summary.files_changed,
                summary.files_removed,
                summary.files_unchanged,
                summary.units,
                summary.embeddings_computed,
                summary.seconds
            ))
        })
        .await;
        watch.abort();
        let _ = forward.await;
        match result {
            Ok(r) => r,
            Err(e) => Err(format!("the index run failed: {e}")),
        }
    }
}

#[tool_router]
impl CodeSearchMcp {
    /// Finds functions, methods and classes in the indexed repositories that match a
    /// description of what they do or an identifier.
    #[tool(
        description = "Search the indexed code for functions, methods and classes. The query can be \
        a plain-English description of what the code does (\"parse a size like 512K\", \"retry a \
        request with exponential backoff\") or an identifier (\"parse_http_header\"). Results come \
        best first as `path:start-end  symbol  (language kind, score S)` followed by the first \
        lines of the code; paths are relative to the repository root, lines 1-based and \
        inclusive. Scores rank the results of one query and are not comparable across queries. \
        Narrow with language, path (a glob such as src/**/*.rs) or repository; when the answer \
        says more results are available, call again with the given cursor."
    )]
    async fn search_code(
        &self,
        Parameters(args): Parameters<SearchCodeArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (limit, budget, offset) = match (
            limit(args.limit),
            budget(args.max_tokens),
            offset(args.cursor.as_deref()),
        ) {
            (Ok(l), Ok(b), Ok(o)) => (l, b, o),
            (Err(m), _, _) | (_, Err(m), _) | (_, _, Err(m)) => return Ok(tool_error(m)),
        };
        let mode = match args.mode.as_deref() {
            None => None,
            Some(m) => match m.parse::<Mode>() {
                Ok(m) => Some(m),
                Err(e) => return Ok(tool_error(e.to_string())),
            },
        };
        // A search returns at most its first MAX_LIMIT hits; pages share that window.
        if offset >= MAX_LIMIT {
            return Ok(text(format!(
                "no more results: a search returns its first {MAX_LIMIT}; narrow the query \
                 (language, path, repository) to see others"
            )));
        }
        let limit = limit.min(MAX_LIMIT - offset);
        let mut req = SearchRequest::new(args.query.clone(), offset + limit);
        req.mode = mode;
        req.languages = args.language.into_iter().collect();
        req.path_globs = args.path.into_iter().collect();
        req.repositories = args.repository.into_iter().collect();
        req.kinds = KindFilter::Callables;
        req.rerank = args
            .rerank
            .unwrap_or(false)
            .then_some(gnn_coder_engine::DEFAULT_RERANK_DEPTH);
        self.blocking(move |backend| {
            let hits = backend.search(req).map_err(|e| message(&e))?;
            let page = hits.get(offset..).unwrap_or_default();
            if page.is_empty() {
                return Ok(if offset == 0 {
                    format!("no results for {:?}", args.query)
                } else {
                    "no more results".to_string()
                });
            }
            let (mut out, shown) = render(page, budget, offset);
            let next = offset + shown;
            // More may follow when the page was cut by the budget or came back full.
            if shown < page.len() || (hits.len() == offset + limit && next < MAX_LIMIT) {
                let _ = write!(
                    out,
                    "\nmore results may follow: call search_code again with the same query and \
                     cursor \"{next}\""
                );
            }
            Ok(out)
        })
        .await
    }

    #[tool(
        description = "Find code similar to a function or class of the index (give path and line) \
        or to a snippet (give code and language): near-duplicates, other implementations of the \
        same idea, code to reuse instead of writing it again. Results are listed as in \
        search_code."
    )]
    async fn find_similar(
        &self,
        Parameters(args): Parameters<FindSimilarArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (limit, budget) = match (limit(args.limit), budget(args.max_tokens)) {
            (Ok(l), Ok(b)) => (l, b),
            (Err(m), _) | (_, Err(m)) => return Ok(tool_error(m)),
        };
        let target = match (args.path, args.line, args.code, args.language) {
            (Some(path), Some(line), None, _) => (path, line, args.repository),
            (None, None, Some(code), Some(language)) => {
                let req = SimilarRequest::new(SimilarTarget::Snippet { code, language }, limit);
                return self.similar(req, budget).await;
            }
            (None, None, Some(_), None) => {
                return Ok(tool_error("a snippet needs its language"));
            }
            _ => {
                return Ok(tool_error(
                    "give either path and line (a unit of the index) or code and language (a \
                     snippet)",
                ));
            }
        };
        let (path, line, repository) = target;
        if line == 0 {
            return Ok(tool_error("lines are 1-based"));
        }
        let backend = self.backend.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            let repositories = backend.repositories().map_err(|e| message(&e))?;
            Ok::<_, String>(crate::search_cmd::unit_target(
                repository,
                path,
                line,
                &repositories,
            ))
        })
        .await;
        let target = match resolved {
            Ok(Ok(t)) => t,
            Ok(Err(m)) => return Ok(tool_error(m)),
            Err(e) => return Ok(tool_error(format!("the call failed: {e}"))),
        };
        self.similar(SimilarRequest::new(target, limit), budget)
            .await
    }

    #[tool(
        description = "Index a repository (or any directory of source code) so that search_code and \
        find_similar can find its code. Indexing again refreshes it: only changed files are read \
        again. The path must be under a directory this server may index. Reports progress when \
        the call carries a progress token; a large repository takes minutes (about 100 functions \
        a second on two CPU cores)."
    )]
    async fn index_repository(
        &self,
        Parameters(args): Parameters<IndexRepositoryArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let job = match self.index_options(&args.path, args.name) {
            Ok(j) => j,
            Err(m) => return Ok(tool_error(m)),
        };
        Ok(match self.run_index(job, &ctx).await {
            Ok(s) => text(s),
            Err(m) => tool_error(m),
        })
    }

    #[tool(
        description = "Re-read the files that changed since an indexed repository was last indexed \
        (after edits, a checkout or a pull), so that search results are current. Without a \
        repository, refreshes every one."
    )]
    async fn refresh(
        &self,
        Parameters(args): Parameters<RefreshArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let backend = self.backend.clone();
        let repos = match tokio::task::spawn_blocking(move || backend.repositories()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Ok(tool_error(message(&e))),
            Err(e) => return Ok(tool_error(format!("the call failed: {e}"))),
        };
        let chosen: Vec<_> = match &args.repository {
            Some(name) => match repos.iter().find(|r| &r.name == name) {
                Some(r) => vec![r.clone()],
                None => {
                    return Ok(tool_error(format!(
                        "no repository named {name:?} in the index"
                    )));
                }
            },
            None => repos,
        };
        if chosen.is_empty() {
            return Ok(tool_error(
                "the index holds no repository yet: call index_repository first",
            ));
        }
        let mut out = Vec::new();
        for r in chosen {
            let Some(root) = gnn_coder_syntax::decode_path(&r.root) else {
                return Ok(tool_error(format!(
                    "the root of {} is not a path this server can use",
                    r.name
                )));
            };
            let job = match self.index_options(&root.to_string_lossy(), Some(r.name.clone())) {
                Ok(j) => j,
                Err(m) => return Ok(tool_error(m)),
            };
            match self.run_index(job, &ctx).await {
                Ok(s) => out.push(s),
                Err(m) => return Ok(tool_error(m)),
            }
        }
        Ok(text(out.join("\n")))
    }

    #[tool(
        description = "What the index holds: each repository with its files, functions, when it \
        was last indexed and its git HEAD, and the model of the vectors. Call it to see whether a \
        repository is indexed before searching."
    )]
    async fn index_status(&self) -> Result<CallToolResult, ErrorData> {
        self.blocking(|backend| {
            let stats = backend.stats().map_err(|e| message(&e))?;
            let repos = backend.repositories().map_err(|e| message(&e))?;
            let mut out = format!(
                "index: {}\nrepositories: {}, files: {}, units: {}\nmodel: {}\n",
                backend.location(),
                stats.stats.repositories,
                stats.stats.files,
                stats.stats.units,
                stats.embedding.as_ref().map_or(
                    "none (lexical-only: search_code uses words only)".to_string(),
                    |e| { e.model.clone() }
                )
            );
            for r in &repos {
                let _ = writeln!(
                    out,
                    "- {}: {} ({} files, {} units, indexed {}, HEAD {})",
                    r.name,
                    r.root,
                    r.files,
                    r.units,
                    crate::repos_cmd::when(r.indexed_unix),
                    r.head.as_deref().map_or("-", |h| &h[..h.len().min(12)])
                );
            }
            Ok(out)
        })
        .await
    }
}

impl CodeSearchMcp {
    async fn similar(
        &self,
        req: SimilarRequest,
        budget: usize,
    ) -> Result<CallToolResult, ErrorData> {
        self.blocking(move |backend| {
            let (origin, hits) = backend.similar(&req).map_err(|e| message(&e))?;
            let mut out = String::new();
            if let Some(o) = origin {
                let u = &o.hit.unit;
                let _ = writeln!(
                    out,
                    "similar to {}:{}-{}  {}\n",
                    u.path, u.start_line, u.end_line, u.symbol
                );
            }
            if hits.is_empty() {
                out.push_str("no results");
            } else {
                out.push_str(&render(&hits, budget, 0).0);
            }
            Ok(out)
        })
        .await
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeSearchMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("gnn-coder", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Code search over indexed repositories. Use search_code to find where something \
                 is done (describe it in plain English, or give an identifier), find_similar for \
                 code like a given function, index_status to see what is indexed, and \
                 index_repository or refresh to add or update a repository.",
            )
    }
}

pub fn run(args: McpArgs) -> Result<()> {
    let remote = args.server.server.is_some();
    let backend = if remote {
        if args.index.is_some() {
            bail!("give either --index DIR or --server URL, not both");
        }
        Backend::open(None, &args.server, &args.model)?
    } else {
        let default = resolve_index_dir(None).unwrap_or_else(|_| PathBuf::from(DEFAULT_INDEX_DIR));
        let options = EngineOptions {
            model: args.model.choice(),
            ..EngineOptions::default()
        };
        Backend::open_for_writing(
            args.index.clone(),
            Some(default),
            &args.server,
            options,
            false,
        )?
    };
    let roots = if args.allow_roots.is_empty() {
        vec![std::env::current_dir().context("cannot read the current directory")?]
    } else {
        args.allow_roots.clone()
    };
    let roots = roots
        .iter()
        .map(|r| {
            r.canonicalize()
                .with_context(|| format!("--allow-root {}", r.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let backend = Arc::new(backend);
    crate::backend::warm_in_background(&backend);
    let server = CodeSearchMcp {
        backend,
        roots: Arc::new(roots),
        remote,
        tool_router: CodeSearchMcp::tool_router(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = match args.listen {
        None => runtime.block_on(async move {
            let running = server
                .serve(rmcp::transport::stdio())
                .await
                .context("the MCP session did not start")?;
            running.waiting().await.context("the MCP session failed")?;
            Ok(())
        }),
        Some(addr) => runtime.block_on(serve_http(server, addr, &args)),
    };
    // The backend's own runtime (a remote index) must not be dropped inside ours.
    runtime.shutdown_background();
    result
}

/// The streamable HTTP transport at `addr`/mcp, behind bearer tokens when given.
async fn serve_http(server: CodeSearchMcp, addr: SocketAddr, args: &McpArgs) -> Result<()> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let tokens = match &args.auth_token_file {
        Some(f) => gnn_coder_service::auth::Tokens::from_file(f)?,
        None => gnn_coder_service::auth::Tokens::default(),
    };
    if !gnn_coder_service::is_loopback(&addr)
        && !tokens.enabled()
        && !args.allow_unauthenticated_remote
    {
        bail!(
            "refusing to listen on {addr} without --auth-token-file: anyone who can connect could \
             search and index (add --allow-unauthenticated-remote if that is what you want)"
        );
    }
    let ct = tokio_util::sync::CancellationToken::new();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(ct.child_token()),
    );
    let check = tokens.clone();
    let router = axum::Router::new().nest_service("/mcp", service).layer(
        axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            let check = check.clone();
            async move {
                let header = req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !check.allows(header) {
                    return axum::response::IntoResponse::into_response((
                        axum::http::StatusCode::UNAUTHORIZED,
                        "missing or invalid bearer token (send `Authorization: Bearer <token>`)",
                    ));
                }
                next.run(req).await
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // The first line on stdout is the address, for whoever started us (as serve does).
    println!("listening on http://{bound}/mcp");
    let shutdown = ct.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        })
        .await
        .context("the MCP HTTP server failed")
}
