//! `gnn-coder eval`: retrieval quality of a model (trained weights or zero-shot) on validation
//! pairs and on benchmark corpora, semantic-only.
//!
//! A benchmark is a source tree (`--bench DIR`) and its queries (`--queries FILE`, the
//! `../shared/bench` format: `{"id", "query", "path", "line", "end_line", "lang"}`). Every
//! function/method of the tree is a candidate, exactly as `gnn-coder index` extracts them; each
//! query's top 10 by cosine is scored with `../shared/bench/score.py`'s rule (same file, span
//! holds the gold definition line, at most 20 lines longer than the gold). `--results FILE`
//! writes the batch-search contract's JSONL so `score.py` can check the numbers. Transformer
//! states are cached (`--cache-dir`), so evaluating another set of weights costs only the
//! head (and the tuned layers).
//!
//! The scoring is [`gnn_coder_train::eval`]; this module collects a benchmark's candidates with
//! the engine, calls it and prints the scores.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_train::Progress;
use gnn_coder_train::eval::{
    Bench, BenchScores, EvalConfig, Evaluator, bench_candidates, check_query_mix, read_gold_queries,
};
use gnn_coder_train::setup::threads;

use crate::train_flags::{ModelArgs, draw_cache_progress};

#[derive(Args)]
pub struct EvalArgs {
    /// Trained weights to evaluate (default: the shipped weights; `none`: zero-shot MiniLM).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Validation pairs (JSONL from the mine tool): MRR over the pool of their codes.
    #[arg(long, value_name = "FILE")]
    pairs: Option<PathBuf>,
    /// Use at most this many validation pairs.
    #[arg(long, default_value_t = 1000)]
    valid_limit: usize,
    /// Benchmark source tree (with --queries).
    #[arg(long, value_name = "DIR", requires = "queries")]
    bench: Option<PathBuf>,
    /// Benchmark queries (JSONL with gold path/line/end_line/lang).
    #[arg(long, value_name = "FILE", requires = "bench")]
    queries: Option<PathBuf>,
    /// Write the benchmark's results in the batch-search format (for score.py).
    #[arg(long, value_name = "FILE")]
    results: Option<PathBuf>,
    /// Cached transformer states (default: a `.gnn-coder-eval-cache` directory beside the
    /// benchmark / pairs file).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Layer whose output the cache keeps (must be layers - tuned_layers of fine-tuned weights).
    #[arg(long, default_value_t = 4)]
    split_layer: usize,
    /// Research knob: benchmark query vectors become normalize((1 - M) q + M q0), q0 the
    /// zero-shot MiniLM vector of the query (the target of the query distillation). Several
    /// values (comma-separated) are scored from one encoding; with more than one, `--results`
    /// gets `-mixM` before its extension.
    #[arg(long, value_delimiter = ',', default_value = "0", value_name = "M")]
    query_mix: Vec<f32>,
    #[command(flatten)]
    model: ModelArgs,
    /// One JSON object per evaluated set on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.pairs.is_none() && args.bench.is_none() {
        bail!("nothing to evaluate: give --pairs FILE and/or --bench DIR --queries FILE");
    }
    check_query_mix(&args.query_mix)?;
    let model_dir = gnn_coder_model::find_model_dir(args.model.model_dir.as_deref())
        .map_err(|e| crate::advice::advise(e.into()))?;
    let evaluator = Evaluator::load(EvalConfig {
        model: args.model.config(model_dir),
        weights: args.weights.clone(),
        split_layer: args.split_layer,
        cache_dir: args.cache_dir.clone(),
    })?;
    let json = args.json;
    let progress = |p: &Progress<'_>| draw_cache_progress(p, json);
    let name = evaluator.name();
    if let Some(pairs) = &args.pairs {
        let s = evaluator.pairs(pairs, args.valid_limit, &progress)?;
        let r = &s.retrieval;
        if json {
            println!(
                "{}",
                serde_json::json!({"set": "valid", "weights": name, "n": r.n, "mrr10": r.mrr10,
                    "r1": r.r1, "r10": r.r10, "mam": s.mam})
            );
        } else {
            println!(
                "valid ({} pairs, pool {}): MRR@10 {:.4}  R@1 {:.4}  R@10 {:.4}  MAM {:.4}",
                r.n, s.pool, r.mrr10, r.r1, r.r10, s.mam
            );
        }
    }
    if let (Some(bench), Some(queries)) = (&args.bench, &args.queries) {
        eval_bench(&args, &evaluator, bench, queries, &progress)?;
    }
    Ok(())
}

/// Score the benchmark `bench` with the gold queries in `queries_path`.
fn eval_bench(
    args: &EvalArgs,
    evaluator: &Evaluator,
    bench: &Path,
    queries_path: &Path,
    progress: &(dyn Fn(&Progress<'_>) + Sync),
) -> Result<()> {
    let golds = read_gold_queries(queries_path)?;
    // The candidates: every callable unit, exactly as `gnn-coder index` extracts them.
    let units = gnn_coder_engine::collect_units(
        &gnn_coder_engine::IndexOptions::new(bench),
        true,
        threads(args.model.threads),
    )
    .map_err(crate::advice::advise)
    .with_context(|| format!("cannot read {}", bench.display()))?;
    let candidates = bench_candidates(bench, units)?;
    let bench = Bench {
        dir: bench,
        queries_path,
        golds: &golds,
        candidates: &candidates,
        results: args.results.as_deref(),
        query_mix: &args.query_mix,
    };
    evaluator.bench(&bench, progress, &mut |s| {
        print_scores(s, evaluator.name(), args.json)
    })?;
    Ok(())
}

/// Print a benchmark's scores (one JSON object with `--json`).
fn print_scores(s: &BenchScores, name: &str, json: bool) {
    let BenchScores {
        set,
        qset,
        candidates,
        scores,
        mam,
    } = s;
    if json {
        println!(
            "{}",
            serde_json::json!({"set": format!("{set}/{qset}"), "weights": name,
                "candidates": candidates, "scores": scores, "mam": mam})
        );
    } else {
        let parts: Vec<String> = scores
            .iter()
            .map(|(k, s)| {
                format!(
                    "{k}: n={} mrr10={:.4} r1={:.4} r10={:.4}",
                    s.n, s.mrr10, s.r1, s.r10
                )
            })
            .collect();
        println!(
            "{set}/{qset} ({candidates} candidates, MAM {mam:.4}): {}",
            parts.join(" | ")
        );
    }
}
