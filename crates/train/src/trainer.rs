//! Contrastive training of GNN-Coder on cached transformer states.
//!
//! * **Loss**: symmetric InfoNCE over in-batch negatives: with L2-normalized query vectors `q`
//!   and code vectors `c`, `logits = q c^T / t` with a **fixed** temperature `t` (default 0.05,
//!   the value of the PyTorch reference); loss = mean of the cross-entropy of each query
//!   against all codes of the batch and of each code against all queries. With
//!   `hard_negatives = g`, batches are built from BM25-mined groups of `g` same-package pairs
//!   ([`crate::negatives`]), so part of every query's negatives are close functions of its own
//!   package.
//! * **Optimizer**: AdamW (weight decay 0.01), separate learning rates for the head (graph
//!   network, gate, projections; default 1e-3) and the fine-tuned transformer layers (default
//!   2e-5), linear warm-up then cosine decay to 0, gradients clipped by norm (1.0) per parameter
//!   tensor (burn's `GradientClipping::Norm`).
//! * **What is trained**: always the head; with `tuned_layers = k > 0` also the transformer's
//!   top `k` encoder layers (stage 2; the cache must hold the states after layer
//!   `num_layers - k`). Queries and codes share the transformer. With `graph = false` the code
//!   vector is the (projected) mean-pooled sequence vector: "transformer + projection".
//! * **Determinism and resume**: the example order of epoch `e` is a permutation drawn from
//!   `seed` and `e` alone, so step `s` always sees the same batch; parameters get stable ids
//!   (their order in the module), so an optimizer state saved by one process applies in
//!   another. Every `checkpoint_every` steps the weights (f32), both AdamW states and the step
//!   are written to `OUT/checkpoints/step-NNNNNNNN/` and `OUT/checkpoints/latest` is switched
//!   atomically; a run started again with the same configuration continues from there and
//!   ends with the same weights as an uninterrupted run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use gnn_coder_model::{BertModel, GnnCoderModel, GraphBatch, GraphInput, HeadConfig};
use half::f16;
use serde::{Deserialize, Serialize};

use crate::cache::StateCache;
use crate::error::{Result, TrainError, io_err};
use crate::metrics::{Retrieval, mean_angular_margin, retrieval};

/// Training hyper-parameters (saved as `OUT/train.json`; a resumed run must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Top transformer layers to fine-tune (0 = frozen transformer, stage 1).
    pub tuned_layers: usize,
    /// Use the AST graph network (false: sequence vector + projections only).
    pub graph: bool,
    /// ASTGPool scores nodes with their child count too (false: plain top-k pooling).
    pub child_count_score: bool,
    pub batch_size: usize,
    /// Passes over the training pairs (fractions allowed); `max_steps` wins when non-zero.
    pub epochs: f64,
    pub max_steps: usize,
    pub head_lr: f64,
    pub transformer_lr: f64,
    /// Fraction of the steps spent warming up linearly.
    pub warmup: f64,
    pub temperature: f64,
    pub weight_decay: f64,
    pub clip_norm: f64,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Validation every this many steps (0: only at the end).
    pub eval_every: usize,
    /// At most this many validation pairs (the pool is their codes).
    pub valid_limit: usize,
    /// ASTGPool scores with `ln(1 + children)` (see `GraphConfig::child_count_log1p`).
    pub child_count_log1p: bool,
    /// Weight of `||W - I||_F^2` of the output projections in the loss: with weight decay this
    /// keeps `W = I + delta` near the identity instead of shrinking it toward zero.
    pub identity_reg: f64,
    /// Weight of the query-distillation term `mean(1 - cos(q, q0))`, `q0` the zero-shot
    /// transformer's query vector (mean of the cached final-layer states): keeps queries where
    /// the pretrained model put them, so questions unlike the training docstrings still work.
    pub query_distill: f64,
    /// Weight of the code-distillation term `mean(1 - cos(c, c0))`, `c0` the zero-shot
    /// transformer's vector of the code (mean of its cached final-layer states): the code side's
    /// counterpart of `query_distill`, for when queries unlike the training docstrings (web
    /// questions) lose because the code vectors moved. Needs the codes' final-layer states.
    pub code_distill: f64,
    /// Clip the gradient by its global norm over every trained tensor (false: per tensor).
    pub global_clip: bool,
    /// A pair whose code (or query) text equals that of the positive is not used as a negative.
    pub dedup_negatives: bool,
    /// When fine-tuning (`tuned_layers > 0`), a batch's codes run through the tuned layers in
    /// groups of this many, sorted by length, each padded only to its own longest code (0: the
    /// whole batch at once). The loss still sees every code of the batch as a negative: this
    /// changes only how much padding the transformer computes.
    pub micro_batch: usize,
    /// Hard negatives: batches are made of BM25-mined groups of this many pairs from one
    /// package ([`crate::negatives`]; the groups come with [`PairCaches::groups`]), shuffled as
    /// whole groups (0: pairs shuffled one by one).
    pub hard_negatives: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            tuned_layers: 0,
            graph: true,
            child_count_score: true,
            batch_size: 64,
            epochs: 1.0,
            max_steps: 0,
            head_lr: 1e-3,
            transformer_lr: 2e-5,
            warmup: 0.05,
            temperature: 0.05,
            weight_decay: 0.01,
            clip_norm: 1.0,
            seed: 17,
            checkpoint_every: 200,
            eval_every: 0,
            valid_limit: 1000,
            child_count_log1p: false,
            identity_reg: 0.0,
            query_distill: 0.0,
            code_distill: 0.0,
            global_clip: false,
            dedup_negatives: false,
            micro_batch: 0,
            hard_negatives: 0,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.to_string()));
        if self.batch_size < 2 {
            return bad("batch size must be at least 2 (in-batch negatives)");
        }
        if self.max_steps == 0 && self.epochs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return bad("set epochs > 0 or max_steps > 0");
        }
        if self.temperature <= 0.0 {
            return bad("temperature must be positive");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup must be a fraction in [0, 1)");
        }
        if self.checkpoint_every == 0 {
            return bad("checkpoint_every must be at least 1");
        }
        if self.hard_negatives == 1 || self.hard_negatives > self.batch_size {
            return bad("hard_negatives is a group size: 0 (off) or 2 to the batch size");
        }
        if !(self.identity_reg >= 0.0
            && self.query_distill >= 0.0
            && self.code_distill >= 0.0
            && self.clip_norm > 0.0)
        {
            return bad("identity_reg, query_distill and code_distill must be >= 0, clip_norm > 0");
        }
        Ok(())
    }

    /// Total optimizer steps for `n` training pairs.
    pub fn total_steps(&self, n: usize) -> usize {
        if self.max_steps > 0 {
            return self.max_steps;
        }
        let per_epoch = (n / self.batch_size).max(1);
        ((per_epoch as f64) * self.epochs).ceil().max(1.0) as usize
    }

    /// Learning-rate multiplier at `step` (0-based) of `total`: linear warm-up, cosine decay.
    pub fn lr_factor(&self, step: usize, total: usize) -> f64 {
        let warm = ((total as f64) * self.warmup).round() as usize;
        if step < warm {
            return (step + 1) as f64 / warm as f64;
        }
        let span = (total - warm).max(1) as f64;
        let p = ((step - warm) as f64 / span).clamp(0.0, 1.0);
        0.5 * (1.0 + (std::f64::consts::PI * p).cos())
    }
}

