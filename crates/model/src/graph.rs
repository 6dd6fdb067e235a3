//! The AST graph encoder: node features from the transformer's token vectors, three FAConv layers
//! each followed by ASTGPool (hierarchical top-k pooling), mean||max readouts.
//!
//! Batching: the nodes of all graphs of a batch are concatenated (graph `g` owns a contiguous
//! range of rows); message passing gathers source rows with `select` and sums messages into
//! destination rows with `select_assign(.., IndexingUpdateOp::Add)` (index-add). The top-k
//! choice of a pooling layer is a host-side, per-graph sort of the scores (it is not
//! differentiable anyway); the scores reach the loss through the `tanh` gate.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::{relu, tanh};
use gnn_coder_syntax::AstGraph;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::tokenize::Encoded;

/// Sizes and hyper-parameters of the graph encoder (saved with the weights).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GraphConfig {
    /// Width of the transformer's token vectors (input node features).
    pub d_model: usize,
    /// Width of node states inside the graph network.
    pub hidden: usize,
    /// Number of rows of the node-kind embedding table; global kind id = language offset + the
    /// syntax crate's per-language kind id (see [`crate::kind_offset`]). Ids past the table map
    /// to 0 (unknown).
    pub kind_vocab_size: usize,
    /// Number of FAConv (+ ASTGPool) layers.
    pub num_layers: usize,
    /// FAGCN's residual weight of the initial features: `h' = eps * h0 + sum_j ...`.
    pub eps: f64,
    /// Fraction of nodes each pooling layer keeps, per graph.
    pub pool_ratio: f64,
    /// Pooling keeps at least `min(pool_min_keep, n)` nodes of a graph with `n` nodes.
    pub pool_min_keep: usize,
    /// ASTGPool's child-count term in the node score (`false`: plain top-k pooling on the
    /// learned projection alone, the ablation baseline).
    pub child_count_score: bool,
    /// ASTGPool scores with `ln(1 + children)` instead of the raw count, so a node with 40
    /// children does not outscore every learned feature (false in weights trained before it).
    pub child_count_log1p: bool,
}

impl Default for GraphConfig {
    fn default() -> Self {
        Self {
            d_model: 384,
            hidden: 256,
            kind_vocab_size: 8192,
            num_layers: 3,
            eps: 0.3,
            pool_ratio: 0.5,
            pool_min_keep: 3,
            child_count_score: true,
            child_count_log1p: false,
        }
    }
}

impl GraphConfig {
    /// Width of the concatenated per-layer readouts (`num_layers * 2 * hidden`).
    pub fn readout_dim(&self) -> usize {
        self.num_layers * 2 * self.hidden
    }

    pub fn validate(&self) -> Result<()> {
        if self.d_model == 0 || self.hidden == 0 || self.kind_vocab_size == 0 {
            return Err(ModelError::Config("graph sizes must be non-zero".into()));
        }
        if self.num_layers == 0 {
            return Err(ModelError::Config(
                "graph encoder needs at least one layer".into(),
            ));
        }
        if !(self.pool_ratio > 0.0 && self.pool_ratio <= 1.0) {
            return Err(ModelError::Config(format!(
                "pool_ratio {} must be in (0, 1]",
                self.pool_ratio
            )));
        }
        Ok(())
    }

    pub fn init(&self, device: &Device) -> GraphEncoder {
        let h = self.hidden;
        GraphEncoder {
            kind_embedding: EmbeddingConfig::new(self.kind_vocab_size, self.d_model)
                .with_initializer(burn::nn::Initializer::Normal {
                    mean: 0.0,
                    std: 0.02,
                })
                .init(device),
            input: LinearConfig::new(self.d_model, h).init(device),
            convs: (0..self.num_layers)
                .map(|_| FaConv {
                    att_dst: LinearConfig::new(h, 1).init(device),
                    att_src: LinearConfig::new(h, 1).with_bias(false).init(device),
                })
                .collect(),
            pools: (0..self.num_layers)
                .map(|_| AstgPool {
                    // A random direction; norm is divided out.
                    p: Param::from_tensor(Tensor::random(
                        [h],
                        burn::tensor::Distribution::Normal(0.0, 1.0),
                        device,
                    )),
                    // beta1 (feature projection), beta2 (child count).
                    beta: Param::from_tensor(Tensor::from_floats([1.0f32, 0.1], device)),
                })
                .collect(),
            hidden: h,
            eps: self.eps,
            pool_ratio: self.pool_ratio,
            pool_min_keep: self.pool_min_keep,
            child_count_score: self.child_count_score,
            child_count_log1p: self.child_count_log1p,
        }
    }
}

