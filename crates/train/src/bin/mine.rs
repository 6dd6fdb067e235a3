//! `mine --sources data/train-src --out data/train`: mines CodeSearchNet-style training pairs
//! from the packages fetched by `training/fetch_train_sources.sh` (see the `mine` module of
//! `gnn-coder-train` for the method). Writes `pairs-train.jsonl`, `pairs-valid.jsonl` and
//! `stats.json`; progress goes to stderr.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use gnn_coder_train::{MineOptions, manifest_packages, mine_sources};

#[derive(Parser, Debug)]
#[command(about = "Mine (docstring first sentence, code) training pairs from fetched packages")]
struct Args {
    /// Sources tree: SOURCES/<python|rust|javascript|typescript|go|java|...>/<package dir>/...
    #[arg(long, default_value = "data/train-src")]
    sources: PathBuf,
    /// Output directory.
    #[arg(long, default_value = "data/train")]
    out: PathBuf,
    /// Manifest whose packages must never be mined (default: the dev benchmark manifest,
    /// <repo>/../shared/bench/dev/manifest.json and manifest-ml.json). Repeatable.
    #[arg(long)]
    deny_manifest: Vec<PathBuf>,
    /// Queries that must not appear in the output (lines of JSON with a "query" field; default:
    /// <repo>/../shared/bench/dev/queries.jsonl and queries-ml.jsonl). Repeatable.
    #[arg(long)]
    deny_queries: Vec<PathBuf>,
    /// Fraction of the packages of each language that go to validation.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f64,
    /// Parser threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// The files of `../shared/bench/dev` (beside the checkout) of these names that exist.
fn dev_files(names: &[&str]) -> Vec<PathBuf> {
    let dev = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/dev");
    names
        .iter()
        .map(|n| dev.join(n))
        .filter(|p| p.is_file())
        .collect()
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.sources.is_dir() {
        bail!(
            "no sources at {} (run training/fetch_train_sources.sh first)",
            args.sources.display()
        );
    }
    let mut deny_manifests = args.deny_manifest.clone();
    if deny_manifests.is_empty() {
        deny_manifests = dev_files(&["manifest.json", "manifest-ml.json"]);
        if deny_manifests.len() < 2 {
            eprintln!("warning: a dev manifest is missing: its packages are not denied");
        }
    }
    let mut opts = MineOptions {
        valid_fraction: args.valid_fraction,
        threads: args.threads,
        ..MineOptions::default()
    };
    for m in &deny_manifests {
        let text =
            std::fs::read_to_string(m).with_context(|| format!("reading {}", m.display()))?;
        let names = manifest_packages(&text).with_context(|| format!("in {}", m.display()))?;
        eprintln!("denying {} packages of {}", names.len(), m.display());
        opts.deny.extend(names);
    }
    let mut deny_queries = args.deny_queries.clone();
    if deny_queries.is_empty() {
        deny_queries = dev_files(&["queries.jsonl", "queries-ml.jsonl"]);
    }
    for q in &deny_queries {
        let text =
            std::fs::read_to_string(q).with_context(|| format!("reading {}", q.display()))?;
        let before = opts.deny_queries.len();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("in {}", q.display()))?;
            if let Some(s) = v.get("query").and_then(|s| s.as_str()) {
                opts.deny_queries.insert(s.trim().to_lowercase());
            }
        }
        eprintln!(
            "denying {} queries of {}",
            opts.deny_queries.len() - before,
            q.display()
        );
    }
    let started = std::time::Instant::now();
    let out = mine_sources(&args.sources, &opts, &|line| eprintln!("{line}"))?;
    out.write(&args.out)?;
    let s = &out.stats;
    eprintln!(
        "{} packages, {} files, {} functions, {} documented -> {} pairs ({} train, {} valid) in {:.1}s",
        s.packages,
        s.files,
        s.functions,
        s.documented,
        s.pairs,
        s.train,
        s.valid,
        started.elapsed().as_secs_f64()
    );
    for (lang, splits) in &s.per_language {
        eprintln!("  {lang}: {splits:?}");
    }
    eprintln!("  dropped: {:?}", s.dropped);
    if !s.denied.is_empty() {
        eprintln!("  refused (deny list): {:?}", s.denied);
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
