//! A BERT encoder (the architecture of all-MiniLM-L6-v2) written with burn modules, and the
//! loader that applies the Hugging Face `model.safetensors` weights to it.
//!
//! Field names follow the Hugging Face checkpoint (`embeddings.word_embeddings.weight`,
//! `encoder.layer.3.attention.self.query.weight`, ...), except two Rust-unfriendly names that the
//! loader remaps: `LayerNorm` -> `layer_norm` and `attention.self` -> `attention.self_attn`.
//! Linear weights are transposed and LayerNorm `weight`/`bias` renamed to `gamma`/`beta` by
//! burn-store's `PyTorchToBurnAdapter`.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::activation::gelu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// The Hugging Face `config.json` fields we use (names as in that file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_maxpos")]
    pub max_position_embeddings: usize,
    #[serde(default = "d_types")]
    pub type_vocab_size: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_act")]
    pub hidden_act: String,
}

fn d_vocab() -> usize {
    30522
}
fn d_hidden() -> usize {
    384
}
fn d_layers() -> usize {
    6
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    1536
}
fn d_maxpos() -> usize {
    512
}
fn d_types() -> usize {
    2
}
fn d_eps() -> f64 {
    1e-12
}
fn d_act() -> String {
    "gelu".to_string()
}

impl Default for BertConfig {
    /// all-MiniLM-L6-v2.
    fn default() -> Self {
        Self {
            vocab_size: d_vocab(),
            hidden_size: d_hidden(),
            num_hidden_layers: d_layers(),
            num_attention_heads: d_heads(),
            intermediate_size: d_inter(),
            max_position_embeddings: d_maxpos(),
            type_vocab_size: d_types(),
            layer_norm_eps: d_eps(),
            hidden_act: d_act(),
        }
    }
}

impl BertConfig {
    /// Read a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path)
    }

    /// [`from_file`](Self::from_file) of bytes in memory; `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let cfg: BertConfig = serde_json::from_slice(bytes).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Err(ModelError::Config(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.hidden_act != "gelu" {
            return Err(ModelError::Config(format!(
                "hidden_act {:?} is not supported (only exact \"gelu\")",
                self.hidden_act
            )));
        }
        Ok(())
    }

    /// Number of weight tensors of the encoder (embeddings + layers; no pooler): 101 for MiniLM-L6.
    pub fn num_weight_tensors(&self) -> usize {
        5 + 16 * self.num_hidden_layers
    }

    /// A randomly initialized encoder of this shape.
    pub fn init(&self, device: &Device) -> BertModel {
        let ln = || {
            LayerNormConfig::new(self.hidden_size)
                .with_epsilon(self.layer_norm_eps)
                .init(device)
        };
        let lin = |i, o| LinearConfig::new(i, o).init(device);
        let h = self.hidden_size;
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, h).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, h)
                    .init(device),
                token_type_embeddings: EmbeddingConfig::new(self.type_vocab_size, h).init(device),
                layer_norm: ln(),
            },
            encoder: BertEncoder {
                layer: (0..self.num_hidden_layers)
                    .map(|_| BertLayer {
                        attention: BertAttention {
                            self_attn: BertSelfAttention {
                                query: lin(h, h),
                                key: lin(h, h),
                                value: lin(h, h),
                                num_heads: self.num_attention_heads,
                            },
                            output: BertSelfOutput {
                                dense: lin(h, h),
                                layer_norm: ln(),
                            },
                        },
                        intermediate: BertIntermediate {
                            dense: lin(h, self.intermediate_size),
                        },
                        output: BertOutput {
                            dense: lin(self.intermediate_size, h),
                            layer_norm: ln(),
                        },
                    })
                    .collect(),
            },
            hidden_size: h,
            max_positions: self.max_position_embeddings,
            layer_norm_eps: self.layer_norm_eps,
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, len] = ids.dims();
        let device = ids.device();
        let words = self.word_embeddings.forward(ids);
        let positions = Tensor::<1, Int>::arange(0..len as i64, &device).reshape([1, len]);
        let positions = self.position_embeddings.forward(positions);
        // Token type ids are all 0 (single segment).
        let hidden = self.token_type_embeddings.weight.val().dims()[1];
        let types = self
            .token_type_embeddings
            .weight
            .val()
            .slice([0..1, 0..hidden])
            .reshape([1, 1, hidden]);
        self.layer_norm.forward(words + positions + types)
    }
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub num_heads: usize,
}

impl BertSelfAttention {
    /// `x`: [B, L, D]; `mask_bias`: [B, 1, L, L], 0 for tokens, a large negative for padding
    /// keys. Uses burn's fused scaled-dot-product attention (flex has a parallel CPU kernel;
    /// under autodiff burn decomposes it into differentiable ops).
    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let h = self.num_heads;
        let dh = d / h;
        let split = |t: Tensor<3>| t.reshape([b, l, h, dh]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let ctx = attention(
            q,
            k,
            v,
            None,
            Some(mask_bias),
            AttentionModuleOptions::default(),
        );
        ctx.swap_dims(1, 2).reshape([b, l, d])
    }
}

#[derive(Module, Debug)]
pub struct BertSelfOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attn: BertSelfAttention,
    pub output: BertSelfOutput,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
}

#[derive(Module, Debug)]
pub struct BertOutput {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertOutput,
}

