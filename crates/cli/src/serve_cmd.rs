//! `gnn-coder serve`: the gRPC service over one index.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use gnn_coder_engine::EngineOptions;
use gnn_coder_service::auth::Tokens;
use gnn_coder_service::{Limits, LogFormat, ServeConfig, TlsFiles};

use crate::flags::{CodesFlags, ModelFlags};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The index to serve (created when missing; it may hold many repositories).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Serve the PostgreSQL store at this URL instead (postgres://USER@HOST:PORT/DB; the
    /// password from the URL or $PGPASSWORD; or set $GNN_CODER_STORE). Any number of replicas
    /// may serve one store.
    #[arg(long, value_name = "URL", conflicts_with = "index")]
    store: Option<String>,
    /// Address to listen on. The default is loopback only; another address needs
    /// --auth-token-file (or --allow-unauthenticated-remote).
    #[arg(long, default_value = gnn_coder_service::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory below which clients may index repositories (repeatable). Paths are resolved
    /// (symlinks included) before the check; without any, IndexRepository is refused.
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks only TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Bearer tokens, one per line (at least 16 characters each); every call but health
    /// must carry `authorization: Bearer <token>`.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    /// Listen on a non-loopback address without tokens (anyone who can connect may index
    /// below the allowed roots and read the index).
    #[arg(long)]
    allow_unauthenticated_remote: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Follow file-system changes of the indexed roots and apply them at once.
    #[arg(long)]
    watch: bool,
    /// Log format on stderr (RUST_LOG filters, default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: Format,
    /// Requests served at once (more get RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = Limits::default().max_concurrent_requests)]
    max_concurrent_requests: usize,
    /// Index jobs running at once (more get RESOURCE_EXHAUSTED).
    #[arg(long, default_value_t = Limits::default().max_index_jobs)]
    max_index_jobs: usize,
    /// Largest top_k a search may ask for.
    #[arg(long, default_value_t = Limits::default().max_top_k)]
    max_top_k: usize,
    /// Longest query, in bytes.
    #[arg(long, default_value_t = Limits::default().max_query_bytes)]
    max_query_bytes: usize,
    /// Largest message, in bytes.
    #[arg(long, default_value_t = Limits::default().max_message_bytes)]
    max_message_bytes: usize,
    /// Longest a request may run, in seconds (a client's shorter deadline wins).
    #[arg(long, default_value_t = Limits::default().request_timeout.as_secs())]
    request_timeout: u64,
    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, default_value_t = Limits::default().drain_timeout.as_secs())]
    drain_timeout: u64,
    /// Build a new index lexical-only (no model, no vectors).
    #[arg(long)]
    lexical_only: bool,
    #[command(flatten)]
    codes: CodesFlags,
    /// Threads for parsing and indexing (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[command(flatten)]
    model: ModelFlags,
}

pub fn run(args: ServeArgs) -> Result<()> {
    gnn_coder_service::init_logging(match args.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    });
    let tokens = match &args.auth_token_file {
        Some(f) => Tokens::from_file(f)?,
        None => Tokens::default(),
    };
    if args.max_top_k == 0 || args.max_concurrent_requests == 0 || args.max_index_jobs == 0 {
        bail!("--max-top-k, --max-concurrent-requests and --max-index-jobs must be at least 1");
    }
    let config = ServeConfig {
        location: crate::remote::ServerFlags {
            store: args.store.clone(),
            ..Default::default()
        }
        .location(args.index.clone(), || Ok(None))?
        .context("give --index DIR or --store URL (or set $GNN_CODER_STORE)")?,
        engine: EngineOptions {
            model: args.model.choice(),
            lexical_only: args.lexical_only,
            threads: args.threads,
            vector_codes: args.codes.vector_codes,
            ..EngineOptions::default()
        },
        listen: args.listen,
        allow_roots: args.allow_roots.clone(),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        tokens,
        limits: Limits {
            max_message_bytes: args.max_message_bytes,
            max_query_bytes: args.max_query_bytes,
            max_top_k: args.max_top_k,
            max_concurrent_requests: args.max_concurrent_requests,
            max_index_jobs: args.max_index_jobs,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            ..Limits::default()
        },
        metrics_listen: args.metrics_listen,
        watch: args.watch,
        allow_unauthenticated_remote: args.allow_unauthenticated_remote,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("gnn-coder-serve")
        .build()
        .context("cannot start the async runtime")?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let started = std::sync::atomic::AtomicBool::new(false);
    let result = rt.block_on(gnn_coder_service::serve(
        config,
        |addr| {
            started.store(true, std::sync::atomic::Ordering::Relaxed);
            // One line on stdout for scripts and tests that start the server on port 0.
            println!("gnn-coder: serving on {scheme}://{addr}");
            let _ = std::io::stdout().flush();
        },
        shutdown_signal(),
    ));
    let context = if started.load(std::sync::atomic::Ordering::Relaxed) {
        "the server stopped with an error"
    } else {
        "the server did not start"
    };
    result
        .map_err(|e| match &e {
            gnn_coder_service::ServeError::Unprotected(_) => {
                anyhow::anyhow!(
                    "{e}; give --auth-token-file FILE (and --tls-cert/--tls-key), or \
                 --allow-unauthenticated-remote if every host that can connect is trusted"
                )
            }
            _ => anyhow::Error::new(e),
        })
        .context(context)?;
    Ok(())
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
