//! The MiniLM/BERT encoder's forward pass on ragged batches (no padding).

use std::collections::HashMap;

use burn::prelude::*;

use super::gemm::{PackedLinear, Precision};
use super::math;
use crate::bert::BertModel;
use crate::error::{ModelError, Result};

/// Contextual token vectors of a ragged batch: text `i` owns rows
/// `offsets[i]..offsets[i + 1]` of the `[T, dim]` matrix `data`.
#[derive(Debug, Clone, Default)]
pub struct States {
    pub data: Vec<f32>,
    pub offsets: Vec<usize>,
    pub dim: usize,
}

impl States {
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows of text `i`.
    pub fn rows(&self, i: usize) -> &[f32] {
        &self.data[self.offsets[i] * self.dim..self.offsets[i + 1] * self.dim]
    }

    /// Mean over each text's tokens (sentence-transformers' pooling): `[n, dim]` row-major.
    pub fn mean_pool(&self) -> Vec<f32> {
        let d = self.dim;
        let mut out = vec![0f32; self.len() * d];
        for (i, o) in out.chunks_exact_mut(d).enumerate() {
            let rows = self.rows(i);
            let count = (rows.len() / d).max(1) as f32;
            for r in rows.chunks_exact(d) {
                math::add_inplace(o, r);
            }
            for v in o.iter_mut() {
                *v /= count;
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

#[derive(Debug, Clone)]
struct Layer {
    qkv: PackedLinear,
    attn_out: PackedLinear,
    norm1: Norm,
    up: PackedLinear,
    down: PackedLinear,
    norm2: Norm,
}

/// A forward-only copy of a [`BertModel`] with packed weights.
#[derive(Debug, Clone)]
pub struct Encoder {
    precision: Precision,
    dim: usize,
    heads: usize,
    inter: usize,
    eps: f32,
    vocab: usize,
    max_positions: usize,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    embed_norm: Norm,
    layers: Vec<Layer>,
}

/// A tensor's values as f32.
pub(crate) fn tensor_values<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Tensor(format!("{e:?}")))
}

/// A burn `Linear`'s weights packed at `precision`.
pub(crate) fn linear(l: &burn::nn::Linear, precision: Precision) -> Result<PackedLinear> {
    let [k, n] = l.weight.val().dims();
    let w = tensor_values(l.weight.val())?;
    let b = match &l.bias {
        Some(b) => Some(tensor_values(b.val())?),
        None => None,
    };
    PackedLinear::new(&w, b.as_deref(), k, n, precision).map_err(ModelError::Config)
}

/// Fetches parameters by name as `(shape, values)` (see [`Encoder::from_tensors`]).
type Fetch<'a> = dyn FnMut(&str) -> Result<(Vec<usize>, Vec<f32>)> + 'a;

fn bad_tensor(name: &str, message: String) -> ModelError {
    ModelError::Tensor(format!("{name}: {message}"))
}

/// A matrix: (rows, cols, values).
fn matrix(tensor: &mut Fetch<'_>, name: &str) -> Result<(usize, usize, Vec<f32>)> {
    let (shape, values) = tensor(name)?;
    match shape[..] {
        [r, c] if r.checked_mul(c) == Some(values.len()) => Ok((r, c, values)),
        [n] if n == values.len() => Ok((1, n, values)),
        _ => Err(bad_tensor(
            name,
            format!("shape {shape:?} is not a matrix or vector"),
        )),
    }
}

/// A vector of `len` values (stored `[len]`, `[1, len]` or `[len, 1]`).
fn vector(tensor: &mut Fetch<'_>, name: &str, len: usize) -> Result<Vec<f32>> {
    let (r, c, v) = matrix(tensor, name)?;
    if r * c != len || (r != 1 && c != 1) {
        return Err(bad_tensor(name, format!("[{r}, {c}] is not {len} values")));
    }
    Ok(v)
}

fn norm(tensor: &mut Fetch<'_>, prefix: &str, len: usize) -> Result<Norm> {
    Ok(Norm {
        gamma: vector(tensor, &format!("{prefix}.gamma"), len)?,
        beta: vector(tensor, &format!("{prefix}.beta"), len)?,
    })
}

/// (weight `[k, n]`, bias `[n]`, n) of the linear layer `prefix`; `n` = 0 takes any width.
fn linear_values(
    tensor: &mut Fetch<'_>,
    prefix: &str,
    k: usize,
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let wname = format!("{prefix}.weight");
    let (r, c, w) = matrix(tensor, &wname)?;
    if r != k || (n != 0 && c != n) {
        return Err(bad_tensor(
            &wname,
            format!("[{r}, {c}], expected [{k}, {n}]"),
        ));
    }
    let b = vector(tensor, &format!("{prefix}.bias"), c)?;
    Ok((w, b, c))
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Buffers reused across layers and, per thread, across calls.
#[derive(Default)]
struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
    pairs: Vec<u32>,
}

impl Encoder {
    /// Copies and packs `model`'s weights (pretrained or fine-tuned, as loaded): the burn
    /// module's parameters are handed to [`from_tensors`](Self::from_tensors) by their burn
    /// names, so both loaders share one packing.
    pub fn from_burn(model: &BertModel, eps: f64, precision: Precision) -> Result<Encoder> {
        let mut map: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        let mut put = |name: String, t: Tensor<2>| -> Result<()> {
            map.insert(name, (t.dims().to_vec(), tensor_values(t)?));
            Ok(())
        };
        let vec = |t: Option<Tensor<1>>, len: usize| -> Result<Tensor<2>> {
            Ok(match t {
                Some(t) => t.unsqueeze::<2>(),
                None => Tensor::zeros([1, len], &model.embeddings.word_embeddings.weight.device()),
            })
        };
        let emb = &model.embeddings;
        put(
            "embeddings.word_embeddings.weight".into(),
            emb.word_embeddings.weight.val(),
        )?;
        put(
            "embeddings.position_embeddings.weight".into(),
            emb.position_embeddings.weight.val(),
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            emb.token_type_embeddings.weight.val(),
        )?;
        let put_norm = |put: &mut dyn FnMut(String, Tensor<2>) -> Result<()>,
                        prefix: &str,
                        l: &burn::nn::LayerNorm|
         -> Result<()> {
            let len = l.gamma.val().dims()[0];
            put(format!("{prefix}.gamma"), l.gamma.val().unsqueeze::<2>())?;
            put(
                format!("{prefix}.beta"),
                vec(l.beta.as_ref().map(|b| b.val()), len)?,
            )
        };
        let put_linear = |put: &mut dyn FnMut(String, Tensor<2>) -> Result<()>,
                          prefix: &str,
                          l: &burn::nn::Linear|
         -> Result<()> {
            let n = l.weight.val().dims()[1];
            put(format!("{prefix}.weight"), l.weight.val())?;
            put(
                format!("{prefix}.bias"),
                vec(l.bias.as_ref().map(|b| b.val()), n)?,
            )
        };
        put_norm(&mut put, "embeddings.layer_norm", &emb.layer_norm)?;
        let mut heads = 1;
        for (i, layer) in model.encoder.layer.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            let att = &layer.attention.self_attn;
            heads = att.num_heads;
            put_linear(
                &mut put,
                &format!("{p}.attention.self_attn.query"),
                &att.query,
            )?;
            put_linear(&mut put, &format!("{p}.attention.self_attn.key"), &att.key)?;
            put_linear(
                &mut put,
                &format!("{p}.attention.self_attn.value"),
                &att.value,
            )?;
            put_linear(
                &mut put,
                &format!("{p}.attention.output.dense"),
                &layer.attention.output.dense,
            )?;
            put_norm(
                &mut put,
                &format!("{p}.attention.output.layer_norm"),
                &layer.attention.output.layer_norm,
            )?;
            put_linear(
                &mut put,
                &format!("{p}.intermediate.dense"),
                &layer.intermediate.dense,
            )?;
            put_linear(&mut put, &format!("{p}.output.dense"), &layer.output.dense)?;
            put_norm(
                &mut put,
                &format!("{p}.output.layer_norm"),
                &layer.output.layer_norm,
            )?;
        }
        let layers = model.encoder.layer.len();
        Encoder::from_tensors(layers, heads, eps, precision, &mut |name| {
            map.remove(name)
                .ok_or_else(|| ModelError::Tensor(format!("no parameter {name}")))
        })
    }

    /// Packs an encoder of `layers` layers and `heads` attention heads from its parameters,
    /// fetched by their burn names (`embeddings.word_embeddings.weight`,
    /// `encoder.layer.N.attention.self_attn.query.weight`, `...layer_norm.gamma`, ...) as
    /// `(shape, values)`: linear weights in burn's `[in, out]` layout, row-major; every
    /// parameter is asked for once. Shapes are checked, so a mis-mapped tensor is an error.
    pub fn from_tensors(
        layers: usize,
        heads: usize,
        eps: f64,
        precision: Precision,
        tensor: &mut Fetch<'_>,
    ) -> Result<Encoder> {
        let (vocab, dim, word) = matrix(tensor, "embeddings.word_embeddings.weight")?;
        let (max_positions, pd, position) =
            matrix(tensor, "embeddings.position_embeddings.weight")?;
        let (types, td, token_type) = matrix(tensor, "embeddings.token_type_embeddings.weight")?;
        if pd != dim || td != dim || types == 0 {
            return Err(ModelError::Tensor(format!(
                "embedding tables of widths {dim}, {pd} and {td} ({types} token types)"
            )));
        }
        let embed_norm = norm(tensor, "embeddings.layer_norm", dim)?;
        if heads == 0 || !dim.is_multiple_of(heads) {
            return Err(ModelError::Config(format!(
                "{heads} attention heads do not divide {dim}"
            )));
        }
        let mut inter = 0;
        let mut packed = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("encoder.layer.{i}");
            let mut linear = |name: &str, k: usize, n: usize| {
                linear_values(tensor, &format!("{p}.{name}"), k, n)
            };
            let (q, bq, _) = linear("attention.self_attn.query", dim, dim)?;
            let (k, bk, _) = linear("attention.self_attn.key", dim, dim)?;
            let (v, bv, _) = linear("attention.self_attn.value", dim, dim)?;
            let (wo, bo, _) = linear("attention.output.dense", dim, dim)?;
            let (wu, bu, n_inter) = linear("intermediate.dense", dim, 0)?;
            let (wd, bd, _) = linear("output.dense", n_inter, dim)?;
            // Query, key and value as one [dim, 3 dim] matrix.
            let mut w = Vec::with_capacity(3 * dim * dim);
            for row in 0..dim {
                for m in [&q, &k, &v] {
                    w.extend_from_slice(&m[row * dim..(row + 1) * dim]);
                }
            }
            let b: Vec<f32> = [bq, bk, bv].concat();
            let pack = |w: &[f32], b: &[f32], k: usize, n: usize| {
                PackedLinear::new(w, Some(b), k, n, precision).map_err(ModelError::Config)
            };
            inter = n_inter;
            packed.push(Layer {
                qkv: pack(&w, &b, dim, 3 * dim)?,
                attn_out: pack(&wo, &bo, dim, dim)?,
                norm1: norm(tensor, &format!("{p}.attention.output.layer_norm"), dim)?,
                up: pack(&wu, &bu, dim, n_inter)?,
                down: pack(&wd, &bd, n_inter, dim)?,
                norm2: norm(tensor, &format!("{p}.output.layer_norm"), dim)?,
            });
        }
        Ok(Encoder {
            precision,
            dim,
            heads,
            inter,
            eps: eps as f32,
            vocab,
            max_positions,
            word,
            position,
            token_type: token_type[..dim].to_vec(),
            embed_norm,
            layers: packed,
        })
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Contextual token vectors of every text (token ids incl. `[CLS]`/`[SEP]`), on up to
    /// `threads` threads.
    pub fn encode(&self, texts: &[&[u32]], threads: usize) -> Result<States> {
        Ok(self.encode_split(texts, threads, None)?.0)
    }

    /// [`encode`](Self::encode) that also returns the states after the first `split` layers
    /// (the training cache's "lower" states), when `split` is given (`0..=layers`; 0 = the
    /// embeddings' output).
    pub fn encode_split(
        &self,
        texts: &[&[u32]],
        threads: usize,
        split: Option<usize>,
    ) -> Result<(States, Option<States>)> {
        self.run(texts, threads, split, self.layers.len())
    }

    /// The states after the first `layers` layers only (0 = the embeddings' output); the layers
    /// above are not run.
    pub fn encode_upto(&self, texts: &[&[u32]], threads: usize, layers: usize) -> Result<States> {
        if layers > self.layers.len() {
            return Err(ModelError::Config(format!(
                "{layers} layers asked of a {}-layer encoder",
                self.layers.len()
            )));
        }
        Ok(self.run(texts, threads, None, layers)?.0)
    }

    /// Embeddings, then layers `0..last`, keeping a copy of the states after layer `split`.
    fn run(
        &self,
        texts: &[&[u32]],
        threads: usize,
        split: Option<usize>,
        last: usize,
    ) -> Result<(States, Option<States>)> {
        if let Some(k) = split
            && k > self.layers.len()
        {
            return Err(ModelError::Config(format!(
                "split {k} must be in 0..={}",
                self.layers.len()
            )));
        }
        let d = self.dim;
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0usize);
        for t in texts {
            if t.len() > self.max_positions {
                return Err(ModelError::Config(format!(
                    "a text of {} tokens exceeds the model's {} positions",
                    t.len(),
                    self.max_positions
                )));
            }
            offsets.push(offsets[offsets.len() - 1] + t.len());
        }
        let total = offsets[offsets.len() - 1];
        let mut h = vec![0f32; total * d];
        for (t, ids) in texts.iter().enumerate() {
            for (j, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= self.vocab {
                    return Err(ModelError::Config(format!(
                        "token id {id} is outside the vocabulary ({})",
                        self.vocab
                    )));
                }
                let row = &mut h[(offsets[t] + j) * d..(offsets[t] + j + 1) * d];
                row.copy_from_slice(&self.word[id * d..(id + 1) * d]);
                math::add_inplace(row, &self.position[j * d..(j + 1) * d]);
                math::add_inplace(row, &self.token_type);
            }
        }
        math::layer_norm_rows(
            &mut h,
            d,
            &self.embed_norm.gamma,
            &self.embed_norm.beta,
            self.eps,
        );
        let mut lower = (split == Some(0)).then(|| States {
            data: h.clone(),
            offsets: offsets.clone(),
            dim: d,
        });
        // Buffers live on as long as the thread, so a worker's batches reuse one set of pages
        // instead of faulting in fresh ones every batch.
        SCRATCH.with(|cell| {
            let mut shared = cell.try_borrow_mut();
            let mut fresh = Scratch::default(); // only if re-entered (empty Vecs, no allocation)
            let s = match shared.as_deref_mut() {
                Ok(s) => s,
                Err(_) => &mut fresh,
            };
            for (i, layer) in self.layers.iter().take(last).enumerate() {
                self.layer(layer, &mut h, &offsets, threads, s);
                if split == Some(i + 1) {
                    lower = Some(States {
                        data: h.clone(),
                        offsets: offsets.clone(),
                        dim: d,
                    });
                }
            }
        });
        Ok((
            States {
                data: h,
                offsets,
                dim: d,
            },
            lower,
        ))
    }