/// FAConv (FAGCN, Bo et al. 2021): per-edge coefficient `alpha_ij = tanh(g . [h_i || h_j])`,
/// split as `att_dst(h_i) + att_src(h_j)` (the bias of `att_dst` is the bias of `g`).
#[derive(Module, Debug)]
pub struct FaConv {
    pub att_dst: Linear,
    pub att_src: Linear,
}

/// ASTGPool: `score = beta1 * (X . p / ||p||) + beta2 * child_count`, top-k per graph, kept
/// features gated by `tanh(score)`.
#[derive(Module, Debug)]
pub struct AstgPool {
    pub p: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
}

/// Result of one pooling step.
#[derive(Debug, Clone)]
pub struct Pooled {
    /// Gated features of the kept nodes, [kept, hidden].
    pub x: Tensor<2>,
    /// Kept rows (indices into the input), increasing.
    pub kept: Vec<usize>,
    /// Kept nodes per graph.
    pub sizes: Vec<usize>,
    /// Scores of all input rows.
    pub scores: Vec<f32>,
}

impl AstgPool {
    /// Score all nodes, keep the top `max(ceil(ratio * n), min(min_keep, n))` of each graph
    /// (graph `g` owns `sizes[g]` consecutive rows of `x`), gate them by `tanh(score)`.
    /// `child_counts`: [n, 1].
    pub fn forward(
        &self,
        x: Tensor<2>,
        child_counts: Tensor<2>,
        sizes: &[usize],
        ratio: f64,
        min_keep: usize,
    ) -> Result<Pooled> {
        let device = x.device();
        let [_, h] = x.dims();
        let p = self.p.val();
        let p_norm = p
            .clone()
            .square()
            .sum()
            .sqrt()
            .clamp_min(1e-12)
            .reshape([1, 1]);
        let beta = self.beta.val();
        let beta1 = beta.clone().narrow(0, 0, 1).reshape([1, 1]);
        let beta2 = beta.narrow(0, 1, 1).reshape([1, 1]);
        let proj = x.clone().matmul(p.reshape([h, 1])) / p_norm;
        let score = proj * beta1 + child_counts * beta2; // [n, 1]
        let scores: Vec<f32> = score
            .clone()
            .try_into_vec_as::<f32>()
            .map_err(|e| ModelError::Tensor(format!("{e:?}")))?;
        let (kept, sizes) = top_k_per_graph(&scores, sizes, ratio, min_keep);
        let kept_t = int_tensor(kept.iter().map(|&i| i as i64).collect(), &device);
        let gate = tanh(score.select(0, kept_t.clone()));
        Ok(Pooled {
            x: x.select(0, kept_t) * gate,
            kept,
            sizes,
            scores,
        })
    }
}

#[derive(Module, Debug)]
pub struct GraphEncoder {
    pub kind_embedding: Embedding,
    /// Node features (token mean + kind embedding, width `d_model`) -> `relu` -> `hidden`.
    pub input: Linear,
    pub convs: Vec<FaConv>,
    pub pools: Vec<AstgPool>,
    pub hidden: usize,
    pub eps: f64,
    pub pool_ratio: f64,
    pub pool_min_keep: usize,
    pub child_count_score: bool,
    pub child_count_log1p: bool,
}

/// The child-count term ASTGPool scores a node with: the raw count, or `ln(1 + count)`; zeros
/// when the score leaves child counts out.
pub(crate) fn child_feature(counts: &[f32], score: bool, log1p: bool) -> Vec<f32> {
    match (score, log1p) {
        (false, _) => vec![0.0; counts.len()],
        (true, false) => counts.to_vec(),
        (true, true) => counts.iter().map(|c| c.max(0.0).ln_1p()).collect(),
    }
}

