//! `gnn-coder index`: add or refresh a repository in an index.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, IndexEvent, IndexOptions, ModelChoice,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::remote::{ServerFlags, advise_status};
use crate::{DEFAULT_INDEX_DIR, advise};
use gnn_coder_service::proto as pb;

/// Flags naming the model, shared by the commands that embed.
#[derive(Args, Clone, Default)]
pub struct ModelFlags {
    /// Directory of the pretrained model (default: $GNN_CODER_MODEL_DIR, ./models/all-MiniLM-L6-v2,
    /// or the models/ folder of the checkout gnn-coder was built from).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Trained GNN-Coder weights (a `gnn-coder train` OUT/weights directory; default: the
    /// shipped weights/gnn-coder, or $GNN_CODER_WEIGHTS; `none`: zero-shot MiniLM vectors).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
}

impl ModelFlags {
    pub fn choice(&self) -> ModelChoice {
        ModelChoice {
            model_dir: self.model_dir.clone(),
            weights: self.weights.clone(),
        }
    }
}

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
    let root = args.root.as_path();
    if args.server.server.is_none() && !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    // Check cheap arguments before anything is written, so a typo leaves no index behind.
    for lang in &args.languages {
        gnn_coder_syntax::Language::by_name(lang).with_context(|| {
            format!("unknown language {lang:?} (`gnn-coder languages` lists them)")
        })?;
    }
    for glob in &args.exclude {
        globset::Glob::new(glob).with_context(|| format!("bad --exclude glob {glob:?}"))?;
    }
    if args.commit_every == 0 {
        bail!("--commit-every must be at least 1");
    }
    if args.server.server.is_some() {
        return remote(&args);
    }
    let index_dir = args
        .index
        .clone()
        .unwrap_or_else(|| root.join(DEFAULT_INDEX_DIR));
    let options = EngineOptions {
        model: args.model.choice(),
        lexical_only: args.lexical_only,
        threads: args.threads,
    };
    let engine = Engine::open_or_create(&index_dir, options, args.rebuild)
        .map_err(advise)
        .with_context(|| format!("cannot open the index at {}", index_dir.display()))?;
    if let Some(w) = engine.model_warning() {
        eprintln!(
            "warning: {w}\nwarning: building a lexical-only index (run scripts/fetch-model.sh for vectors)"
        );
    }

    let mut opts = IndexOptions::new(root);
    opts.name = args.name.clone();
    opts.max_file_size = args.max_file_size;
    opts.languages = args.languages.clone();
    opts.exclude = args.exclude.clone();
    opts.respect_ignore_files = !args.no_ignore;
    opts.commit_every = args.commit_every;

    let bar = progress_bar(args.quiet || args.json);
    let skipped: Mutex<Vec<(String, String, Option<String>)>> = Mutex::new(Vec::new());
    let on_event = |e: &IndexEvent| match e {
        IndexEvent::Progress(p) => show_progress(&bar, p),
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
    let result = engine.index_repository(&opts, &on_event, &cancel);
    bar.finish_and_clear();
    let summary = result
        .map_err(advise)
        .context("indexing failed; the index keeps its last commit")?;
    let skipped = skipped.into_inner().unwrap_or_default();
    report(&args, &summary, skipped, &index_dir.display().to_string())
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
            eprintln!(
                "embedded {} units ({} reused from the cache) with {} in {:.1}s ({:.0} units/s)",
                s.embeddings_computed,
                s.embeddings_reused,
                info.model,
                s.embed_seconds,
                s.embeddings_computed as f64 / s.embed_seconds.max(1e-9)
            );
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

/// `index --server`: the server indexes a root on its own disk; progress streams back.
fn remote(args: &IndexArgs) -> Result<()> {
    if args.index.is_some() || args.rebuild || args.lexical_only || args.no_ignore {
        bail!("--index, --rebuild, --lexical-only and --no-ignore apply to a local index only");
    }
    if args.model.model_dir.is_some() || args.model.weights.is_some() {
        bail!("--model-dir and --weights apply to a local index; the server has its own model");
    }
    let root = crate::remote::server_path(&args.root)?;
    let request = pb::IndexRepositoryRequest {
        root: root.to_string_lossy().into_owned(),
        name: args.name.clone().unwrap_or_default(),
        max_file_size: args.max_file_size,
        languages: args.languages.clone(),
        exclude_globs: args.exclude.clone(),
        commit_every: u32::try_from(args.commit_every).unwrap_or(u32::MAX),
        progress_interval_ms: 100,
    };
    let url = args.server.server.clone().unwrap_or_default();
    let rt = crate::remote::runtime()?;
    let (summary, skipped) = rt.block_on(async {
        let mut client = args.server.connect().await?;
        let bar = progress_bar(args.quiet || args.json);
        let mut stream = client
            .index_repository(request)
            .await
            .map_err(advise_status)?
            .into_inner();
        let mut skipped = Vec::new();
        let mut summary = None;
        use pb::index_event::Event;
        loop {
            let event = match stream.message().await {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(s) => {
                    bar.finish_and_clear();
                    return Err(advise_status(s)
                        .context("indexing failed; the index keeps its last commit"));
                }
            };
            match event.event {
                Some(Event::Progress(p)) => {
                    show_progress(&bar, &gnn_coder_service::convert::progress_from_wire(&p))
                }
                Some(Event::Skipped(f)) => {
                    skipped.push((f.path, f.reason, (!f.detail.is_empty()).then_some(f.detail)))
                }
                Some(Event::Committed(_)) | None => {}
                Some(Event::Summary(s)) => summary = Some(s),
            }
        }
        bar.finish_and_clear();
        let Some(wire) = summary else {
            bail!("the server ended the stream without a summary");
        };
        let mut summary = gnn_coder_service::convert::summary_from_wire(&wire);
        if !wire.model.is_empty() {
            let stats = client
                .get_stats(pb::GetStatsRequest {})
                .await
                .map_err(advise_status)?
                .into_inner();
            summary.embedding = Some(gnn_coder_engine::EmbeddingInfo {
                model: wire.model.clone(),
                dim: stats.dim as usize,
                trained: stats.trained,
            });
        }
        Ok((summary, skipped))
    })?;
    report(args, &summary, skipped, &url)
}

/// Draws one progress event (local or from a server).
fn show_progress(bar: &ProgressBar, p: &gnn_coder_engine::IndexProgress) {
    if bar.length() != Some(p.files_total) {
        bar.set_length(p.files_total);
    }
    bar.set_position(p.files_done);
    bar.set_message(format!(
        "{} units, {} embedded, {} reused, {} unchanged files",
        p.units, p.embeddings_computed, p.embeddings_reused, p.files_unchanged
    ));
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