impl BertLayer {
    fn forward(&self, x: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let att = self.attention.self_attn.forward(x.clone(), mask_bias);
        let att = self
            .attention
            .output
            .layer_norm
            .forward(self.attention.output.dense.forward(att) + x);
        let inter = gelu(self.intermediate.dense.forward(att.clone()));
        self.output
            .layer_norm
            .forward(self.output.dense.forward(inter) + att)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// The BERT encoder without pooler.
#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub hidden_size: usize,
    pub max_positions: usize,
    /// The layer norms' epsilon (from the config; the forward-only kernels need it too).
    pub layer_norm_eps: f64,
}

/// Additive attention bias for padding positions (HF uses the dtype minimum; any value that
/// underflows `exp` to 0 gives the same softmax).
const MASK_NEG: f32 = -1.0e9;

impl BertModel {
    /// Contextual token vectors. `ids`: [B, L] token ids; `mask`: [B, L] with 1.0 for real tokens
    /// and 0.0 for padding. Returns [B, L, hidden].
    pub fn forward(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<3> {
        let bias = Self::attention_bias(mask);
        let x = self.embed(ids);
        self.forward_layers(x, bias, 0..self.encoder.layer.len())
    }

    /// The embedding layer's output (word + position + type embeddings, layer norm): [B, L, D].
    pub fn embed(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.embeddings.forward(ids)
    }

    /// The additive attention bias of a padding mask ([B, L], 1.0 = real token): [B, 1, L, L].
    pub fn attention_bias(mask: Tensor<2>) -> Tensor<4> {
        let [b, l] = mask.dims();
        // Built once per batch as [B, 1, L, L] (the kernel broadcasts over heads for free, but
        // would materialize [B, H, L, L] for a broadcast query dimension).
        (mask.neg() + 1.0)
            .mul_scalar(MASK_NEG)
            .reshape([b, 1, 1, l])
            .expand([b, 1, l, l])
            .add_scalar(0.0)
    }

    /// Run encoder layers `layers` (e.g. `4..6`, the top two of six) on hidden states `x`
    /// ([B, L, D], the output of layer `layers.start - 1` or of [`embed`](Self::embed)).
    /// Training caches the output of a lower layer and runs only the top ones.
    pub fn forward_layers(
        &self,
        mut x: Tensor<3>,
        bias: Tensor<4>,
        layers: std::ops::Range<usize>,
    ) -> Tensor<3> {
        let end = layers.end.min(self.encoder.layer.len());
        for layer in &self.encoder.layer[layers.start.min(end)..end] {
            x = layer.forward(x, bias.clone());
        }
        x
    }

    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }

    /// Masked mean over the sequence (sentence-transformers' pooling): [B, L, D] -> [B, D].
    pub fn mean_pool(hidden: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        let [b, l, d] = hidden.dims();
        let m = mask.reshape([b, l, 1]);
        let summed = (hidden * m.clone()).sum_dim(1).reshape([b, d]);
        let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
        summed / count
    }
}

/// What loading the pretrained weights did (all counts are tensors, not elements).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub path: PathBuf,
    pub applied: usize,
    pub missing: Vec<String>,
    /// Tensors in the file that the encoder does not use (`pooler.*`, `embeddings.position_ids`).
    pub unused: Vec<String>,
}

/// Apply a Hugging Face BERT `model.safetensors` to `model`; fails unless every encoder tensor
/// was applied.
pub fn load_bert_weights(model: &mut BertModel, path: &Path) -> Result<LoadReport> {
    if !path.is_file() {
        return Err(ModelError::MissingModelFile {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bert_bytes(model, &bytes, path, false)
}

/// [`load_bert_weights`] of a file in memory (`path` names it in errors), which may hold int8
/// tensors with their scales (see [`crate::quant`]). With `embeddings_only`, the file holds the
/// embedding tables alone (`files::EMBEDDINGS_FILE`) and the encoder layers are left for
/// fine-tuned weights to fill: every embedding tensor must be applied, and no layer may be.
pub fn load_bert_bytes(
    model: &mut BertModel,
    bytes: &[u8],
    path: &Path,
    embeddings_only: bool,
) -> Result<LoadReport> {
    let raw = crate::quant::RawFile::parse(bytes, path)?;
    // `position_ids` (an integer buffer the encoder does not use) is dropped before the int8
    // tensors are widened, which accepts floats only.
    let mut raw = raw;
    let mut unused: Vec<String> = raw
        .tensors
        .keys()
        .filter(|k| k.ends_with("position_ids"))
        .cloned()
        .collect();
    for k in &unused {
        raw.tensors.remove(k);
    }
    let raw = raw.dequantize(path)?;
    let mut store = SafetensorsStore::from_bytes(Some(raw.to_bytes()))
        .with_from_adapter(PyTorchToBurnAdapter)
        // Checkpoints saved from `BertForX` carry a `bert.` prefix.
        .with_key_remapping(r"^bert\.", "")
        .with_key_remapping(r"\.LayerNorm\.", ".layer_norm.")
        .with_key_remapping(r"\.attention\.self\.", ".attention.self_attn.")
        .allow_partial(true);
    if embeddings_only {
        store = store.with_regex(r"^embeddings\.");
    }
    let result = model
        .load_from(&mut store)
        .map_err(|e| ModelError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let missing: Vec<String> = result
        .missing
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !embeddings_only || p.starts_with("embeddings."))
        .collect();
    let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    if !missing.is_empty() || !errors.is_empty() {
        return Err(ModelError::IncompleteWeights {
            path: path.to_path_buf(),
            applied: result.applied.len(),
            missing,
            errors,
        });
    }
    unused.extend(result.unused.iter().cloned());
    Ok(LoadReport {
        path: path.to_path_buf(),
        applied: result.applied.len(),
        missing,
        unused,
    })
}
