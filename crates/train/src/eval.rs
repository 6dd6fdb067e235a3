//! Retrieval quality of a model (trained weights or zero-shot) on validation pairs and on
//! benchmark corpora, semantic-only.
//!
//! # Design
//!
//! An [`Evaluator`] holds one loaded model (on burn's `flex` device: evaluation needs no
//! gradients) and the settings its caches are built with. It scores two kinds of sets:
//!
//! * **Pairs** ([`Evaluator::pairs`]): validation pairs (JSONL from the mine tool); every query
//!   is ranked against the pool of all their codes (MRR@10, R@1, R@10, and the Mean Angular
//!   Margin of the codes).
//! * **Benchmarks** ([`Evaluator::bench`]): a source tree and its gold queries (the
//!   `../shared/bench` format: `{"id", "query", "path", "line", "end_line", "lang"}`). The
//!   candidates are the tree's callable units as `gnn-coder index` extracts them; the caller
//!   collects them (with the engine) and [`bench_candidates`] keeps the callables. Each query's
//!   top 10 by cosine is scored with `../shared/bench/score.py`'s rule (same file, span holds
//!   the gold definition line, at most 20 lines longer than the gold), overall and per
//!   language, and can be written in the batch-search contract's JSONL so `score.py` can check
//!   the numbers.
//!
//! Transformer states are cached (by default in a `.gnn-coder-eval-cache` directory beside the
//! benchmark or pairs file), so evaluating another set of weights costs only the head and the
//! tuned layers. A benchmark's caches are named from the last two components of its path
//! (`dev/corpus` -> `dev-corpus`), so two trees both called `corpus` do not share one cache.
//!
//! The research knob `query_mix` scores query vectors `normalize((1 - M) q + M q0)`, `q0` the
//! zero-shot vector of the query, for several `M` from one encoding.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use burn::prelude::Device;
use gnn_coder_syntax::{AstGraph, CodeUnit};
use serde::{Deserialize, Serialize};

use crate::cache::{CacheText, StateCache};
use crate::error::{ErrorContext, Result, TrainError};
use crate::example::{Example, example_from_pair, read_pairs};
use crate::metrics::{Retrieval, mean_angular_margin, retrieval};
use crate::progress::ProgressFn;
use crate::setup::{CacheBuilder, Loaded, MAX_GRAPH_NODES, ModelConfig, load_model, threads};
use crate::trainer::{encode_cache, zero_shot_vectors};

/// A benchmark candidate: a unit of the tree and its AST graph.
pub type Candidate = (CodeUnit, Option<AstGraph>);

/// Query and code vectors.
type Vectors = Vec<Vec<f32>>;

/// What to evaluate with.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalConfig {
    pub model: ModelConfig,
    /// Trained weights as given (resolved by [`gnn_coder_model::resolve_weights`]: `None` =
    /// the shipped weights, `none` = zero-shot).
    pub weights: Option<PathBuf>,
    /// Layer whose output the caches keep (must be layers - tuned layers of fine-tuned weights).
    pub split_layer: usize,
    /// Cached transformer states (default: `.gnn-coder-eval-cache` beside the set).
    pub cache_dir: Option<PathBuf>,
}

/// Every `query_mix` value is in [0, 1]; check before any work.
pub fn check_query_mix(mix: &[f32]) -> Result<()> {
    match mix.iter().find(|m| !(0.0..=1.0).contains(*m)) {
        Some(m) => Err(TrainError::Input(format!(
            "--query-mix {m}: must be in [0, 1]"
        ))),
        None => Ok(()),
    }
}

/// A benchmark's gold query.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldQuery {
    pub id: serde_json::Value,
    pub query: String,
    pub path: String,
    pub line: usize,
    pub end_line: usize,
    #[serde(default)]
    pub lang: String,
}

/// Read a benchmark's gold queries (JSONL; blank lines skipped).
pub fn read_gold_queries(path: &Path) -> Result<Vec<GoldQuery>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .with_context(|| format!("{}, line {}: not a gold query", path.display(), i + 1))?,
        );
    }
    Ok(out)
}