/// Training pairs as two aligned caches: item `i` of `queries` is the question of item `i` of
/// `codes`.
#[derive(Debug, Clone, Copy)]
pub struct PairCaches<'a> {
    pub queries: &'a StateCache,
    pub codes: &'a StateCache,
    /// Hard-negative groups of pair indices (a partition of `0..len`, e.g. from
    /// [`crate::negatives::bm25_groups`]); needed when `TrainConfig::hard_negatives > 0`.
    pub groups: Option<&'a [Vec<usize>]>,
}

impl PairCaches<'_> {
    fn check(&self, what: &str) -> Result<()> {
        if self.queries.len() != self.codes.len() {
            return Err(TrainError::Input(format!(
                "{what}: {} queries for {} codes",
                self.queries.len(),
                self.codes.len()
            )));
        }
        if let Some(groups) = self.groups {
            let mut seen = vec![false; self.codes.len()];
            for &i in groups.iter().flatten() {
                match seen.get_mut(i) {
                    Some(s) if !*s => *s = true,
                    _ => {
                        return Err(TrainError::Input(format!(
                            "{what}: hard-negative groups repeat pair {i} or name one past the \
                             {} pairs",
                            self.codes.len()
                        )));
                    }
                }
            }
            if let Some(i) = seen.iter().position(|s| !s) {
                return Err(TrainError::Input(format!(
                    "{what}: pair {i} is in no hard-negative group"
                )));
            }
        }
        Ok(())
    }
}

/// What the trainer reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        step: usize,
        total: usize,
        pairs: usize,
        resumed: bool,
    },
    Step {
        step: usize,
        total: usize,
        epoch: f64,
        loss: f64,
        lr: f64,
        pairs_per_s: f64,
    },
    Valid {
        step: usize,
        #[serde(flatten)]
        metrics: Retrieval,
        mam: f64,
    },
    Checkpoint {
        step: usize,
        path: PathBuf,
    },
}

/// Result of a finished (or interrupted) run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    pub steps: usize,
    pub total_steps: usize,
    pub pairs_seen: usize,
    pub seconds: f64,
    pub final_loss: f64,
    pub valid: Option<Retrieval>,
    pub valid_mam: Option<f64>,
    pub completed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    pairs_seen: usize,
    seconds: f64,
    last_loss: f64,
}

/// Gives every parameter a stable id (its position in the module), so optimizer states keyed by
/// parameter id survive a save/load across processes.
struct StableIds(u64);

impl ModuleMapper for StableIds {
    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.0 += 1;
        param.id = ParamId::from(self.0);
        param
    }
}

/// Give `model` stable parameter ids and freeze what the configuration does not train.
pub fn prepare_model(mut model: GnnCoderModel, cfg: &TrainConfig) -> GnnCoderModel {
    model = model.map(&mut StableIds(0));
    let n = model.transformer.num_layers();
    let keep = n.saturating_sub(cfg.tuned_layers);
    model.transformer.embeddings = model.transformer.embeddings.no_grad();
    let layers = std::mem::take(&mut model.transformer.encoder.layer);
    model.transformer.encoder.layer = layers
        .into_iter()
        .enumerate()
        .map(|(i, l)| if i < keep { l.no_grad() } else { l })
        .collect();
    model.head.graph.child_count_score = cfg.child_count_score;
    model.head.graph.child_count_log1p = cfg.child_count_log1p;
    if model.head.shared_projection {
        // Queries use out_proj: query_proj gets no gradient and is saved as out_proj's copy.
        model.head.query_proj = model.head.query_proj.no_grad();
    }
    if !cfg.graph {
        model.head.graph = model.head.graph.no_grad();
        model.head.graph_proj = model.head.graph_proj.no_grad();
        model.head.gate = model.head.gate.no_grad();
    }
    model
}

