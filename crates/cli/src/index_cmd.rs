//! `gnn-coder index`: add or refresh a repository in an index.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{CancellationToken, EngineOptions, IndexEvent, IndexOptions};
use serde::Serialize;

use crate::DEFAULT_INDEX_DIR;
use crate::advice::advise;
use crate::backend::{Backend, refuse_with_server};
use crate::flags::{CodesFlags, ModelFlags};
use crate::flags::{human_bytes, parse_size};
use crate::progress::Progress;
use crate::remote::ServerFlags;

#[derive(Args)]
pub struct IndexArgs {
    /// Directory to index (a repository, or any directory of source files).
    root: PathBuf,
    /// Name of the repository in the index (default: the root directory's name). One index
    /// holds many repositories; indexing a known one refreshes it.
    #[arg(long)]
    name: Option<String>,
    /// Where the index lives (default: ROOT/.gnn-coder).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Delete the index and build it anew (all its repositories are dropped).
    #[arg(long)]
    rebuild: bool,
    /// Skip files larger than this (bytes; K, M and G suffixes allowed).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    max_file_size: u64,
    /// Index only these languages (repeatable; see `gnn-coder languages`).
    #[arg(long = "lang")]
    languages: Vec<String>,
    /// Skip paths matching this glob (repeatable), e.g. 'tests/**'.
    #[arg(long)]
    exclude: Vec<String>,
    /// Do not read .gitignore/.ignore files.
    #[arg(long)]
    no_ignore: bool,
    /// Threads for parsing and indexing (default: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Commit (make searchable and crash-proof) after this many changed files.
    #[arg(long, default_value_t = 1000)]
    commit_every: usize,
    /// Build only the lexical index (no model, no vectors).
    #[arg(long)]
    lexical_only: bool,
    #[command(flatten)]
    codes: CodesFlags,
    #[command(flatten)]
    model: ModelFlags,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// List every skipped file in the summary.
    #[arg(short, long)]
    verbose: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Serialize)]
struct JsonSummary<'a> {
    index: String,
    #[serde(flatten)]
    summary: &'a gnn_coder_engine::IndexSummary,
}

pub fn run(args: IndexArgs) -> Result<()> {
    let remote = args.server.server.is_some();
    refuse_with_server(
        &args.server,
        args.index.is_some()
            || args.rebuild
            || args.lexical_only
            || args.no_ignore
            || args.codes.vector_codes.is_some(),
        "--index, --rebuild, --lexical-only, --no-ignore and --vector-codes",
    )?;
    if remote && (args.model.model_dir.is_some() || args.model.weights.is_some()) {
        bail!("--model-dir and --weights apply to a local index; the server has its own model");
    }
    let mut opts = IndexOptions::new(&args.root);
    opts.name = args.name.clone();
    opts.max_file_size = args.max_file_size;
    opts.languages = args.languages.clone();
    opts.exclude = args.exclude.clone();
    opts.respect_ignore_files = !args.no_ignore;
    opts.commit_every = args.commit_every;
    // The engine checks the options before anything is written, so a typo leaves no index
    // behind (a server checks them on its side).
    let checked = if remote {
        None
    } else {
        Some(opts.validate().map_err(advise)?)
    };
    let options = EngineOptions {
        model: args.model.choice(),
        lexical_only: args.lexical_only,
        threads: args.threads,
        vector_codes: args.codes.vector_codes,
        ..EngineOptions::default()
    };
    let backend = Backend::open_for_writing(
        args.index.clone(),
        Some(args.root.join(DEFAULT_INDEX_DIR)),
        &args.server,
        options,
        args.rebuild,
    )?;

    // Whether the run embeds: the local index says so; a server is asked once (a failure only
    // costs the embed phase its name).
    let vectors = match backend.local_embedding() {
        Some(_) => true,
        None if remote => backend.stats().is_ok_and(|s| s.embedding.is_some()),
        None => false,
    };
    let progress = Progress::new(args.quiet || args.json, vectors);
    let skipped: Mutex<Vec<(String, String, Option<String>)>> = Mutex::new(Vec::new());
    let started = AtomicBool::new(false);
    let on_event = |e: &IndexEvent| match e {
        IndexEvent::Progress(p) => {
            started.store(true, Ordering::Relaxed);
            progress.update(p)
        }
        IndexEvent::Skipped {
            path,
            reason,
            detail,
        } => {
            if let Ok(mut s) = skipped.lock() {
                s.push((path.clone(), reason.clone(), detail.clone()));
            }
        }
        IndexEvent::Committed { .. } => {}
    };
    let cancel = CancellationToken::new();
    let result = backend.index(&opts, checked.as_ref(), &on_event, &cancel);
    progress.finish();
    // Only a run that got going has a "last commit" worth mentioning; a refusal up front (a
    // locked index, a bad option) is said as it is.
    let summary = if started.load(Ordering::Relaxed) {
        result.context("indexing failed; the index keeps its last commit")?
    } else {
        result?
    };
    let skipped = skipped.into_inner().unwrap_or_default();
    report(&args, &summary, skipped, &backend.location())
}

