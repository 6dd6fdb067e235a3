//! `gnn-coder index`: walk, parse and index a repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_index::{BuildStats, IndexBuilder, IndexError};
use gnn_coder_syntax::{Language, Progress, SkipReason, WalkOptions, walk_repo};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::DEFAULT_INDEX_DIR;
use crate::semantic::{self, PendingUnit};

#[derive(Args)]
pub struct IndexArgs {
    /// Directory to index.
    root: PathBuf,
    /// Where to write the index (default: ROOT/.gnn-coder). An existing index there is replaced
    /// only once the new one is complete.
    #[arg(long)]
    index: Option<PathBuf>,
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
    /// Build only the lexical index (no model, no vectors).
    #[arg(long)]
    lexical_only: bool,
    /// Directory of the pretrained model (default: $GNN_CODER_MODEL_DIR, ./models/all-MiniLM-L6-v2,
    /// or the models/ folder of the checkout gnn-coder was built from).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Trained GNN-Coder weights (a `gnn-coder train` OUT/weights directory; default: the
    /// shipped weights/gnn-coder, or $GNN_CODER_WEIGHTS; `none`: zero-shot MiniLM vectors).
    #[arg(long, value_name = "DIR")]
    weights: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// List every skipped file in the summary.
    #[arg(short, long)]
    verbose: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    index: String,
    root: String,
    files: u64,
    units: u64,
    bytes: u64,
    seconds: f64,
    files_with_syntax_errors: usize,
    skipped: &'a BTreeMap<String, u64>,
    /// The model of the vectors; absent for a lexical-only index.
    embedding: Option<&'a gnn_coder_index::EmbeddingInfo>,
    embed_seconds: f64,
}