/// Padded states of `idx` from `cache` (`lower` or final layer) with their mask.
fn states_batch(
    cache: &StateCache,
    idx: &[usize],
    lower: bool,
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    let d = cache.meta.dim;
    let l = idx
        .iter()
        .map(|&i| cache.items[i].len)
        .max()
        .unwrap_or(1)
        .max(1);
    let b = idx.len();
    let mut x = vec![0f32; b * l * d];
    let mut mask = vec![0f32; b * l];
    for (row, &i) in idx.iter().enumerate() {
        let src: &[f16] = if lower { cache.lower(i) } else { cache.top(i) };
        let dst = &mut x[row * l * d..row * l * d + src.len()];
        for (o, v) in dst.iter_mut().zip(src) {
            *o = v.to_f32();
        }
        for m in &mut mask[row * l..row * l + cache.items[i].len] {
            *m = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(x, [b, l, d]), device),
        Tensor::from_data(TensorData::new(mask, [b, l]), device),
    )
}

/// Final-layer states of a batch: the cache's "top" states (frozen transformer), or the tuned
/// top layers run on its "lower" states.
fn final_states(
    model: &GnnCoderModel,
    tuned_layers: usize,
    cache: &StateCache,
    idx: &[usize],
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    if tuned_layers == 0 {
        return states_batch(cache, idx, false, device);
    }
    let (lower, mask) = states_batch(cache, idx, true, device);
    let bias = BertModel::attention_bias(mask.clone());
    let n = model.transformer.num_layers();
    let states = model
        .transformer
        .forward_layers(lower, bias, n - tuned_layers..n);
    (states, mask)
}

/// Code vectors of `idx` (rows in that order).
pub fn code_vectors(
    model: &GnnCoderModel,
    tuned_layers: usize,
    graph: bool,
    cache: &StateCache,
    idx: &[usize],
    device: &Device,
) -> Result<Tensor<2>> {
    let (states, mask) = final_states(model, tuned_layers, cache, idx, device);
    let seq = BertModel::mean_pool(states.clone(), mask);
    let graphs = if graph {
        let seq_len = states.dims()[1];
        let encs: Vec<_> = idx.iter().map(|&i| cache.items[i].encoded()).collect();
        let inputs: Vec<GraphInput<'_>> = idx
            .iter()
            .enumerate()
            .filter_map(|(row, &i)| {
                let it = &cache.items[i];
                it.graph.as_ref().map(|g| GraphInput {
                    row,
                    graph: g,
                    tokens: &encs[row],
                    kind_offset: it.kind_offset,
                })
            })
            .collect();
        let kind_vocab = model.head.graph.kind_embedding.weight.dims()[0];
        Some(GraphBatch::build(&inputs, seq_len, kind_vocab)?)
    } else {
        None
    };
    Ok(model.head.code_vectors(seq, states, graphs.as_ref())?)
}

/// Query vectors of `idx`.
pub fn query_vectors(
    model: &GnnCoderModel,
    tuned_layers: usize,
    cache: &StateCache,
    idx: &[usize],
    device: &Device,
) -> Tensor<2> {
    let (states, mask) = final_states(model, tuned_layers, cache, idx, device);
    model.head.query_vectors(BertModel::mean_pool(states, mask))
}

