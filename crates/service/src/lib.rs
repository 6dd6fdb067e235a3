//! # gnn-coder-service
//!
//! The gRPC service of gnn-coder (`gnn-coder serve`): a tonic server over one
//! [`gnn_coder_engine::Engine`], for gRPC clients, an IDE plugin backend and batch jobs. The API
//! is `proto/gnn_coder/v1/search.proto` (package `gnn_coder.v1`), compiled at build time with a
//! vendored protoc; the standard health service (`grpc.health.v1`) and server reflection (v1
//! and v1alpha) are served beside it, so generic clients need no proto files.
//!
//! ## Requests, as data flows
//!
//! ```text
//! connection (TLS when configured) → HTTP/2 limits (message size, streams per connection)
//!   → bearer-token check (all but health) → request permit (a bounded semaphore; none free:
//!     RESOURCE_EXHAUSTED at once, never a queue) → request checks (INVALID_ARGUMENT early)
//!   → the engine on a blocking thread, with a cancellation token that fires when the client
//!     goes away, its deadline passes, or the server shuts down
//!   → response; the method, status code and latency go to the metrics
//! ```
//!
//! The engine is synchronous; handlers run it with `spawn_blocking`, as tonic advises for
//! CPU-bound work. Searches read the last committed snapshot, so they run while repositories
//! are indexed, and index jobs share the engine's one writer: an edit sent with `UpdateFiles`
//! commits between two batches of a long index run (see the engine's `writer` module).
//!
//! ## Indexing as a stream
//!
//! `IndexRepository` resolves the root once to its canonical path and holds it open as a
//! directory handle (`gnn_coder_syntax::RepoRoot`), checks *that* path against the allowed
//! roots, and reads every file through the handle without following links, so neither a link
//! nor a path component swapped for one while the job runs can lead out; `UpdateFiles` opens
//! the repository's recorded root the same way. It then takes an index-job permit, and streams the engine's events: progress
//! (throttled), skipped files with reasons, commits, and the summary last. A client that hangs
//! up cancels the run at its last commit; so does SIGTERM.
//!
//! ## Shutdown
//!
//! On SIGTERM or Ctrl-C the server reports NOT_SERVING on health, stops accepting, cancels
//! index jobs (each stops at its last commit), lets in-flight requests finish (up to the drain
//! timeout), and exits; nothing committed is lost.

pub mod auth;
pub mod client;
pub mod codec;
pub mod convert;
mod metrics;
mod server;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use server::{ServeConfig, ServeError, serve};

/// The generated messages, client and server of `gnn_coder.v1`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("gnn_coder.v1");

    /// The encoded file descriptor set served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("gnn_coder_v1_descriptor");
}

/// Default listening address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

/// Limits that keep a server up with bounded memory under overload.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// Longest query, in bytes.
    pub max_query_bytes: usize,
    /// Largest `top_k`.
    pub max_top_k: usize,
    /// Requests served at once (index streams excluded); more get RESOURCE_EXHAUSTED.
    pub max_concurrent_requests: usize,
    /// Index jobs running at once; more get RESOURCE_EXHAUSTED.
    pub max_index_jobs: usize,
    /// HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// Longest a unary request may run (a client's shorter deadline wins).
    pub request_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 16 << 20,
            max_query_bytes: 8192,
            max_top_k: 100,
            max_concurrent_requests: 64,
            max_index_jobs: 2,
            max_streams_per_connection: 256,
            request_timeout: Duration::from_secs(120),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// TLS identity of the server (PEM files).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Log format of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Sets up `tracing` output on stderr (`RUST_LOG` filters; default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a log file or a collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Whether an address is loopback only.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
