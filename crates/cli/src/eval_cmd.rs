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

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_syntax::CodeUnit;
use gnn_coder_train::cache::CacheText;
use gnn_coder_train::trainer::encode_cache;
use gnn_coder_train::{Example, example_from_pair, mean_angular_margin, read_pairs, retrieval};
use serde::{Deserialize, Serialize};

use crate::train_cmd::{Loaded, ModelArgs, cached, load_model, pair_caches, threads};

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

#[derive(Debug, Deserialize)]
struct GoldQuery {
    id: serde_json::Value,
    query: String,
    path: String,
    line: usize,
    end_line: usize,
    #[serde(default)]
    lang: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Score {
    n: usize,
    mrr10: f64,
    r1: f64,
    r10: f64,
}

fn norm_path(p: &str) -> String {
    p.replace('\\', "/")
        .trim_start_matches(['.', '/'])
        .to_string()
}

/// score.py's hit rule.
fn is_hit(g: &GoldQuery, u: &CodeUnit) -> bool {
    if !norm_path(&u.path).ends_with(&norm_path(&g.path)) {
        return false;
    }
    let span = g.end_line.saturating_sub(g.line);
    u.start_line <= g.line && g.line <= u.end_line && (u.end_line - u.start_line) <= span + 20
}

type Vectors = Vec<Vec<f32>>;

/// Query and code vectors of cached texts with the loaded weights.
fn encode(
    loaded: &Loaded,
    queries: &gnn_coder_train::StateCache,
    codes: &gnn_coder_train::StateCache,
) -> Result<(Vectors, Vectors)> {
    let tuned = loaded.head.tuned_layers;
    let c = encode_cache(
        &loaded.model,
        tuned,
        Some(loaded.head.use_graph),
        codes,
        usize::MAX,
    )?;
    let q = encode_cache(&loaded.model, tuned, None, queries, usize::MAX)?;
    Ok((q, c))
}

pub fn run(args: EvalArgs) -> Result<()> {
    if args.pairs.is_none() && args.bench.is_none() {
        bail!("nothing to evaluate: give --pairs FILE and/or --bench DIR --queries FILE");
    }
    if let Some(m) = args.query_mix.iter().find(|m| !(0.0..=1.0).contains(*m)) {
        bail!("--query-mix {m}: must be in [0, 1]");
    }
    let model_dir = gnn_coder_model::find_model_dir(args.model.model_dir.as_deref())
        .map_err(|e| crate::advise(e.into()))?;
    let weights = gnn_coder_model::resolve_weights(args.weights.as_deref())?;
    let device = burn::prelude::Device::flex();
    let loaded = load_model(
        &model_dir,
        weights.as_deref(),
        args.model.max_tokens,
        &device,
        None,
    )?;
    let tuned = loaded.head.tuned_layers;
    let n = loaded.model.transformer.num_layers();
    if tuned > 0 && args.split_layer != n - tuned {
        bail!(
            "these weights fine-tune {tuned} layers: evaluate with --split-layer {}",
            n - tuned
        );
    }
    let name = weights
        .as_ref()
        .map_or("zero-shot".to_string(), |w| w.display().to_string());
    if let Some(pairs) = &args.pairs {
        let ps = read_pairs(pairs).with_context(|| format!("cannot read {}", pairs.display()))?;
        let examples: Vec<Example> = ps
            .iter()
            .take(args.valid_limit)
            .map(|p| example_from_pair(p, 512))
            .collect();
        let cache_dir = args.cache_dir.clone().unwrap_or_else(|| {
            pairs
                .parent()
                .unwrap_or(Path::new("."))
                .join(".gnn-coder-eval-cache")
        });
        let (q, c) = pair_caches(
            "valid",
            &cache_dir,
            &loaded,
            &examples,
            args.split_layer,
            false,
            threads(args.model.threads),
            args.json,
        )?;
        let (queries, codes) = encode(&loaded, &q, &c)?;
        let gold: Vec<usize> = (0..codes.len()).collect();
        let r = retrieval(&queries, &codes, &gold);
        let mam = mean_angular_margin(&codes, 1000);
        if args.json {
            println!(
                "{}",
                serde_json::json!({"set": "valid", "weights": name, "n": r.n, "mrr10": r.mrr10,
                    "r1": r.r1, "r10": r.r10, "mam": mam})
            );
        } else {
            println!(
                "valid ({} pairs, pool {}): MRR@10 {:.4}  R@1 {:.4}  R@10 {:.4}  MAM {:.4}",
                r.n,
                codes.len(),
                r.mrr10,
                r.r1,
                r.r10,
                mam
            );
        }
    }
    if let (Some(bench), Some(queries)) = (&args.bench, &args.queries) {
        eval_bench(&args, &loaded, bench, queries, &name)?;
    }
    Ok(())
}

fn eval_bench(
    args: &EvalArgs,
    loaded: &Loaded,
    bench: &Path,
    queries_path: &Path,
    name: &str,
) -> Result<()> {
    let golds: Vec<GoldQuery> = {
        let f = std::fs::File::open(queries_path)
            .with_context(|| format!("cannot open {}", queries_path.display()))?;
        let mut out = Vec::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            out.push(serde_json::from_str(&line).with_context(|| {
                format!(
                    "{}, line {}: not a gold query",
                    queries_path.display(),
                    i + 1
                )
            })?);
        }
        out
    };
    // The candidates: every callable unit, exactly as `gnn-coder index` extracts them.
    let units: Vec<(CodeUnit, Option<gnn_coder_syntax::AstGraph>)> =
        gnn_coder_engine::collect_units(
            &gnn_coder_engine::IndexOptions::new(bench),
            true,
            threads(args.model.threads),
        )
        .map_err(crate::advise)
        .with_context(|| format!("cannot read {}", bench.display()))?
        .into_iter()
        .filter(|(u, _)| u.kind.is_callable())
        .collect();
    if units.is_empty() {
        bail!("no functions found under {}", bench.display());
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| bench.with_file_name(".gnn-coder-eval-cache"));
    // Cache names from the last two path components (`dev/corpus` -> `dev-corpus`), so two
    // benchmarks whose trees are both called `corpus` do not share (and rebuild) one cache.
    let set = bench
        .canonicalize()
        .unwrap_or_else(|_| bench.to_path_buf())
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("-");
    let qset = queries_path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code_texts: Vec<CacheText> = units
        .iter()
        .map(|(u, g)| CacheText {
            text: &u.code,
            graph: g.as_ref(),
            kind_offset: gnn_coder_model::kind_offset(&u.language),
        })
        .collect();
    let query_texts: Vec<CacheText> = golds
        .iter()
        .map(|g| CacheText {
            text: &g.query,
            graph: None,
            kind_offset: 0,
        })
        .collect();
    let nthreads = threads(args.model.threads);
    let cc = cached(
        &format!("{set} code"),
        &cache_dir.join(format!("{set}-codes")),
        loaded,
        &code_texts,
        args.split_layer,
        true,
        nthreads,
        args.json,
    )?;
    let qc = cached(
        &format!("{qset} queries"),
        &cache_dir.join(format!("{set}-{qset}")),
        loaded,
        &query_texts,
        args.split_layer,
        true,
        nthreads,
        args.json,
    )?;
    let (tuned_queries, codes) = encode(loaded, &qc, &cc)?;
    let zero_shot = match args.query_mix.iter().any(|&m| m != 0.0) {
        true => {
            let device = loaded.model.head.out_proj.weight.val().device();
            Some(gnn_coder_train::trainer::zero_shot_vectors(&qc, &device)?)
        }
        false => None,
    };
    for &m in &args.query_mix {
        let mut queries = tuned_queries.clone();
        if let Some(q0) = zero_shot.as_ref().filter(|_| m != 0.0) {
            for (q, z) in queries.iter_mut().zip(q0) {
                for (a, b) in q.iter_mut().zip(z) {
                    *a = (1.0 - m) * *a + m * b;
                }
                let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                q.iter_mut().for_each(|x| *x /= norm);
            }
        }
        let results = args.results.as_ref().map(|p| match args.query_mix.len() {
            1 => p.clone(),
            _ => {
                let stem = p.file_stem().unwrap_or_default().to_string_lossy();
                let name = match p.extension() {
                    Some(ext) => format!("{stem}-mix{m}.{}", ext.to_string_lossy()),
                    None => format!("{stem}-mix{m}"),
                };
                p.with_file_name(name)
            }
        });
        let set = match args.query_mix.len() {
            1 => set.clone(),
            _ => format!("{set} (query mix {m})"),
        };
        report(
            args.json,
            &set,
            &qset,
            name,
            &golds,
            &units,
            &queries,
            &codes,
            results.as_deref(),
        )?;
    }
    Ok(())
}