/// The callable units of `units` (collected from `dir`), or an error if there are none.
pub fn bench_candidates(dir: &Path, units: Vec<Candidate>) -> Result<Vec<Candidate>> {
    let units: Vec<Candidate> = units
        .into_iter()
        .filter(|(u, _)| u.kind.is_callable())
        .collect();
    if units.is_empty() {
        return Err(TrainError::Input(format!(
            "no functions found under {}",
            dir.display()
        )));
    }
    Ok(units)
}

/// Retrieval scores of a set of queries (averages over `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Score {
    pub n: usize,
    pub mrr10: f64,
    pub r1: f64,
    pub r10: f64,
}

/// The scores of validation pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct PairsScore {
    pub retrieval: Retrieval,
    /// Codes in the pool (one per pair).
    pub pool: usize,
    /// Mean Angular Margin of the codes.
    pub mam: f64,
}

/// A benchmark to score.
#[derive(Debug, Clone, Copy)]
pub struct Bench<'a> {
    /// The source tree.
    pub dir: &'a Path,
    /// The gold queries' file (its stem names the query set).
    pub queries_path: &'a Path,
    pub golds: &'a [GoldQuery],
    /// From [`bench_candidates`].
    pub candidates: &'a [Candidate],
    /// Write each query's top 10 here (batch-search JSONL); with several `query_mix` values,
    /// `-mixM` is added before the extension.
    pub results: Option<&'a Path>,
    /// Query mixes to score (see the module docs); `[0.0]` for plain vectors.
    pub query_mix: &'a [f32],
}

/// The scores of a benchmark (for one query mix).
#[derive(Debug, Clone, PartialEq)]
pub struct BenchScores {
    /// The benchmark's name (`dev-corpus`, with ` (query mix M)` when several are scored).
    pub set: String,
    /// The query set's name.
    pub qset: String,
    pub candidates: usize,
    /// By language, and `all`.
    pub scores: BTreeMap<String, Score>,
    /// Mean Angular Margin of an evenly spaced sample of 1,000 candidates.
    pub mam: f64,
}

/// A loaded model to evaluate (see the module docs).
pub struct Evaluator {
    loaded: Loaded,
    name: String,
    split_layer: usize,
    cache_dir: Option<PathBuf>,
    threads: usize,
}

impl Evaluator {
    /// Load the model and the weights of `cfg`; fine-tuned weights need the matching split.
    pub fn load(cfg: EvalConfig) -> Result<Self> {
        let weights = gnn_coder_model::resolve_weights(cfg.weights.as_deref())?;
        let loaded = load_model(
            &cfg.model.dir,
            weights.as_deref(),
            cfg.model.max_tokens,
            &Device::flex(),
            None,
        )?;
        let tuned = loaded.head.tuned_layers;
        let n = loaded.model.transformer.num_layers();
        if tuned > 0 && cfg.split_layer != n - tuned {
            return Err(TrainError::Input(format!(
                "these weights fine-tune {tuned} layers: evaluate with --split-layer {}",
                n - tuned
            )));
        }
        let name = weights
            .as_ref()
            .map_or("zero-shot".to_string(), |w| w.display().to_string());
        Ok(Self {
            loaded,
            name,
            split_layer: cfg.split_layer,
            cache_dir: cfg.cache_dir,
            threads: threads(cfg.model.threads),
        })
    }

    /// The evaluated weights' path, or `zero-shot`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Score the first `limit` pairs of `pairs` over the pool of their codes.
    pub fn pairs(
        &self,
        pairs: &Path,
        limit: usize,
        progress: &ProgressFn<'_>,
    ) -> Result<PairsScore> {
        let ps = read_pairs(pairs).with_context(|| format!("cannot read {}", pairs.display()))?;
        let examples: Vec<Example> = ps
            .iter()
            .take(limit)
            .map(|p| example_from_pair(p, MAX_GRAPH_NODES))
            .collect();
        let cache_dir = self.cache_dir.clone().unwrap_or_else(|| {
            pairs
                .parent()
                .unwrap_or(Path::new("."))
                .join(".gnn-coder-eval-cache")
        });
        let (q, c) = self
            .caches(progress)
            .pairs("valid", &cache_dir, &examples, false)?;
        let (queries, codes) = self.encode(&q, &c)?;
        let gold: Vec<usize> = (0..codes.len()).collect();
        Ok(PairsScore {
            retrieval: retrieval(&queries, &codes, &gold),
            pool: codes.len(),
            mam: mean_angular_margin(&codes, 1000),
        })
    }

