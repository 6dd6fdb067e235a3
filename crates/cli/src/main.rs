//! `gnn-coder`: index repositories and search them in plain English.
//!
//! A thin layer over the library crates: it parses arguments, draws progress, and turns the
//! libraries' typed errors into messages. Exit status: 0 on success, 1 on any error, 2 on a usage
//! error (from clap).

mod advice;
mod backend;
mod eval_cmd;
mod flags;
mod index_cmd;
mod jobs_cmd;
mod lsp_cmd;
mod mcp_cmd;
mod progress;
mod remote;
mod repos_cmd;
mod search_cmd;
mod serve_cmd;
mod store_cmd;
mod train_cmd;
mod train_flags;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub use gnn_coder_engine::DEFAULT_INDEX_DIR;

#[derive(Parser)]
#[command(
    name = "gnn-coder",
    version = version_line(),
    long_version = long_version(),
    about = "Code search that understands plain-English questions",
    long_about = "Index a repository's functions with tree-sitter, then find them with \
                  plain-English or identifier queries.\n\n\
                  Quick start:\n  gnn-coder index path/to/repo\n  \
                  cd path/to/repo && gnn-coder search \"parse a config file\""
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index a repository (or any directory of source files).
    Index(index_cmd::IndexArgs),
    /// Serve an index over gRPC (search, streaming indexing, file updates for IDEs).
    Serve(serve_cmd::ServeArgs),
    /// Index a list of repositories (JSON lines: name, root), locally or through a server.
    Jobs(jobs_cmd::JobsArgs),
    /// Search an index with a question, or answer a file of queries (--queries).
    ///
    /// Scores rank the hits of one query; they are not comparable across queries. Lexical:
    /// BM25 (unbounded, higher is a closer word match). Semantic: cosine similarity of the
    /// query's and the unit's vectors (-1..1). Hybrid (the default with vectors): both scaled
    /// to 0..1 within this query's candidates and weighted (--dense-weight), so the top hit is
    /// near 1 even when it is a poor match.
    Search(search_cmd::SearchArgs),
    /// Serve the index to coding agents over the Model Context Protocol (stdio, or HTTP with
    /// --listen): tools search_code, find_similar, index_repository, refresh, index_status.
    Mcp(mcp_cmd::McpArgs),
    /// A language server over stdio: workspace symbols ranked by GNN-Coder (unsaved buffers
    /// included) and "find similar code" (gnn-coder.similar).
    Lsp(lsp_cmd::LspArgs),
    /// Find code similar to a unit (PATH:LINE) or to a snippet on stdin (--lang).
    Similar(search_cmd::SimilarArgs),
    /// List the repositories of an index.
    Repos(repos_cmd::ReposArgs),
    /// Remove a repository from an index.
    Remove(repos_cmd::RemoveArgs),
    /// Show what an index holds.
    Info(repos_cmd::InfoArgs),
    /// Manage a PostgreSQL store (`store migrate --store URL`).
    Store(store_cmd::StoreArgs),
    /// Check a running server's health (gRPC health service): exit 0 when it is SERVING.
    Health(store_cmd::HealthArgs),
    /// List the supported languages and their file extensions.
    Languages,
    /// Print the license notice of the model built into this binary (all-MiniLM-L6-v2's
    /// Apache License 2.0).
    Notice,
    /// Train GNN-Coder weights on (docstring, code) pairs, or on your own repositories.
    Train(train_cmd::TrainArgs),
    /// Measure retrieval quality (MRR@10, R@1, R@10, MAM) of weights on pairs or a benchmark.
    Eval(eval_cmd::EvalArgs),
}

/// `gnn-coder -V`: the version and the commit built.
fn version_line() -> &'static str {
    concat!(
        env!("CARGO_PKG_VERSION"),
        " (commit ",
        env!("GNN_CODER_COMMIT"),
        ")"
    )
}

/// `gnn-coder --version`: also the model built in, which an index records, and its license.
fn long_version() -> &'static str {
    let sum = gnn_coder_model::BUNDLED_HEAD_SHA256;
    let text = format!(
        "{}\nmodel: gnn-coder {} (built in; indexes name it \
         all-MiniLM-L6-v2+gnn-coder-head(trained:{})),\n       \
         fine-tuned from all-MiniLM-L6-v2 (sentence-transformers, Apache License 2.0; \
         `gnn-coder notice`)",
        version_line(),
        gnn_coder_model::BUNDLED_VERSION,
        &sum[..12],
    );
    Box::leak(text.into_boxed_str())
}

/// burn's CPU backend allocates a fresh buffer for every tensor op; with glibc's defaults every
/// buffer over 128 KiB is a new `mmap` (zeroed pages, a page fault per 4 KiB) handed back to the
/// system on free. Keeping freed memory in the heap instead cut training's system time 4x and
/// raised its throughput ~40% (5.7 vs 4.1 pairs/s, same run, 3.9M -> 0.5M page faults).
/// `mallopt` caps the mmap threshold at 32 MiB (attention scores are larger), so the model
/// commands re-execute themselves once with `GLIBC_TUNABLES` set, unless the user set it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_allocator() {
    use std::os::unix::process::CommandExt;
    const TUNABLES: &str =
        "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=4294967295";
    let heavy = std::env::args_os().nth(1).is_some_and(|c| {
        c == "train"
            || c == "eval"
            || c == "index"
            || c == "similar"
            || c == "serve"
            || c == "jobs"
            || c == "mcp"
            || c == "lsp"
    });
    if !heavy || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // Only returns on failure; then we simply run with the default allocator settings.
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", TUNABLES)
        .exec();
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_allocator() {}

fn main() -> ExitCode {
    tune_allocator();
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Index(args) => index_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Jobs(args) => jobs_cmd::run(args),
        Command::Search(args) => search_cmd::run(args),
        Command::Similar(args) => search_cmd::similar(args),
        Command::Mcp(args) => mcp_cmd::run(args),
        Command::Lsp(args) => lsp_cmd::run(args),
        Command::Repos(args) => repos_cmd::repos(args),
        Command::Remove(args) => repos_cmd::remove(args),
        Command::Info(args) => repos_cmd::info(args),
        Command::Store(a) => store_cmd::run(a),
        Command::Health(a) => store_cmd::health(a),
        Command::Languages => languages(),
        Command::Notice => {
            print!("{}", gnn_coder_model::bundled_notice());
            Ok(())
        }
        Command::Train(args) => train_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stdout (`gnn-coder search ... | head`) is not an error worth a message.
            if err.chain().any(is_broken_pipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Whether an error is a write to a closed pipe, however it was wrapped (an I/O error, or
/// serde_json's, which keeps only the kind of the I/O error under it).
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.downcast_ref::<std::io::Error>().map(|e| e.kind()) == pipe
        || e.downcast_ref::<serde_json::Error>()
            .and_then(|e| e.io_error_kind())
            == pipe
}

/// `println!` to a stdout whose reader has gone (`gnn-coder repos | head -1`) panics in the
/// standard library; like grep, end quietly with success instead. Any other panic is reported
/// as before.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("os error 32") {
            std::process::exit(0);
        }
        report(info)
    }));
}

fn languages() -> Result<()> {
    for lang in gnn_coder_syntax::Language::all()? {
        println!("{:<12} {}", lang.name(), lang.extensions().join(" "));
    }
    Ok(())
}
