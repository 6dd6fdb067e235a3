//! The head's forward pass (graph encoder, fusion gate, projections) on plain slices.
//!
//! This is [`GnnCoderHead::code_vectors`](crate::model::GnnCoderHead::code_vectors) for
//! inference, reading the transformer's ragged [`States`] directly: the span means gather token
//! rows by their position in the ragged matrix (nothing is padded to the batch's longest text),
//! message passing and pooling are loops over the batch's edge list, and the four dense layers
//! (node input, graph projection, gate, output projection) are f32 [`PackedLinear`]s. burn's
//! version of the same math stays the one training differentiates; a test holds the two
//! together.

use super::encoder::{States, linear, tensor_values};
use super::gemm::{PackedLinear, Precision};
use super::math::normalize_rows;
use crate::error::{ModelError, Result};
use crate::graph::{GraphBatch, GraphEncoder, child_feature, message_edges, top_k_per_graph};
use crate::model::GnnCoderHead;

#[derive(Debug, Clone)]
struct Conv {
    /// `att_dst` weight (`hidden` values) and bias; `att_src` weight.
    dst: Vec<f32>,
    dst_bias: f32,
    src: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Pool {
    /// `p / ||p||`.
    direction: Vec<f32>,
    beta1: f32,
    beta2: f32,
}

/// A forward-only copy of a [`GnnCoderHead`] (code side; the query projection lives beside the
/// encoder in the embedder).
#[derive(Debug, Clone)]
pub struct CodeHead {
    d_model: usize,
    hidden: usize,
    kind_vocab: usize,
    /// `[kind_vocab, d_model]`.
    kinds: Vec<f32>,
    input: PackedLinear,
    convs: Vec<Conv>,
    pools: Vec<Pool>,
    eps: f32,
    pool_ratio: f64,
    pool_min_keep: usize,
    child_count_score: bool,
    child_count_log1p: bool,
    graph_proj: PackedLinear,
    gate: PackedLinear,
    out_proj: PackedLinear,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl CodeHead {
    /// Copies `head`'s weights (as loaded, trained or not).
    pub fn from_burn(head: &GnnCoderHead) -> Result<CodeHead> {
        let g: &GraphEncoder = &head.graph;
        let [kind_vocab, d_model] = g.kind_embedding.weight.val().dims();
        let hidden = g.hidden;
        let mut convs = Vec::with_capacity(g.convs.len());
        for c in &g.convs {
            let dst = tensor_values(c.att_dst.weight.val())?;
            let dst_bias = match &c.att_dst.bias {
                Some(b) => tensor_values(b.val())?.first().copied().unwrap_or(0.0),
                None => 0.0,
            };
            let src = tensor_values(c.att_src.weight.val())?;
            if dst.len() != hidden || src.len() != hidden {
                return Err(ModelError::Config(format!(
                    "FAConv attention weights have {} and {} values, expected {hidden}",
                    dst.len(),
                    src.len()
                )));
            }
            convs.push(Conv { dst, dst_bias, src });
        }
        let mut pools = Vec::with_capacity(g.pools.len());
        for p in &g.pools {
            let mut direction = tensor_values(p.p.val())?;
            let beta = tensor_values(p.beta.val())?;
            if direction.len() != hidden || beta.len() != 2 {
                return Err(ModelError::Config(
                    "ASTGPool parameters have the wrong size".into(),
                ));
            }
            let norm = direction
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .sqrt()
                .max(1e-12);
            direction.iter_mut().for_each(|v| *v /= norm);
            pools.push(Pool {
                direction,
                beta1: beta[0],
                beta2: beta[1],
            });
        }
        let input = linear(&g.input, Precision::F32)?;
        let graph_proj = linear(&head.graph_proj, Precision::F32)?;
        let gate = linear(&head.gate, Precision::F32)?;
        let out_proj = linear(&head.out_proj, Precision::F32)?;
        if input.in_dim() != d_model
            || input.out_dim() != hidden
            || graph_proj.in_dim() != g.convs.len() * 2 * hidden
            || graph_proj.out_dim() != d_model
            || gate.in_dim() != 2 * d_model
            || gate.out_dim() != d_model
            || out_proj.in_dim() != d_model
        {
            return Err(ModelError::Config(
                "head layer sizes do not fit together".into(),
            ));
        }
        Ok(CodeHead {
            d_model,
            hidden,
            kind_vocab,
            kinds: tensor_values(g.kind_embedding.weight.val())?,
            input,
            convs,
            pools,
            eps: g.eps as f32,
            pool_ratio: g.pool_ratio,
            pool_min_keep: g.pool_min_keep,
            child_count_score: g.child_count_score,
            child_count_log1p: g.child_count_log1p,
            graph_proj,
            gate,
            out_proj,
        })
    }

    pub fn out_dim(&self) -> usize {
        self.out_proj.out_dim()
    }

    /// Graph readouts `[G, layers * 2 * hidden]` of `batch` (built with
    /// [`GraphBatch::build_ragged`] over `states.offsets`), in the order of `batch.rows`.
    pub fn readouts(
        &self,
        states: &States,
        batch: &GraphBatch,
        threads: usize,
    ) -> Result<Vec<f32>> {
        let (d, h) = (self.d_model, self.hidden);
        if states.dim != d {
            return Err(ModelError::Input(format!(
                "token states are {} wide, the head expects {d}",
                states.dim
            )));
        }
        let n = batch.num_nodes();
        let layers = self.convs.len();
        let g_count = batch.rows.len();
        let rdim = layers * 2 * h;
        let mut out = vec![0f32; g_count * rdim];
        if g_count == 0 {
            return Ok(out);
        }
        let tokens = states.data.len() / d.max(1);
        // Node features: kind embedding + span mean of token rows.
        let mut x = vec![0f32; n * d];
        for (row, &k) in x.chunks_exact_mut(d).zip(&batch.kinds) {
            let k = usize::try_from(k)
                .ok()
                .filter(|&k| k < self.kind_vocab)
                .unwrap_or(0);
            row.copy_from_slice(&self.kinds[k * d..(k + 1) * d]);
        }
        for ((&node, &tok), &w) in batch
            .pair_node
            .iter()
            .zip(&batch.pair_token)
            .zip(&batch.pair_weight)
        {
            let (node, tok) = (node as usize, tok as usize);
            if node >= n || tok >= tokens {
                return Err(ModelError::Input(format!(
                    "span pair ({node}, {tok}) out of range ({n} nodes, {tokens} tokens)"
                )));
            }
            let src = &states.data[tok * d..(tok + 1) * d];
            for (o, s) in x[node * d..(node + 1) * d].iter_mut().zip(src) {
                *o += w * s;
            }
        }
        let mut h0 = vec![0f32; n * h];
        self.input.forward(&x, n, &mut h0, threads, &mut Vec::new());
        h0.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut hcur = h0.clone();
        let mut child = child_feature(
            &batch.child_counts,
            self.child_count_score,
            self.child_count_log1p,
        );
        if child.len() != n {
            return Err(ModelError::Input(
                "child counts do not match the nodes".into(),
            ));
        }
        let mut sizes = batch.sizes.clone();
        let mut edges = batch.edges.clone();
        let mut n_cur = n;
        let mut next = Vec::new();
        let (mut a_dst, mut a_src) = (Vec::new(), Vec::new());
        for (layer, (conv, pool)) in self.convs.iter().zip(&self.pools).enumerate() {
            // FAConv: h' = eps * h0 + sum_j tanh(a_dst(h_i) + a_src(h_j)) * norm_ij * h_j.
            a_dst.clear();
            a_src.clear();
            for r in hcur.chunks_exact(h) {
                a_dst.push(dot(r, &conv.dst) + conv.dst_bias);
                a_src.push(dot(r, &conv.src));
            }
            next.clear();
            next.extend(h0.iter().map(|v| v * self.eps));
            let (src, dst, norm) = message_edges(n_cur, &edges);
            for ((&s, &t), &w) in src.iter().zip(&dst).zip(&norm) {
                let (s, t) = (s as usize, t as usize);
                let coef = (a_dst[t] + a_src[s]).tanh() * w;
                let (from, to) = (s * h, t * h);
                for j in 0..h {
                    next[to + j] += coef * hcur[from + j];
                }
            }
            // ASTGPool: score = beta1 * (h . p / |p|) + beta2 * child count; per-graph top-k,
            // kept rows gated by tanh(score).
            let scores: Vec<f32> = next
                .chunks_exact(h)
                .zip(&child)
                .map(|(r, &c)| dot(r, &pool.direction) * pool.beta1 + c * pool.beta2)
                .collect();
            let (kept, new_sizes) =
                top_k_per_graph(&scores, &sizes, self.pool_ratio, self.pool_min_keep);
            hcur.clear();
            let mut h0_kept = Vec::with_capacity(kept.len() * h);
            let mut child_kept = Vec::with_capacity(kept.len());
            for &i in &kept {
                let gate = scores[i].tanh();
                hcur.extend(next[i * h..(i + 1) * h].iter().map(|v| v * gate));
                h0_kept.extend_from_slice(&h0[i * h..(i + 1) * h]);
                child_kept.push(child[i]);
            }
            h0 = h0_kept;
            child = child_kept;
            let mut remap = vec![usize::MAX; n_cur];
            for (new, &old) in kept.iter().enumerate() {
                remap[old] = new;
            }
            edges.retain_mut(|e| {
                let (a, b) = (remap[e.0], remap[e.1]);
                *e = (a, b);
                a != usize::MAX && b != usize::MAX
            });
            n_cur = kept.len();
            sizes = new_sizes;
            // Readout: mean || max per graph.
            let mut start = 0;
            for (gi, &k) in sizes.iter().enumerate() {
                let base = gi * rdim + layer * 2 * h;
                let (mean, max) = out[base..base + 2 * h].split_at_mut(h);
                max.fill(f32::NEG_INFINITY);
                for r in hcur[start * h..(start + k) * h].chunks_exact(h) {
                    for j in 0..h {
                        mean[j] += r[j];
                        max[j] = max[j].max(r[j]);
                    }
                }
                let inv = 1.0 / k.max(1) as f32;
                mean.iter_mut().for_each(|v| *v *= inv);
                if k == 0 {
                    max.fill(0.0);
                }
                start += k;
            }
        }
        Ok(out)
    }

    /// Code vectors for the texts of `states`: `seq` is their mean-pooled sequence vectors
    /// `[B, d_model]`; rows with a graph in `graphs` are fused with it through the gate, the
    /// others keep the sequence vector. Returns L2-normalized `[B, out_dim]` rows.
    pub fn code_vectors(
        &self,
        seq: &[f32],
        states: &States,
        graphs: Option<&GraphBatch>,
        threads: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let d = self.d_model;
        let b = states.len();
        if seq.len() != b * d {
            return Err(ModelError::Input(
                "sequence vectors do not match the batch".into(),
            ));
        }
        let mut fused = seq.to_vec();
        if let Some(gb) = graphs.filter(|g| !g.is_empty()) {
            let g = gb.rows.len();
            let readouts = self.readouts(states, gb, threads)?;
            let mut gp = vec![0f32; g * d];
            self.graph_proj
                .forward(&readouts, g, &mut gp, threads, &mut Vec::new());
            let mut cat = vec![0f32; g * 2 * d];
            for (i, &row) in gb.rows.iter().enumerate() {
                if row >= b {
                    return Err(ModelError::Input(format!("graph row {row} past the batch")));
                }
                cat[i * 2 * d..i * 2 * d + d].copy_from_slice(&seq[row * d..(row + 1) * d]);
                cat[i * 2 * d + d..(i + 1) * 2 * d].copy_from_slice(&gp[i * d..(i + 1) * d]);
            }
            let mut gate = vec![0f32; g * d];
            self.gate
                .forward(&cat, g, &mut gate, threads, &mut Vec::new());
            for (i, &row) in gb.rows.iter().enumerate() {
                let f = &mut fused[row * d..(row + 1) * d];
                let (gl, p) = (&gate[i * d..(i + 1) * d], &gp[i * d..(i + 1) * d]);
                for j in 0..d {
                    let s = 1.0 / (1.0 + (-gl[j]).exp());
                    f[j] = f[j] * s + p[j] * (1.0 - s);
                }
            }
        }
        let od = self.out_dim();
        let mut out = vec![0f32; b * od];
        self.out_proj
            .forward(&fused, b, &mut out, threads, &mut Vec::new());
        Ok(normalize_rows(out, od))
    }
}