    /// Score a benchmark once per query mix; each mix's scores go to `scored` as soon as they
    /// (and their results file) are done.
    pub fn bench(
        &self,
        bench: &Bench<'_>,
        progress: &ProgressFn<'_>,
        scored: &mut dyn FnMut(&BenchScores),
    ) -> Result<()> {
        let (set, qset) = set_names(bench.dir, bench.queries_path);
        let cache_dir = self
            .cache_dir
            .clone()
            .unwrap_or_else(|| bench.dir.with_file_name(".gnn-coder-eval-cache"));
        let (qc, cc) = self.bench_caches(bench, &set, &qset, &cache_dir, progress)?;
        let (tuned_queries, codes) = self.encode(&qc, &cc)?;
        let zero_shot = if bench.query_mix.iter().any(|&m| m != 0.0) {
            let device = self.loaded.model.head.out_proj.weight.val().device();
            Some(zero_shot_vectors(&qc, &device)?)
        } else {
            None
        };
        let several = bench.query_mix.len() != 1;
        for &m in bench.query_mix {
            let mut queries = tuned_queries.clone();
            if let Some(q0) = zero_shot.as_ref().filter(|_| m != 0.0) {
                mix_queries(&mut queries, q0, m);
            }
            let results = bench.results.map(|p| match several {
                true => mix_results_path(p, m),
                false => p.to_path_buf(),
            });
            let set = if several {
                format!("{set} (query mix {m})")
            } else {
                set.clone()
            };
            let scores = score(
                bench.golds,
                bench.candidates,
                &queries,
                &codes,
                results.as_deref(),
            )?;
            scored(&BenchScores {
                set,
                qset: qset.clone(),
                candidates: codes.len(),
                scores,
                mam: sample_mam(&codes),
            });
        }
        Ok(())
    }

    /// The code and query caches of a benchmark (`{set}-codes`, `{set}-{qset}`).
    fn bench_caches(
        &self,
        bench: &Bench<'_>,
        set: &str,
        qset: &str,
        cache_dir: &Path,
        progress: &ProgressFn<'_>,
    ) -> Result<(StateCache, StateCache)> {
        let code_texts: Vec<CacheText> = bench
            .candidates
            .iter()
            .map(|(u, g)| CacheText {
                text: &u.code,
                graph: g.as_ref(),
                kind_offset: gnn_coder_model::kind_offset(&u.language),
            })
            .collect();
        let query_texts: Vec<CacheText> = bench
            .golds
            .iter()
            .map(|g| CacheText {
                text: &g.query,
                graph: None,
                kind_offset: 0,
            })
            .collect();
        let caches = self.caches(progress);
        let cc = caches.states(
            &format!("{set} code"),
            &cache_dir.join(format!("{set}-codes")),
            &code_texts,
            true,
        )?;
        let qc = caches.states(
            &format!("{qset} queries"),
            &cache_dir.join(format!("{set}-{qset}")),
            &query_texts,
            true,
        )?;
        Ok((qc, cc))
    }

    fn caches<'a>(&'a self, progress: &'a ProgressFn<'a>) -> CacheBuilder<'a> {
        CacheBuilder::new(&self.loaded, self.split_layer, self.threads, progress)
    }

    /// Query and code vectors of cached texts with the loaded weights.
    fn encode(&self, queries: &StateCache, codes: &StateCache) -> Result<(Vectors, Vectors)> {
        let loaded = &self.loaded;
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
}

/// The benchmark's and the query set's names: the last two components of the tree's path
/// (`dev/corpus` -> `dev-corpus`) and the queries file's stem.
fn set_names(bench: &Path, queries: &Path) -> (String, String) {
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
    let qset = queries
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (set, qset)
}