fn rows(t: Tensor<2>) -> Result<Vec<Vec<f32>>> {
    let [_, d] = t.dims();
    let flat = t
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
    Ok(flat.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
}

/// Encode every item of `cache` (codes or queries) with a plain-device copy of `model`, in
/// length-sorted chunks; rows in cache order.
pub fn encode_cache(
    model: &GnnCoderModel,
    tuned_layers: usize,
    graph: Option<bool>,
    cache: &StateCache,
    limit: usize,
) -> Result<Vec<Vec<f32>>> {
    if tuned_layers == 0 && !cache.meta.has_top {
        return Err(TrainError::Config(
            "a frozen transformer reads the final-layer states, which this cache lacks".into(),
        ));
    }
    // The model's own device (flex, LibTorch or CUDA), without autodiff.
    let device = model.head.out_proj.weight.val().device();
    let n = cache.len().min(limit);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| cache.items[i].len);
    let mut out = vec![Vec::new(); n];
    for chunk in order.chunks(64) {
        let t = match graph {
            Some(g) => code_vectors(model, tuned_layers, g, cache, chunk, &device)?,
            None => query_vectors(model, tuned_layers, cache, chunk, &device),
        };
        for (&i, v) in chunk.iter().zip(rows(t)?) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// MRR@10 / R@1 / R@10 of the first `limit` validation pairs (pool: their codes) and the MAM of
/// their code vectors.
pub fn validate(
    model: &GnnCoderModel,
    cfg: &TrainConfig,
    valid: PairCaches<'_>,
) -> Result<(Retrieval, f64)> {
    let plain = model.valid();
    let n = valid.codes.len().min(cfg.valid_limit);
    let codes = encode_cache(&plain, cfg.tuned_layers, Some(cfg.graph), valid.codes, n)?;
    let queries = encode_cache(&plain, cfg.tuned_layers, None, valid.queries, n)?;
    let gold: Vec<usize> = (0..n).collect();
    Ok((
        retrieval(&queries, &codes, &gold),
        mean_angular_margin(&codes, 500),
    ))
}

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The example order of `epoch`: a Fisher-Yates shuffle seeded by (`seed`, `epoch`).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut state = mix(seed ^ mix(epoch as u64 + 1));
    for i in (1..n).rev() {
        state = mix(state);
        let j = (state % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// The example order of `epoch` with hard-negative `groups`: the groups in a seeded random
/// order, each kept whole.
pub fn grouped_order(groups: &[Vec<usize>], seed: u64, epoch: usize) -> Vec<usize> {
    epoch_order(groups.len(), seed, epoch)
        .into_iter()
        .flat_map(|g| groups[g].iter().copied())
        .collect()
}

/// Additive logit mask of a batch: `-inf`-like where pair `j` is a duplicate of pair `i`
/// (`i != j`, same code or same query text), so a copy of the positive is not a negative.
/// `None` when the batch has no duplicates.
/// `codes[i]`/`queries[i]`: text hashes of batch row `i` (0: unknown, never a duplicate).
fn duplicate_mask(codes: &[u64], queries: &[u64], device: &Device) -> Option<Tensor<2>> {
    let b = codes.len().min(queries.len());
    let mut mask = vec![0f32; b * b];
    let mut any = false;
    for i in 0..b {
        for j in 0..b {
            if i == j {
                continue;
            }
            let same = |h: &[u64]| h[i] != 0 && h[i] == h[j];
            if same(codes) || same(queries) {
                mask[i * b + j] = -1.0e4;
                any = true;
            }
        }
    }
    any.then(|| Tensor::from_data(TensorData::new(mask, [b, b]), device))
}

/// The zero-shot vectors of `idx` (queries or codes): mean of the cached final-layer states,
/// normalized.
fn zero_shot_batch(cache: &StateCache, idx: &[usize], device: &Device) -> Tensor<2> {
    let (states, mask) = states_batch(cache, idx, false, device);
    let seq = BertModel::mean_pool(states, mask);
    let norm = seq.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    seq / norm
}

/// The zero-shot (pretrained transformer) vectors of every text of `cache`, queries or codes:
/// the mean of its final-layer states, normalized, as the distillation terms pull toward.
pub fn zero_shot_vectors(cache: &StateCache, device: &Device) -> Result<Vec<Vec<f32>>> {
    if !cache.meta.has_top {
        return Err(TrainError::Config(
            "zero-shot vectors need the final-layer states, which this cache lacks".into(),
        ));
    }
    let idx: Vec<usize> = (0..cache.len()).collect();
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(64) {
        out.extend(rows(zero_shot_batch(cache, chunk, device))?);
    }
    Ok(out)
}

/// `sum ||W - I||_F^2` over the output projections the head trains.
fn identity_penalty(head: &gnn_coder_model::GnnCoderHead) -> Tensor<1> {
    let mut linears = vec![&head.out_proj];
    if !head.shared_projection {
        linears.push(&head.query_proj);
    }
    let mut total: Option<Tensor<1>> = None;
    for l in linears {
        let w = l.weight.val();
        let [k, n] = w.dims();
        let eye: Tensor<2> = Tensor::eye(k.max(n), &w.device()).slice([0..k, 0..n]);
        let term = (w - eye).square().sum();
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.unwrap_or_else(|| Tensor::zeros([1], &head.out_proj.weight.val().device()))
}

/// Sum of squares of the gradients of `module`'s parameters in `grads`.
struct SquaredNorm<'a> {
    grads: &'a GradientsParams,
    total: f64,
}

impl burn::module::ModuleVisitor for SquaredNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            let s = g
                .square()
                .sum()
                .try_into_vec_as::<f32>()
                .ok()
                .and_then(|v| v.first().copied())
                .unwrap_or(0.0);
            self.total += f64::from(s);
        }
    }
}

/// Scales the gradients of `module`'s parameters in `grads` by `factor`.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl burn::module::ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads.register(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// Clip the head's and the transformer's gradients together to global norm `max_norm`; returns
/// the norm before clipping.
fn clip_global(
    model: &GnnCoderModel,
    g_head: &mut GradientsParams,
    g_tr: Option<&mut GradientsParams>,
    max_norm: f64,
) -> f64 {
    let mut sq = SquaredNorm {
        grads: g_head,
        total: 0.0,
    };
    model.head.visit(&mut sq);
    let mut total = sq.total;
    if let Some(g) = g_tr.as_deref() {
        let mut sq = SquaredNorm {
            grads: g,
            total: 0.0,
        };
        model.transformer.visit(&mut sq);
        total += sq.total;
    }
    let norm = total.sqrt();
    if norm.is_finite() && norm > max_norm {
        let factor = max_norm / norm;
        model.head.visit(&mut ScaleGrads {
            grads: g_head,
            factor,
        });
        if let Some(g) = g_tr {
            model
                .transformer
                .visit(&mut ScaleGrads { grads: g, factor });
        }
    }
    norm
}

fn infonce(q: Tensor<2>, c: Tensor<2>, temperature: f64, mask: Option<Tensor<2>>) -> Tensor<1> {
    let b = q.dims()[0];
    let mut logits = q.matmul(c.transpose()).div_scalar(temperature);
    if let Some(m) = mask {
        logits = logits + m;
    }
    let eye: Tensor<2> = Tensor::eye(b, &logits.device());
    let q2c = (log_softmax(logits.clone(), 1) * eye.clone()).sum();
    let c2q = (log_softmax(logits, 0) * eye).sum();
    (q2c + c2q).neg().div_scalar(2.0 * b as f64)
}

fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    let clip = (!cfg.global_clip).then_some(GradientClippingConfig::Norm(cfg.clip_norm as f32));
    AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .with_grad_clipping(clip)
        .init()
}

const CHECKPOINTS: &str = "checkpoints";
const LATEST: &str = "latest";
const STATE_FILE: &str = "state.json";
const OPTIM_HEAD: &str = "optim-head.bpk";
const OPTIM_TRANSFORMER: &str = "optim-transformer.bpk";
const CONFIG_FILE: &str = "train.json";