/// Rank every code for each query, score the gold ranks, print them (and write the results).
#[allow(clippy::too_many_arguments)]
fn report(
    json: bool,
    set: &str,
    qset: &str,
    name: &str,
    golds: &[GoldQuery],
    units: &[(CodeUnit, Option<gnn_coder_syntax::AstGraph>)],
    queries: &[Vec<f32>],
    codes: &[Vec<f32>],
    results: Option<&Path>,
) -> Result<()> {
    let mut results_out = match results {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    for (g, q) in golds.iter().zip(queries) {
        let mut scored: Vec<(f32, usize)> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| (q.iter().zip(c).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        let k = 10.min(scored.len());
        scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.truncate(k);
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let rank = scored
            .iter()
            .position(|&(_, i)| is_hit(g, &units[i].0))
            .map(|p| p + 1);
        for key in ["all", g.lang.as_str()] {
            let s = scores.entry(key.to_string()).or_default();
            s.n += 1;
            if let Some(r) = rank {
                s.mrr10 += 1.0 / r as f64;
                s.r10 += 1.0;
                if r == 1 {
                    s.r1 += 1.0;
                }
            }
        }
        if let Some(w) = results_out.as_mut() {
            let results: Vec<serde_json::Value> = scored
                .iter()
                .map(|&(s, i)| {
                    let u = &units[i].0;
                    serde_json::json!({"path": u.path, "start_line": u.start_line,
                        "end_line": u.end_line, "symbol": u.symbol, "language": u.language,
                        "score": s})
                })
                .collect();
            writeln!(w, "{}", serde_json::json!({"id": g.id, "results": results}))?;
        }
    }
    if let Some(mut w) = results_out {
        w.flush()?;
    }
    for s in scores.values_mut() {
        let n = s.n.max(1) as f64;
        s.mrr10 /= n;
        s.r1 /= n;
        s.r10 /= n;
    }
    // MAM over an evenly spaced sample of 1,000 candidates.
    let step = (codes.len() / 1000).max(1);
    let sample: Vec<Vec<f32>> = codes.iter().step_by(step).take(1000).cloned().collect();
    let mam = mean_angular_margin(&sample, 1000);
    if json {
        println!(
            "{}",
            serde_json::json!({"set": format!("{set}/{qset}"), "weights": name,
                "candidates": codes.len(), "scores": scores, "mam": mam})
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
            "{set}/{qset} ({} candidates, MAM {mam:.4}): {}",
            codes.len(),
            parts.join(" | ")
        );
    }
    Ok(())
}