/// `queries` become `normalize((1 - m) q + m q0)`.
fn mix_queries(queries: &mut [Vec<f32>], zero_shot: &[Vec<f32>], m: f32) {
    for (q, z) in queries.iter_mut().zip(zero_shot) {
        for (a, b) in q.iter_mut().zip(z) {
            *a = (1.0 - m) * *a + m * b;
        }
        let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        q.iter_mut().for_each(|x| *x /= norm);
    }
}

/// `results` with `-mix{m}` before its extension.
fn mix_results_path(results: &Path, m: f32) -> PathBuf {
    let stem = results.file_stem().unwrap_or_default().to_string_lossy();
    let name = match results.extension() {
        Some(ext) => format!("{stem}-mix{m}.{}", ext.to_string_lossy()),
        None => format!("{stem}-mix{m}"),
    };
    results.with_file_name(name)
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

/// Rank every code for each query, score the gold ranks (overall and per language), and write
/// each query's top 10 to `results` if given.
fn score(
    golds: &[GoldQuery],
    units: &[Candidate],
    queries: &[Vec<f32>],
    codes: &[Vec<f32>],
    results: Option<&Path>,
) -> Result<BTreeMap<String, Score>> {
    let mut results_out = match results {
        Some(p) => Some(BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    for (g, q) in golds.iter().zip(queries) {
        let scored = top10(q, codes);
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
    Ok(scores)
}

/// The 10 best codes for `q` by dot product (ties: lower index first), best first.
fn top10(q: &[f32], codes: &[Vec<f32>]) -> Vec<(f32, usize)> {
    let mut scored: Vec<(f32, usize)> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| (q.iter().zip(c).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    let k = 10.min(scored.len());
    if k == 0 {
        return scored;
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
}

/// MAM over an evenly spaced sample of 1,000 candidates.
fn sample_mam(codes: &[Vec<f32>]) -> f64 {
    let step = (codes.len() / 1000).max(1);
    let sample: Vec<Vec<f32>> = codes.iter().step_by(step).take(1000).cloned().collect();
    mean_angular_margin(&sample, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_mix_values_must_be_fractions() {
        assert!(check_query_mix(&[0.0, 0.5, 1.0]).is_ok());
        let err = check_query_mix(&[0.2, 1.5]).unwrap_err().to_string();
        assert_eq!(err, "--query-mix 1.5: must be in [0, 1]");
    }

    #[test]
    fn several_mixes_get_their_own_results_files() {
        assert_eq!(
            mix_results_path(Path::new("out/r.jsonl"), 0.25),
            PathBuf::from("out/r-mix0.25.jsonl")
        );
        assert_eq!(
            mix_results_path(Path::new("out/r"), 1.0),
            PathBuf::from("out/r-mix1")
        );
    }

    #[test]
    fn top10_ranks_by_score_then_index() {
        let codes: Vec<Vec<f32>> = (0..12).map(|i| vec![(i % 4) as f32]).collect();
        let top = top10(&[1.0], &codes);
        let ids: Vec<usize> = top.iter().map(|&(_, i)| i).collect();
        assert_eq!(ids, vec![3, 7, 11, 2, 6, 10, 1, 5, 9, 0]);
        assert!(top10(&[1.0], &[]).is_empty());
    }

    #[test]
    fn benchmark_names_come_from_the_last_two_components() {
        let (set, qset) = set_names(
            Path::new("/nonexistent/bench/dev/corpus"),
            Path::new("q/queries-dev.jsonl"),
        );
        assert_eq!(set, "dev-corpus");
        assert_eq!(qset, "queries-dev");
    }

    #[test]
    fn bad_gold_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.jsonl");
        std::fs::write(
            &path,
            "{\"id\": 1, \"query\": \"q\", \"path\": \"a.py\", \"line\": 1, \"end_line\": 2}\n\nnope\n",
        )
        .unwrap();
        let err = read_gold_queries(&path).unwrap_err().to_string();
        assert!(err.ends_with("line 3: not a gold query"), "{err}");
    }
}