/// The latest complete checkpoint of a run directory.
pub fn latest_checkpoint(out: &Path) -> Option<PathBuf> {
    let dir = out.join(CHECKPOINTS);
    let name = std::fs::read_to_string(dir.join(LATEST)).ok()?;
    let path = dir.join(name.trim());
    path.join(STATE_FILE).is_file().then_some(path)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn to_json<T: Serialize>(v: &T, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| TrainError::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// A [`TrainError::BadFile`] for `path`.
fn bad_file(path: &Path, message: String) -> TrainError {
    TrainError::BadFile {
        path: path.to_path_buf(),
        message,
    }
}

/// The optimizers and the progress of a run: what a checkpoint holds besides the weights.
struct RunState {
    optim_head: ModuleOptimizer,
    optim_tr: ModuleOptimizer,
    state: CheckpointState,
}

/// Write `OUT/checkpoints/step-NNNNNNNN/` (weights, both optimizer states, the step), switch
/// `latest` to it and remove all but the two newest checkpoints.
fn save_checkpoint(
    out: &Path,
    model: &GnnCoderModel,
    head_cfg: &HeadConfig,
    run_state: &RunState,
) -> Result<PathBuf> {
    let state = &run_state.state;
    let root = out.join(CHECKPOINTS);
    let name = format!("step-{:08}", state.step);
    let dir = root.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
    }
    model.save(&dir, head_cfg, true, false)?;
    for (file, optim) in [
        (OPTIM_HEAD, &run_state.optim_head),
        (OPTIM_TRANSFORMER, &run_state.optim_tr),
    ] {
        let p = dir.join(file);
        optim.save(&p).map_err(|e| bad_file(&p, format!("{e:?}")))?;
    }
    let p = dir.join(STATE_FILE);
    std::fs::write(&p, to_json(state, &p)?).map_err(io_err(&p))?;
    write_atomic(&root.join(LATEST), name.as_bytes())?;
    // Keep the two newest checkpoints.
    if let Ok(entries) = std::fs::read_dir(&root) {
        let mut steps: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.starts_with("step-") && *n != name)
            .collect();
        steps.sort();
        let drop = steps.len().saturating_sub(1);
        for old in &steps[..drop] {
            let _ = std::fs::remove_dir_all(root.join(old));
        }
    }
    Ok(dir)
}

/// Check that the caches hold the layer the configuration reads: the final-layer states for a
/// frozen transformer, the states after layer `num_layers - tuned_layers` when fine-tuning.
fn check_cache_layers(
    cfg: &TrainConfig,
    num_layers: usize,
    train: PairCaches<'_>,
    valid: Option<PairCaches<'_>>,
) -> Result<()> {
    for c in [
        Some(train.codes),
        Some(train.queries),
        valid.map(|v| v.codes),
        valid.map(|v| v.queries),
    ]
    .into_iter()
    .flatten()
    {
        if cfg.tuned_layers == 0 && !c.meta.has_top {
            return Err(TrainError::Config(
                "a cache without final-layer states can only fine-tune every layer".into(),
            ));
        }
        if cfg.tuned_layers > 0 && c.meta.split != num_layers - cfg.tuned_layers {
            return Err(TrainError::Config(format!(
                "the cache holds the states after layer {}, fine-tuning {} layers needs layer {}",
                c.meta.split,
                cfg.tuned_layers,
                num_layers - cfg.tuned_layers
            )));
        }
    }
    Ok(())
}

/// Check the configuration against the model and the pairs before anything is written;
/// returns the hard-negative groups the batches are made of (`None`: pairs one by one).
fn check_inputs<'a>(
    model: &GnnCoderModel,
    cfg: &TrainConfig,
    train: PairCaches<'a>,
    valid: Option<PairCaches<'_>>,
) -> Result<Option<&'a [Vec<usize>]>> {
    cfg.validate()?;
    train.check("training pairs")?;
    if let Some(v) = &valid {
        v.check("validation pairs")?;
    }
    let n = train.codes.len();
    if n < cfg.batch_size {
        return Err(TrainError::Input(format!(
            "{n} training pairs is fewer than one batch of {}",
            cfg.batch_size
        )));
    }
    let num_layers = model.transformer.num_layers();
    if cfg.tuned_layers > num_layers {
        return Err(TrainError::Config(format!(
            "tuned_layers {} > {num_layers} transformer layers",
            cfg.tuned_layers
        )));
    }
    check_cache_layers(cfg, num_layers, train, valid)?;
    let groups = match (cfg.hard_negatives, train.groups) {
        (0, _) => None,
        (_, Some(g)) => Some(g),
        (_, None) => {
            return Err(TrainError::Config(
                "hard_negatives is set but the training pairs come without groups".into(),
            ));
        }
    };
    if cfg.query_distill > 0.0 && !train.queries.meta.has_top {
        return Err(TrainError::Config(
            "query distillation needs the queries' final-layer states in the cache".into(),
        ));
    }
    if cfg.code_distill > 0.0 && !train.codes.meta.has_top {
        return Err(TrainError::Config(
            "code distillation needs the codes' final-layer states in the cache".into(),
        ));
    }
    Ok(groups)
}

/// The head configuration saved with the run's checkpoints and weights: `head_cfg` with the
/// settings the training configuration decides.
fn run_head_config(head_cfg: &HeadConfig, cfg: &TrainConfig) -> HeadConfig {
    let mut head_cfg = head_cfg.clone();
    head_cfg.tuned_layers = cfg.tuned_layers;
    head_cfg.graph.child_count_score = cfg.child_count_score;
    head_cfg.graph.child_count_log1p = cfg.child_count_log1p;
    head_cfg
}

/// Check that the run saved in `out` (checkpoint `ckpt`) has the configuration `cfg` and the
/// head configuration `head_cfg`: a resumed run must continue the same run.
fn check_saved_run(
    out: &Path,
    ckpt: &Path,
    cfg: &TrainConfig,
    head_cfg: &HeadConfig,
) -> Result<()> {
    let cfg_path = out.join(CONFIG_FILE);
    let saved: TrainConfig = std::fs::read(&cfg_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad_file(&cfg_path, "missing or unreadable: cannot resume".into()))?;
    if &saved != cfg {
        return Err(TrainError::Config(format!(
            "{} holds a run with a different configuration; use another output directory \
             (saved: {saved:?})",
            out.display()
        )));
    }
    // Shape flags (graph depth, width) fail to load below; the rest (pool ratio, gate
    // start, ...) would load silently into a different model.
    let saved_head = gnn_coder_model::read_head_config(ckpt)?;
    if &saved_head != head_cfg {
        return Err(TrainError::Config(format!(
            "{} holds a run with a different head configuration; use another output \
             directory (saved: {saved_head:?})",
            out.display()
        )));
    }
    Ok(())
}