pub fn run(args: IndexArgs) -> Result<()> {
    let root = args.root.as_path();
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    for lang in &args.languages {
        Language::by_name(lang).with_context(|| {
            format!("unknown language {lang:?} (`gnn-coder languages` lists them)")
        })?;
    }
    // Check the globs before anything is written, so a typo leaves no half-made index behind.
    for glob in &args.exclude {
        globset::Glob::new(glob).with_context(|| format!("bad --exclude glob {glob:?}"))?;
    }
    let index_dir = args
        .index
        .clone()
        .unwrap_or_else(|| root.join(DEFAULT_INDEX_DIR));
    let threads = if args.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.threads
    };

    let mut opts = WalkOptions {
        max_file_size: args.max_file_size,
        respect_ignore_files: !args.no_ignore,
        languages: args.languages.clone(),
        exclude_globs: args.exclude.clone(),
        threads,
        ..WalkOptions::default()
    };
    // Never index our own index when it lives inside the root under a visible name.
    if let Some(rel) = relative_inside(root, &index_dir) {
        opts.exclude_globs.push(format!("{rel}/**"));
    }

    // The model, unless asked not to; without one the index is lexical-only, said loudly.
    let weights = if args.lexical_only {
        None
    } else {
        semantic::resolve_weights(args.weights.as_deref())?
    };
    let embedder = if args.lexical_only {
        None
    } else {
        match semantic::find_model_dir(args.model_dir.as_deref()) {
            Ok(dir) => Some(semantic::load_embedder(&dir, weights.as_deref())?),
            Err(e) if args.model_dir.is_none() => {
                eprintln!("warning: {e:#}\nwarning: building a lexical-only index");
                None
            }
            Err(e) => return Err(e),
        }
    };
    // AST graphs feed the graph encoder, which only runs with trained weights that use it.
    opts.extract.graphs = embedder.as_ref().is_some_and(|e| e.graphs_enabled());

    let started = Instant::now();
    let mut builder = IndexBuilder::create(&index_dir, threads)
        .with_context(|| format!("cannot create the index at {}", index_dir.display()))?;
    let bar = progress_bar(args.quiet || args.json);
    let failure: Mutex<Option<IndexError>> = Mutex::new(None);
    let pending: Mutex<Vec<PendingUnit>> = Mutex::new(Vec::new());
    let on_progress = |p: Progress| {
        if bar.length() != Some(p.files_total as u64) {
            bar.set_length(p.files_total as u64);
        }
        bar.set_position(p.files_done as u64);
        bar.set_message(format!(
            "{} units, {}",
            p.units_done,
            human_bytes(p.bytes_done)
        ));
    };
    let sink = |file: gnn_coder_syntax::ParsedFile| {
        let mut graphs = file.graphs.into_iter();
        for unit in file.units {
            let graph = graphs.next();
            match builder.add(&unit) {
                Ok(id) if embedder.is_some() => {
                    if let Ok(mut p) = pending.lock() {
                        p.push(PendingUnit {
                            id,
                            language: unit.language,
                            code: unit.code,
                            graph,
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if let Ok(mut slot) = failure.lock() {
                        slot.get_or_insert(e);
                    }
                    return;
                }
            }
        }
    };
    let walked = walk_repo(root, &opts, &on_progress, &sink);
    bar.finish_and_clear();
    let summary = walked.with_context(|| format!("cannot walk {}", root.display()))?;
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(anyhow::Error::new(e).context("indexing failed; the previous index is kept"));
    }

    let mut embed_seconds = 0.0;
    if let Some(embedder) = &embedder {
        let pending = pending.into_inner().unwrap_or_default();
        let embed_started = Instant::now();
        let bar = progress_bar(args.quiet || args.json);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} units embedded ({per_sec}, eta {eta})",
        ) {
            bar.set_style(style);
        }
        bar.set_length(pending.len() as u64);
        let rows = semantic::embed_units(embedder, pending, &|n| bar.set_position(n as u64));
        bar.finish_and_clear();
        let rows = rows.context("embedding failed; the previous index is kept")?;
        builder.set_vectors(
            semantic::embedding_info(embedder, weights.as_deref()),
            &rows,
        )?;
        embed_seconds = embed_started.elapsed().as_secs_f64();
    }

    let mut skipped = BTreeMap::new();
    for (reason, n) in &summary.skip_counts {
        if *reason != SkipReason::ExcludedDir {
            skipped.insert(reason.as_str().to_string(), *n as u64);
        }
    }
    let stats = BuildStats {
        files: summary.files_parsed as u64,
        units: 0, // filled in by finish()
        bytes: summary.bytes_parsed,
        skipped,
        seconds: started.elapsed().as_secs_f64(),
    };
    let manifest = builder
        .finish(root, stats)
        .context("cannot commit the index; the previous index is kept")?;
    let seconds = started.elapsed().as_secs_f64();

    let out = Summary {
        index: index_dir.display().to_string(),
        root: manifest.root.clone(),
        files: manifest.stats.files,
        units: manifest.stats.units,
        bytes: manifest.stats.bytes,
        seconds,
        files_with_syntax_errors: summary.files_with_errors,
        skipped: &manifest.stats.skipped,
        embedding: manifest.embedding.as_ref(),
        embed_seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    eprintln!(
        "indexed {} files ({}) into {} units in {:.1}s ({}/s, {:.0} units/s)",
        out.files,
        human_bytes(out.bytes),
        out.units,
        seconds,
        human_bytes((out.bytes as f64 / seconds.max(1e-9)) as u64),
        out.units as f64 / seconds.max(1e-9),
    );
    match out.embedding {
        Some(info) => {
            eprintln!(
                "embedded {} units with {} in {:.1}s ({:.0} units/s)",
                out.units,
                info.model,
                embed_seconds,
                out.units as f64 / embed_seconds.max(1e-9)
            );
            semantic::warn_if_untrained(info);
        }
        None => eprintln!("lexical-only index (no vectors)"),
    }
    if out.files_with_syntax_errors > 0 {
        eprintln!(
            "{} files had syntax errors; their recoverable units were indexed",
            out.files_with_syntax_errors
        );
    }
    if !out.skipped.is_empty() {
        let parts: Vec<String> = out
            .skipped
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect();
        eprintln!("skipped files: {}", parts.join(", "));
        let limit = if args.verbose { usize::MAX } else { 10 };
        for s in summary.skipped.iter().take(limit) {
            if s.reason == SkipReason::ExcludedDir {
                continue;
            }
            match &s.detail {
                Some(d) => eprintln!("  {} ({}: {d})", s.path, s.reason),
                None => eprintln!("  {} ({})", s.path, s.reason),
            }
        }
        if summary.skipped.len() > limit {
            eprintln!(
                "  ... and {} more (--verbose lists them all)",
                summary.skipped.len() - limit
            );
        }
    }
    eprintln!("index: {}", index_dir.display());
    Ok(())
}

fn progress_bar(hidden: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(10));
    if hidden {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files ({per_sec}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `index` relative to `root`, `/`-separated, when it lies inside it.
fn relative_inside(root: &Path, index: &Path) -> Option<String> {
    let root = root.canonicalize().ok()?;
    let parent = index.parent()?.canonicalize().ok()?;
    let index = parent.join(index.file_name()?);
    let rel = index.strip_prefix(&root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (examples: 1048576, 512K, 2M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