/// Host-side description of the graphs of one batch (built by [`GraphBatch::build`]).
#[derive(Debug, Clone, Default)]
pub struct GraphBatch {
    /// Batch row (index into the transformer batch) of each graph; graphs with no node are left
    /// out.
    pub rows: Vec<usize>,
    /// Node count of each graph; nodes of graph `g` follow those of graph `g - 1`.
    pub sizes: Vec<usize>,
    /// Global node-kind id of every node.
    pub kinds: Vec<i64>,
    /// Child count of every node.
    pub child_counts: Vec<f32>,
    /// Parent -> child edges, in global node indices.
    pub edges: Vec<(usize, usize)>,
    /// (node, flat token index `row * seq_len + position`, weight) triples of the span means.
    pub pair_node: Vec<i64>,
    pub pair_token: Vec<i64>,
    pub pair_weight: Vec<f32>,
}

/// One unit's input to [`GraphBatch::build`].
pub struct GraphInput<'a> {
    /// Row of the unit in the transformer batch.
    pub row: usize,
    pub graph: &'a AstGraph,
    pub tokens: &'a Encoded,
    /// Added to every node kind id (language slot, see [`crate::kind_offset`]).
    pub kind_offset: u32,
}

impl GraphBatch {
    /// Check the graphs and map tokens to nodes: node `i` averages the (non-special) tokens whose
    /// byte span lies inside the node's byte span. `seq_len` is the padded batch length.
    pub fn build(inputs: &[GraphInput<'_>], seq_len: usize, kind_vocab: usize) -> Result<Self> {
        Self::build_with(inputs, &|row| row * seq_len, kind_vocab)
    }

    /// [`build`](Self::build) for a ragged batch (no padding): row `r`'s tokens start at flat
    /// index `offsets[r]` (the [`States`](crate::cpu::States) layout).
    pub fn build_ragged(
        inputs: &[GraphInput<'_>],
        offsets: &[usize],
        kind_vocab: usize,
    ) -> Result<Self> {
        if let Some(i) = inputs.iter().find(|i| i.row + 1 >= offsets.len()) {
            return Err(ModelError::Input(format!(
                "graph row {} past the batch of {}",
                i.row,
                offsets.len().saturating_sub(1)
            )));
        }
        Self::build_with(inputs, &|row| offsets[row], kind_vocab)
    }

    /// `token_base(row)`: flat index of the first token of batch row `row`.
    fn build_with(
        inputs: &[GraphInput<'_>],
        token_base: &dyn Fn(usize) -> usize,
        kind_vocab: usize,
    ) -> Result<Self> {
        let mut b = GraphBatch::default();
        for input in inputs {
            let g = input.graph;
            let n = g.len();
            if n == 0 {
                continue;
            }
            if g.spans.len() != n || g.child_counts.len() != n {
                return Err(ModelError::Input(format!(
                    "AST graph has {} kinds, {} spans, {} child counts",
                    n,
                    g.spans.len(),
                    g.child_counts.len()
                )));
            }
            let base = b.kinds.len();
            for &(p, c) in &g.edges {
                let (p, c) = (p as usize, c as usize);
                if p >= n || c >= n {
                    return Err(ModelError::Input(format!(
                        "AST edge ({p}, {c}) out of range for {n} nodes"
                    )));
                }
                if p != c {
                    b.edges.push((base + p, base + c));
                }
            }
            b.kinds.extend(g.kinds.iter().map(|&k| {
                // A kind id past the language's slot is "unknown" (id 0) of that language.
                let k = if u32::from(k) < crate::KIND_SLOT_SIZE {
                    k as usize
                } else {
                    0
                };
                let id = input.kind_offset as usize + k;
                if id < kind_vocab { id as i64 } else { 0 }
            }));
            b.child_counts
                .extend(g.child_counts.iter().map(|&c| c as f32));

            // Non-special tokens with their positions; offsets are increasing.
            let toks: Vec<(usize, usize, usize)> = input
                .tokens
                .offsets
                .iter()
                .zip(&input.tokens.special)
                .enumerate()
                .filter(|(_, ((s, e), special))| !**special && e > s)
                .map(|(pos, ((s, e), _))| (pos, *s, *e))
                .collect();
            for (i, &(ns, ne)) in g.spans.iter().enumerate() {
                let (ns, ne) = (ns as usize, ne as usize);
                let first = toks.partition_point(|t| t.1 < ns);
                let last = toks.partition_point(|t| t.2 <= ne);
                if first < last {
                    let w = 1.0 / (last - first) as f32;
                    for t in &toks[first..last] {
                        b.pair_node.push((base + i) as i64);
                        b.pair_token.push((token_base(input.row) + t.0) as i64);
                        b.pair_weight.push(w);
                    }
                }
            }
            b.rows.push(input.row);
            b.sizes.push(n);
        }
        Ok(b)
    }

    pub fn num_nodes(&self) -> usize {
        self.kinds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

fn int_tensor(values: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn float_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Undirected edges (both directions) plus one self loop per node, with the symmetric
/// normalization `1 / sqrt(d_i d_j)` where `d` counts the self loop.
pub(crate) fn message_edges(n: usize, edges: &[(usize, usize)]) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let mut deg = vec![1.0f32; n];
    for &(a, b) in edges {
        deg[a] += 1.0;
        deg[b] += 1.0;
    }
    let m = n + 2 * edges.len();
    let (mut src, mut dst, mut norm) = (
        Vec::with_capacity(m),
        Vec::with_capacity(m),
        Vec::with_capacity(m),
    );
    for (i, d) in deg.iter().enumerate() {
        src.push(i as i64);
        dst.push(i as i64);
        norm.push(1.0 / d);
    }
    for &(a, b) in edges {
        let w = 1.0 / (deg[a] * deg[b]).sqrt();
        src.extend([a as i64, b as i64]);
        dst.extend([b as i64, a as i64]);
        norm.extend([w, w]);
    }
    (src, dst, norm)
}

/// Per-graph top-k of `scores` (graph `g` owns `sizes[g]` consecutive rows). Returns kept global
/// indices in increasing order (so graphs stay contiguous) and the new sizes.
pub(crate) fn top_k_per_graph(
    scores: &[f32],
    sizes: &[usize],
    ratio: f64,
    min_keep: usize,
) -> (Vec<usize>, Vec<usize>) {
    let mut kept = Vec::new();
    let mut new_sizes = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &n in sizes {
        let k = ((ratio * n as f64).ceil() as usize)
            .max(min_keep.min(n))
            .min(n);
        let mut order: Vec<usize> = (start..start + n).collect();
        // Highest score first; ties broken by index, so the result is deterministic.
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        let mut chosen = order[..k].to_vec();
        chosen.sort_unstable();
        kept.extend(chosen);
        new_sizes.push(k);
        start += n;
    }
    (kept, new_sizes)
}

impl GraphEncoder {
    /// Encode the graphs of `batch`. `token_states`: [B, L, d_model] transformer output of the
    /// batch the graphs index into. Returns [G, readout_dim] in the order of `batch.rows`.
    pub fn forward(&self, token_states: Tensor<3>, batch: &GraphBatch) -> Result<Tensor<2>> {
        let device = token_states.device();
        let [b, l, d] = token_states.dims();
        let n = batch.num_nodes();
        let g_count = batch.rows.len();
        let h = self.hidden;
        if g_count == 0 {
            return Ok(Tensor::zeros([0, self.convs.len() * 2 * h], &device));
        }

        // Node features: span mean of token vectors (one gather + one index-add) + kind embedding.
        let kinds = int_tensor(batch.kinds.clone(), &device);
        let mut x = self.kind_embedding.weight.val().select(0, kinds);
        if !batch.pair_node.is_empty() {
            let p = batch.pair_node.len();
            let tokens = token_states
                .reshape([b * l, d])
                .select(0, int_tensor(batch.pair_token.clone(), &device));
            let w = float_tensor(batch.pair_weight.clone(), [p, 1], &device);
            let means = Tensor::zeros([n, d], &device).select_assign(
                0,
                int_tensor(batch.pair_node.clone(), &device),
                tokens * w,
                IndexingUpdateOp::Add,
            );
            x = x + means;
        }
        let mut h0 = relu(self.input.forward(x));
        let mut hcur = h0.clone();
        let mut child = float_tensor(
            child_feature(
                &batch.child_counts,
                self.child_count_score,
                self.child_count_log1p,
            ),
            [n, 1],
            &device,
        );
        let mut sizes = batch.sizes.clone();
        let mut edges = batch.edges.clone();
        let mut n_cur = n;
        let mut readouts = Vec::with_capacity(self.convs.len());

        for (conv, pool) in self.convs.iter().zip(&self.pools) {
            // --- FAConv over the current (pooled) graph.
            let (src, dst, norm) = message_edges(n_cur, &edges);
            let m = src.len();
            let src = int_tensor(src, &device);
            let dst = int_tensor(dst, &device);
            let a_dst = conv.att_dst.forward(hcur.clone()).select(0, dst.clone());
            let a_src = conv.att_src.forward(hcur.clone()).select(0, src.clone());
            let coef = tanh(a_dst + a_src) * float_tensor(norm, [m, 1], &device);
            let msgs = hcur.select(0, src) * coef;
            hcur =
                h0.clone()
                    .mul_scalar(self.eps)
                    .select_assign(0, dst, msgs, IndexingUpdateOp::Add);

            // --- ASTGPool.
            let pooled = pool.forward(
                hcur,
                child.clone(),
                &sizes,
                self.pool_ratio,
                self.pool_min_keep,
            )?;
            let kept = pooled.kept;
            let kept_t = int_tensor(kept.iter().map(|&i| i as i64).collect(), &device);
            hcur = pooled.x;
            h0 = h0.select(0, kept_t.clone());
            child = child.select(0, kept_t);
            let new_sizes = pooled.sizes;
            // Induced subgraph on the kept nodes.
            let mut remap = vec![usize::MAX; n_cur];
            for (new, &old) in kept.iter().enumerate() {
                remap[old] = new;
            }
            edges = edges
                .iter()
                .filter_map(|&(a, b)| {
                    let (a, b) = (remap[a], remap[b]);
                    (a != usize::MAX && b != usize::MAX).then_some((a, b))
                })
                .collect();
            n_cur = kept.len();
            sizes = new_sizes;

            readouts.push(readout(hcur.clone(), &sizes, &device));
        }
        Ok(Tensor::cat(readouts, 1))
    }
}

/// Per-graph mean || max over the rows of `x` (graph `g` owns `sizes[g]` consecutive rows, every
/// size >= 1): pad to [G, max_size, h] with one gather, then reduce.
fn readout(x: Tensor<2>, sizes: &[usize], device: &Device) -> Tensor<2> {
    let [n, h] = x.dims();
    let g = sizes.len();
    let maxk = sizes.iter().copied().max().unwrap_or(1).max(1);
    let mut idx = Vec::with_capacity(g * maxk);
    let mut neg = Vec::with_capacity(g * maxk);
    let mut inv = Vec::with_capacity(g);
    let mut start = 0;
    for &k in sizes {
        for j in 0..maxk {
            if j < k {
                idx.push((start + j) as i64);
                neg.push(0.0f32);
            } else {
                idx.push(n as i64); // the zero row
                neg.push(-1.0e30);
            }
        }
        inv.push(1.0 / k.max(1) as f32);
        start += k;
    }
    let padded = Tensor::cat(vec![x, Tensor::zeros([1, h], device)], 0)
        .select(0, int_tensor(idx, device))
        .reshape([g, maxk, h]);
    let mean = padded.clone().sum_dim(1).reshape([g, h]) * float_tensor(inv, [g, 1], device);
    let max = (padded + float_tensor(neg, [g, maxk, 1], device))
        .max_dim(1)
        .reshape([g, h]);
    Tensor::cat(vec![mean, max], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_ratio_and_minimum() {
        let scores = [0.1, 0.9, 0.5, 0.3, /* g2 */ 1.0, 2.0];
        let (kept, sizes) = top_k_per_graph(&scores, &[4, 2], 0.5, 3);
        // g1: k = max(ceil(2), 3) = 3 -> 1, 2, 3; g2: min(3, 2) = 2 -> both.
        assert_eq!(kept, vec![1, 2, 3, 4, 5]);
        assert_eq!(sizes, vec![3, 2]);
    }

    #[test]
    fn message_edges_are_symmetric_with_self_loops() {
        let (src, dst, norm) = message_edges(3, &[(0, 1), (0, 2)]);
        assert_eq!(src.len(), 3 + 4);
        assert_eq!(&src[..3], &[0, 1, 2]);
        assert_eq!(&dst[..3], &[0, 1, 2]);
        // deg: 0 -> 3, 1 -> 2, 2 -> 2
        assert!((norm[0] - 1.0 / 3.0).abs() < 1e-6);
        assert!((norm[3] - 1.0 / 6.0f32.sqrt()).abs() < 1e-6);
    }
}