/// Load the weights, both optimizer states and the progress of checkpoint `ckpt` into a
/// prepared `model` and fresh `run_state`.
fn load_checkpoint(
    mut model: GnnCoderModel,
    mut run_state: RunState,
    head_cfg: &HeadConfig,
    ckpt: &Path,
) -> Result<(GnnCoderModel, RunState)> {
    model.load_saved(ckpt, head_cfg)?;
    model = model.map(&mut StableIds(0));
    let p = ckpt.join(OPTIM_HEAD);
    run_state.optim_head = run_state
        .optim_head
        .load(&p)
        .map_err(|e| bad_file(&p, format!("{e:?}")))?;
    let p = ckpt.join(OPTIM_TRANSFORMER);
    run_state.optim_tr = run_state
        .optim_tr
        .load(&p)
        .map_err(|e| bad_file(&p, format!("{e:?}")))?;
    let p = ckpt.join(STATE_FILE);
    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
    run_state.state = serde_json::from_slice(&bytes).map_err(|e| bad_file(&p, e.to_string()))?;
    Ok((model, run_state))
}

/// Set up a run in `out`: the prepared model with fresh optimizers at step 0 (writing
/// `train.json`), or resumed from the latest checkpoint. The flag says whether it resumed.
fn start_or_resume(
    model: GnnCoderModel,
    head_cfg: &HeadConfig,
    cfg: &TrainConfig,
    out: &Path,
) -> Result<(GnnCoderModel, RunState, bool)> {
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let model = prepare_model(model, cfg);
    let fresh = RunState {
        optim_head: optimizer(cfg),
        optim_tr: optimizer(cfg),
        state: CheckpointState {
            step: 0,
            pairs_seen: 0,
            seconds: 0.0,
            last_loss: f64::NAN,
        },
    };
    if let Some(ckpt) = latest_checkpoint(out) {
        check_saved_run(out, &ckpt, cfg, head_cfg)?;
        let (model, run_state) = load_checkpoint(model, fresh, head_cfg, &ckpt)?;
        Ok((model, run_state, true))
    } else {
        let cfg_path = out.join(CONFIG_FILE);
        write_atomic(&cfg_path, &to_json(cfg, &cfg_path)?)?;
        Ok((model, fresh, false))
    }
}

/// The value of a one-element loss; an error when it is not finite (at `step`).
fn loss_value(loss: &Tensor<1>, step: usize) -> Result<f64> {
    let value = loss
        .clone()
        .try_into_vec_as::<f32>()
        .map_err(|e| TrainError::Tensor(format!("{e:?}")))?
        .first()
        .copied()
        .unwrap_or(f32::NAN) as f64;
    if !value.is_finite() {
        return Err(TrainError::Input(format!(
            "loss became {value} at step {step}; lower the learning rate"
        )));
    }
    Ok(value)
}

/// The state the step loop shares between its stages: the run's fixed inputs, the optimizers
/// and progress, the epoch's example order, the clocks and the latest validation.
struct StepLoop<'a> {
    cfg: &'a TrainConfig,
    head_cfg: &'a HeadConfig,
    train: PairCaches<'a>,
    valid: Option<PairCaches<'a>>,
    groups: Option<&'a [Vec<usize>]>,
    out: &'a Path,
    device: Device,
    total: usize,
    per_epoch: usize,
    run_state: RunState,
    /// Seconds spent by earlier processes of the run (resume) and when this one started.
    base_seconds: f64,
    started: Instant,
    /// Start of the throughput window and the pairs seen since.
    window: (Instant, usize),
    /// The epoch `order` belongs to (`usize::MAX`: none yet).
    order_epoch: usize,
    order: Vec<usize>,
    last_valid: Option<(Retrieval, f64)>,
}