    fn layer(
        &self,
        layer: &Layer,
        h: &mut [f32],
        offsets: &[usize],
        threads: usize,
        s: &mut Scratch,
    ) {
        let d = self.dim;
        let t = h.len() / d;
        s.qkv.resize(t * 3 * d, 0.0);
        layer.qkv.forward(h, t, &mut s.qkv, threads, &mut s.pairs);
        s.ctx.resize(t * d, 0.0);
        self.attention(&s.qkv, offsets, &mut s.ctx, threads);
        s.tmp.resize(t * d, 0.0);
        layer
            .attn_out
            .forward(&s.ctx, t, &mut s.tmp, threads, &mut s.pairs);
        math::add_inplace(&mut s.tmp, h);
        math::layer_norm_rows(
            &mut s.tmp,
            d,
            &layer.norm1.gamma,
            &layer.norm1.beta,
            self.eps,
        );
        s.inter.resize(t * self.inter, 0.0);
        layer
            .up
            .forward(&s.tmp, t, &mut s.inter, threads, &mut s.pairs);
        math::gelu_inplace(&mut s.inter);
        layer.down.forward(&s.inter, t, h, threads, &mut s.pairs);
        math::add_inplace(h, &s.tmp);
        math::layer_norm_rows(h, d, &layer.norm2.gamma, &layer.norm2.beta, self.eps);
    }