/// Prints a run's summary (as JSON with --json).
fn report(
    args: &IndexArgs,
    summary: &gnn_coder_engine::IndexSummary,
    skipped: Vec<(String, String, Option<String>)>,
    index: &str,
) -> Result<()> {
    if args.json {
        let out = JsonSummary {
            index: index.to_string(),
            summary,
        };
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    let s = summary;
    eprintln!(
        "indexed {} files ({}) into {} units in {:.1}s as {}: {} added, {} changed, {} removed, {} unchanged files",
        s.files,
        human_bytes(s.bytes),
        s.units,
        s.seconds,
        s.repository,
        s.files_added,
        s.files_changed,
        s.files_removed,
        s.files_unchanged,
    );
    match &s.embedding {
        Some(info) => {
            if s.embeddings_computed == 0 {
                let reused = match s.embeddings_reused {
                    0 => String::new(),
                    n => format!(": {n} units' vectors reused from the cache"),
                };
                eprintln!("nothing new to embed with {}{reused}", info.model);
            } else {
                eprintln!(
                    "embedded {} units ({} reused from the cache) with {} in {:.1}s ({:.0} units/s)",
                    s.embeddings_computed,
                    s.embeddings_reused,
                    info.model,
                    s.embed_seconds,
                    s.embeddings_computed as f64 / s.embed_seconds.max(1e-9)
                );
            }
            if !info.trained {
                eprintln!(
                    "note: the GNN-Coder head is untrained; semantic scores come from the \
                     pretrained MiniLM vectors alone (zero-shot)"
                );
            }
        }
        None => eprintln!("lexical-only index (no vectors)"),
    }
    if s.files_with_syntax_errors > 0 {
        eprintln!(
            "{} files had syntax errors; their recoverable units were indexed",
            s.files_with_syntax_errors
        );
    }
    let shown: BTreeMap<&String, &u64> = s
        .skipped
        .iter()
        .filter(|(r, _)| r.as_str() != "unsupported language")
        .collect();
    if !shown.is_empty() {
        let parts: Vec<String> = shown.iter().map(|(r, n)| format!("{n} {r}")).collect();
        eprintln!("skipped files: {}", parts.join(", "));
        let list = skipped;
        let limit = if args.verbose { usize::MAX } else { 10 };
        for (path, reason, detail) in list.iter().take(limit) {
            match detail {
                Some(d) => eprintln!("  {path} ({reason}: {d})"),
                None => eprintln!("  {path} ({reason})"),
            }
        }
        if list.len() > limit {
            eprintln!(
                "  ... and {} more (--verbose lists them all)",
                list.len() - limit
            );
        }
    }
    eprintln!("index: {index}");
    Ok(())
}