impl StepLoop<'_> {
    /// Whether a batch's codes run through the tuned layers in length-sorted groups.
    fn micro(&self) -> bool {
        self.cfg.tuned_layers > 0 && self.cfg.micro_batch > 0
    }

    /// The pair indices of the current step's batch: slice `step % per_epoch` of its epoch's
    /// order (drawn when the epoch changes), sorted by code length for micro-batches.
    fn batch(&mut self) -> Vec<usize> {
        let (cfg, step) = (self.cfg, self.run_state.state.step);
        let epoch = step / self.per_epoch;
        if epoch != self.order_epoch {
            self.order = match self.groups {
                Some(g) => grouped_order(g, cfg.seed, epoch),
                None => epoch_order(self.train.codes.len(), cfg.seed, epoch),
            };
            self.order_epoch = epoch;
        }
        let k = step % self.per_epoch;
        let mut idx = self.order[k * cfg.batch_size..(k + 1) * cfg.batch_size].to_vec();
        if self.micro() {
            // The batch's pairs in code-length order (the loss does not depend on their order).
            let codes = self.train.codes;
            idx.sort_by_key(|&i| (codes.items[i].len, i));
        }
        idx
    }

    /// The code vectors of batch `idx`, in micro-batches when configured.
    fn batch_code_vectors(&self, model: &GnnCoderModel, idx: &[usize]) -> Result<Tensor<2>> {
        let (cfg, codes) = (self.cfg, self.train.codes);
        let vectors = |part: &[usize]| {
            code_vectors(
                model,
                cfg.tuned_layers,
                cfg.graph,
                codes,
                part,
                &self.device,
            )
        };
        if self.micro() {
            let parts = idx
                .chunks(cfg.micro_batch)
                .map(vectors)
                .collect::<Result<Vec<_>>>()?;
            Ok(Tensor::cat(parts, 0))
        } else {
            vectors(idx)
        }
    }

    /// The loss of batch `idx`: InfoNCE (duplicates masked when configured) plus the
    /// distillation and identity terms that have a weight.
    fn batch_loss(&self, model: &GnnCoderModel, idx: &[usize]) -> Result<Tensor<1>> {
        let (cfg, train, device) = (self.cfg, self.train, &self.device);
        let q = query_vectors(model, cfg.tuned_layers, train.queries, idx, device);
        let c = self.batch_code_vectors(model, idx)?;
        let mask = if cfg.dedup_negatives {
            let hashes = |c: &StateCache| idx.iter().map(|&i| c.items[i].hash).collect::<Vec<_>>();
            duplicate_mask(&hashes(train.codes), &hashes(train.queries), device)
        } else {
            None
        };
        let mut loss = infonce(q.clone(), c.clone(), cfg.temperature, mask);
        for (weight, vectors, cache) in [
            (cfg.query_distill, q, train.queries),
            (cfg.code_distill, c, train.codes),
        ] {
            if weight > 0.0 {
                let v0 = zero_shot_batch(cache, idx, device);
                let cos = (vectors * v0).sum_dim(1).reshape([idx.len()]);
                loss = loss + (cos.neg() + 1.0).mean().mul_scalar(weight);
            }
        }
        if cfg.identity_reg > 0.0 {
            loss = loss + identity_penalty(&model.head).mul_scalar(cfg.identity_reg);
        }
        Ok(loss)
    }

    /// Back-propagate `loss` and step both optimizers with the learning rates times `factor`
    /// (clipping globally first when configured).
    fn apply_gradients(
        &mut self,
        mut model: GnnCoderModel,
        loss: Tensor<1>,
        factor: f64,
    ) -> GnnCoderModel {
        let cfg = self.cfg;
        let mut grads = loss.backward();
        let mut g_head = GradientsParams::from_module(&mut grads, &model.head);
        let mut g_tr = (cfg.tuned_layers > 0)
            .then(|| GradientsParams::from_module(&mut grads, &model.transformer));
        if cfg.global_clip {
            clip_global(&model, &mut g_head, g_tr.as_mut(), cfg.clip_norm);
        }
        let p = &mut self.run_state;
        model.head = p.optim_head.step(cfg.head_lr * factor, model.head, g_head);
        if let Some(g_tr) = g_tr {
            model.transformer =
                p.optim_tr
                    .step(cfg.transformer_lr * factor, model.transformer, g_tr);
        }
        model
    }

    /// One training step: the batch, its loss, the update, the progress and a `Step` event.
    fn step(
        &mut self,
        model: GnnCoderModel,
        report: &mut dyn FnMut(&Event),
    ) -> Result<GnnCoderModel> {
        let (cfg, total) = (self.cfg, self.total);
        let idx = self.batch();
        let loss = self.batch_loss(&model, &idx)?;
        let value = loss_value(&loss, self.run_state.state.step)?;
        let factor = cfg.lr_factor(self.run_state.state.step, total);
        let model = self.apply_gradients(model, loss, factor);
        let state = &mut self.run_state.state;
        state.step += 1;
        state.pairs_seen += cfg.batch_size;
        state.last_loss = value;
        self.window.1 += cfg.batch_size;
        let el = self.window.0.elapsed().as_secs_f64();
        report(&Event::Step {
            step: state.step,
            total,
            epoch: state.step as f64 / self.per_epoch as f64,
            loss: value,
            lr: factor,
            pairs_per_s: self.window.1 as f64 / el.max(1e-9),
        });
        if el > 30.0 {
            self.window = (Instant::now(), 0);
        }
        Ok(model)
    }

    /// Validate after a step every `eval_every` steps and at the last step (when there are
    /// validation pairs), reporting a `Valid` event.
    fn validate_if_due(
        &mut self,
        model: &GnnCoderModel,
        report: &mut dyn FnMut(&Event),
    ) -> Result<()> {
        let (cfg, step) = (self.cfg, self.run_state.state.step);
        let due = (cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) || step == self.total;
        if let Some(v) = self.valid
            && due
        {
            let (metrics, mam) = validate(model, cfg, v)?;
            self.last_valid = Some((metrics, mam));
            report(&Event::Valid { step, metrics, mam });
        }
        Ok(())
    }

    /// Write a checkpoint after a step every `checkpoint_every` steps, at the last step and when
    /// `stop` is set, reporting a `Checkpoint` event.
    fn checkpoint_if_due(
        &mut self,
        model: &GnnCoderModel,
        stop: &AtomicBool,
        report: &mut dyn FnMut(&Event),
    ) -> Result<()> {
        let step = self.run_state.state.step;
        if step.is_multiple_of(self.cfg.checkpoint_every)
            || step == self.total
            || stop.load(Ordering::Relaxed)
        {
            self.run_state.state.seconds = self.base_seconds + self.started.elapsed().as_secs_f64();
            let path = save_checkpoint(self.out, model, self.head_cfg, &self.run_state)?;
            report(&Event::Checkpoint { step, path });
        }
        Ok(())
    }

    /// The report of the run, validating a completed run once more if no validation ran yet.
    fn finish(mut self, model: GnnCoderModel) -> Result<(GnnCoderModel, TrainReport)> {
        let state = &self.run_state.state;
        let completed = state.step >= self.total;
        if completed
            && self.last_valid.is_none()
            && let Some(v) = self.valid
        {
            self.last_valid = Some(validate(&model, self.cfg, v)?);
        }
        let report_out = TrainReport {
            steps: state.step,
            total_steps: self.total,
            pairs_seen: state.pairs_seen,
            seconds: self.base_seconds + self.started.elapsed().as_secs_f64(),
            final_loss: state.last_loss,
            valid: self.last_valid.map(|v| v.0),
            valid_mam: self.last_valid.map(|v| v.1),
            completed,
        };
        Ok((model, report_out))
    }
}