    /// Scaled dot-product attention of every text and head; `qkv` rows are `[q | k | v]`.
    fn attention(&self, qkv: &[f32], offsets: &[usize], ctx: &mut [f32], threads: usize) {
        let d = self.dim;
        let heads = self.heads;
        let dh = d / heads;
        let scale = 1.0 / (dh as f32).sqrt();
        // Split ctx into each text's rows so texts can run in parallel.
        let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(offsets.len());
        let mut rest = ctx;
        for w in offsets.windows(2) {
            let (mine, tail) = rest.split_at_mut((w[1] - w[0]) * d);
            parts.push((w[0], mine));
            rest = tail;
        }
        let one = |(start, out): (usize, &mut [f32])| {
            let len = out.len() / d;
            if len == 0 {
                return;
            }
            let rows = &qkv[start * 3 * d..(start + len) * 3 * d];
            let mut scores = vec![0f32; len * len];
            for hd in 0..heads {
                // SAFETY: q, k and v of head `hd` are the `dh` columns at hd*dh, d + hd*dh and
                // 2d + hd*dh of the `len` rows (stride 3d) of `rows`; `scores` is [len, len];
                // the context goes to columns hd*dh.. of `out`'s `len` rows (stride d).
                unsafe {
                    let q = rows.as_ptr().add(hd * dh);
                    let k = rows.as_ptr().add(d + hd * dh);
                    let v = rows.as_ptr().add(2 * d + hd * dh);
                    // scores = scale * Q K^T
                    gemm::gemm(
                        len,
                        len,
                        dh,
                        scores.as_mut_ptr(),
                        1,
                        len as isize,
                        false,
                        q,
                        1,
                        (3 * d) as isize,
                        k,
                        (3 * d) as isize,
                        1,
                        0.0,
                        scale,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                    math::softmax_rows(&mut scores, len);
                    // context = softmax(scores) V
                    gemm::gemm(
                        len,
                        dh,
                        len,
                        out.as_mut_ptr().add(hd * dh),
                        1,
                        d as isize,
                        false,
                        scores.as_ptr(),
                        1,
                        len as isize,
                        v,
                        1,
                        (3 * d) as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            }
        };
        if threads > 1 && parts.len() > 1 {
            use rayon::prelude::*;
            parts.into_par_iter().for_each(one);
        } else {
            parts.into_iter().for_each(one);
        }
    }
}