/// Train `model` (built on an autodiff device, with `head_cfg` its head configuration) on
/// `train`; validate on `valid`; checkpoint into `out`, resuming from its latest checkpoint if
/// there is one (the configuration must then equal the saved `train.json`). Returns the
/// trained model. `stop` ends the run early (after writing a checkpoint).
///
/// The stages: `check_inputs`, `start_or_resume`, then per step `StepLoop::step`,
/// `StepLoop::validate_if_due` and `StepLoop::checkpoint_if_due`, and `StepLoop::finish`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    model: GnnCoderModel,
    head_cfg: &HeadConfig,
    cfg: &TrainConfig,
    train: PairCaches<'_>,
    valid: Option<PairCaches<'_>>,
    out: &Path,
    stop: &AtomicBool,
    report: &mut dyn FnMut(&Event),
) -> Result<(GnnCoderModel, TrainReport)> {
    let groups = check_inputs(&model, cfg, train, valid)?;
    let head_cfg = run_head_config(head_cfg, cfg);
    let (mut model, run_state, resumed) = start_or_resume(model, &head_cfg, cfg, out)?;
    let n = train.codes.len();
    let total = cfg.total_steps(n);
    report(&Event::Start {
        step: run_state.state.step,
        total,
        pairs: n,
        resumed,
    });
    let mut run = StepLoop {
        cfg,
        head_cfg: &head_cfg,
        train,
        valid,
        groups,
        out,
        device: model.head.out_proj.weight.val().device(),
        total,
        per_epoch: (n / cfg.batch_size).max(1),
        base_seconds: run_state.state.seconds,
        run_state,
        started: Instant::now(),
        window: (Instant::now(), 0),
        order_epoch: usize::MAX,
        order: Vec::new(),
        last_valid: None,
    };
    while run.run_state.state.step < total {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        model = run.step(model, report)?;
        run.validate_if_due(&model, report)?;
        run.checkpoint_if_due(&model, stop, report)?;
    }
    run.finish(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gnn_coder_model::{BertConfig, GraphConfig};

    #[test]
    fn duplicates_are_masked_but_not_the_positive() {
        let device = Device::flex();
        // Rows 0 and 2 share a code, rows 1 and 3 a query; row 4 is unique; 0 = unknown.
        let codes = [7, 8, 7, 9, 0];
        let queries = [1, 2, 3, 2, 0];
        let mask = duplicate_mask(&codes, &queries, &device).unwrap();
        let m: Vec<f32> = mask.try_into_vec_as::<f32>().unwrap();
        let at = |i: usize, j: usize| m[i * 5 + j];
        for i in 0..5 {
            assert_eq!(at(i, i), 0.0);
        }
        assert!(at(0, 2) < -1e3 && at(2, 0) < -1e3);
        assert!(at(1, 3) < -1e3 && at(3, 1) < -1e3);
        assert_eq!(at(0, 1), 0.0);
        assert_eq!(at(4, 0), 0.0);
        assert!(duplicate_mask(&[1, 2, 0, 0], &[3, 4, 0, 0], &device).is_none());
    }

    #[test]
    fn global_clipping_scales_all_gradients_to_the_norm() {
        let device = Device::flex().autodiff();
        let bert = BertConfig {
            vocab_size: 50,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 16,
            max_position_embeddings: 16,
            ..BertConfig::default()
        };
        let head = HeadConfig {
            graph: GraphConfig {
                d_model: 8,
                hidden: 4,
                kind_vocab_size: 10,
                ..GraphConfig::default()
            },
            out_dim: 8,
            ..HeadConfig::default()
        };
        let cfg = TrainConfig {
            tuned_layers: 1,
            ..TrainConfig::default()
        };
        let model = prepare_model(GnnCoderModel::new(&bert, &head, &device).unwrap(), &cfg);
        let x: Tensor<3> = Tensor::random(
            [3, 5, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mask: Tensor<2> = Tensor::ones([3, 5], &device);
        let bias = BertModel::attention_bias(mask.clone());
        let states = model.transformer.forward_layers(x, bias, 0..1);
        let seq = BertModel::mean_pool(states, mask);
        let q = model.head.query_vectors(seq.clone());
        let c = model
            .head
            .code_vectors(seq, Tensor::zeros([3, 5, 8], &device), None)
            .unwrap();
        let loss = infonce(q, c, 0.05, None) + identity_penalty(&model.head);
        let mut grads = loss.backward();
        let mut g_head = GradientsParams::from_module(&mut grads, &model.head);
        let mut g_tr = GradientsParams::from_module(&mut grads, &model.transformer);
        // Queries and codes coincide here, so the gradient is small: clip to a tenth of it.
        let norm = clip_global(&model, &mut g_head, Some(&mut g_tr), 1e9);
        assert!(norm > 0.0 && norm.is_finite(), "norm {norm}");
        let target = norm / 10.0;
        let before = clip_global(&model, &mut g_head, Some(&mut g_tr), target);
        assert!((before - norm).abs() <= 1e-6 * norm, "{before} vs {norm}");
        let after = clip_global(&model, &mut g_head, Some(&mut g_tr), 1e9);
        assert!(
            (after - target).abs() < 1e-3 * target,
            "clipped norm {after}, want {target}"
        );
    }
}
