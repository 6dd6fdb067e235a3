//! A light loader for query embedding alone.
//!
//! A search needs one query vector: the transformer, mean pooling and the query projection.
//! [`Embedder::load`](crate::Embedder::load) builds the whole trainable model in burn first
//! (transformer and graph network, every parameter randomly initialised, then overwritten
//! through burn's safetensors store) and only then packs the CPU kernels from it; for a CLI
//! search that was most of its time (table below). [`QueryEmbedder`] packs the same kernels
//! ([`cpu::Encoder::from_tensors`], the query projection at f32) straight from the safetensors
//! bytes: no burn module, no graph network, no random initialisation.
//!
//! Where the tensors come from (the same files, and the same choice of file, as the full
//! loader, so the vectors are the same):
//! * the embedding tables from `model.safetensors` (Hugging Face names) or, when the trained
//!   weights replace every layer, `embeddings.safetensors` (int8 tables with `.scale`s);
//! * the top `tuned_layers` encoder layers from `transformer.safetensors` (burn names and
//!   layout), the layers below from `model.safetensors` (Hugging Face names, linear weights
//!   `[out, in]` transposed to burn's `[in, out]`);
//! * the query projection from `head.safetensors` (`query_proj`, or `out_proj` with
//!   `shared_projection`).
//!
//! It serves the packed kernels only: with [`Compute::Burn`], or without trained weights (an
//! untrained head is drawn at random by burn), [`QueryEmbedder::load`] returns `None` and the
//! caller loads the full [`Embedder`](crate::Embedder). `tests/query.rs` holds its vectors
//! equal to the full embedder's and its identity to [`crate::weights::identity_of`]'s.
//!
//! Measured: `gnn-coder search "parse a config file" --index /work/eval/dev/index-bundle -k 3`
//! (the built-in model, int8 kernels), dev profile (every crate at opt-level 3), a 2-core Intel
//! Xeon shared with another build, `/usr/bin/time`, median of 5 runs (wall / max RSS):
//!
//! | search            | full model loaded | this loader      |
//! |-------------------|-------------------|------------------|
//! | hybrid (default)  | 0.78 s / 305 MB   | 0.20 s / 164 MB  |
//! | `--mode lexical`  | 0.01 s / 27 MB    | 0.01 s / 27 MB   |
//!
//! (The first runs of the old binary varied 0.64-0.87 s with the machine's load.) What is left
//! is mostly packing the layers at int8 and widening the 30k-row int8 word table to f32.

use std::collections::HashMap;
use std::path::Path;

use crate::bert::BertConfig;
use crate::cpu::{self, PackedLinear, Precision};
use crate::embedder::{
    Compute, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, TOKENIZER_FILE, query_vectors,
};
use crate::error::{ModelError, Result};
use crate::files::{EMBEDDINGS_FILE, ModelFiles};
use crate::model::{
    HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, META_TRAINED, TRANSFORMER_WEIGHTS_FILE,
    read_head_config_from,
};
use crate::quant::{RawFile, SCALE_SUFFIX};
use crate::tokenize::TextTokenizer;
use crate::weights::{ModelIdentity, head_sha256, name_weights};

/// Texts per transformer batch (as [`crate::EmbedderOptions`]' default).
const BATCH_SIZE: usize = 32;

/// The transformer and the query projection on the packed CPU kernels: query vectors only.
#[derive(Debug)]
pub struct QueryEmbedder {
    tokenizer: TextTokenizer,
    encoder: cpu::Encoder,
    query_proj: PackedLinear,
    identity: ModelIdentity,
}

/// A tensor as `(shape, f32 values)`.
pub(crate) type Values = (Vec<usize>, Vec<f32>);

impl QueryEmbedder {
    /// Loads the query side of `model` (the pretrained transformer's files) with the trained
    /// `weights`, texts cut to `max_tokens` (capped by the model's positions). `None` when it
    /// cannot serve this configuration (no trained weights, or [`Compute::Burn`]): use the full
    /// [`Embedder`](crate::Embedder) then.
    pub fn load(
        model: &ModelFiles,
        weights: Option<&ModelFiles>,
        compute: Compute,
        max_tokens: usize,
    ) -> Result<Option<QueryEmbedder>> {
        let (Some(weights), Some(precision)) = (weights, compute.precision()) else {
            return Ok(None);
        };
        let bert = BertConfig::from_bytes(
            &model.read(MODEL_CONFIG_FILE)?,
            &model.path(MODEL_CONFIG_FILE),
        )?;
        bert.validate()?;
        let tokenizer = TextTokenizer::from_bytes(
            &model.read(TOKENIZER_FILE)?,
            &model.path(TOKENIZER_FILE),
            max_tokens.min(bert.max_position_embeddings),
        )?;
        if !weights.has(HEAD_CONFIG_FILE) {
            return Err(ModelError::MissingModelFile {
                path: weights.path(HEAD_CONFIG_FILE),
            });
        }
        let head_config = read_head_config_from(weights)?;
        let layers = bert.num_hidden_layers;
        let tuned = head_config.tuned_layers;
        if tuned > layers {
            return Err(ModelError::Config(format!(
                "tuned_layers {tuned} > transformer layers {layers}"
            )));
        }
        if head_config.graph.d_model != bert.hidden_size {
            return Err(ModelError::Config(format!(
                "head d_model {} != transformer hidden_size {}",
                head_config.graph.d_model, bert.hidden_size
            )));
        }
        let first_tuned = layers - tuned;
        let mut tensors: HashMap<String, Values> = HashMap::new();

        // The pretrained part: the embeddings and the layers below the tuned ones, from the
        // whole model when it is there (as the full loader prefers), else the embeddings alone.
        let name = if model.has(MODEL_WEIGHTS_FILE) {
            MODEL_WEIGHTS_FILE
        } else if tuned == layers && model.has(EMBEDDINGS_FILE) {
            EMBEDDINGS_FILE
        } else {
            return Err(ModelError::MissingModelFile {
                path: model.path(MODEL_WEIGHTS_FILE),
            });
        };
        let path = model.path(name);
        let raw = RawFile::parse(&model.read(name)?, &path)?;
        let wanted = |burn: &str| match layer_of(burn) {
            Some(i) => i < first_tuned,
            None => burn.starts_with("embeddings."),
        };
        add_tensors(&mut tensors, raw, &path, |n| {
            hf_to_burn(n).filter(|(b, _)| wanted(b))
        })?;

        // The fine-tuned layers (burn names; the file may hold more layers than are tuned).
        if tuned > 0 {
            let path = weights.path(TRANSFORMER_WEIGHTS_FILE);
            let raw = RawFile::parse(&read_weights(weights, TRANSFORMER_WEIGHTS_FILE)?, &path)?;
            add_tensors(&mut tensors, raw, &path, |n| {
                layer_of(n)
                    .filter(|&i| i >= first_tuned && i < layers)
                    .map(|_| (n.to_string(), false))
            })?;
        }

        let encoder = cpu::Encoder::from_tensors(
            layers,
            bert.num_attention_heads,
            bert.layer_norm_eps,
            precision,
            &mut |name| {
                tensors.remove(name).ok_or_else(|| ModelError::Weights {
                    path: match layer_of(name) {
                        Some(i) if i >= first_tuned => weights.path(TRANSFORMER_WEIGHTS_FILE),
                        _ => path.clone(),
                    },
                    message: format!("missing tensor {name}"),
                })
            },
        )?;

        // The query projection, and whether the head is marked trained.
        let head_path = weights.path(HEAD_WEIGHTS_FILE);
        let head_bytes = read_weights(weights, HEAD_WEIGHTS_FILE)?;
        let raw = RawFile::parse(&head_bytes, &head_path)?;
        let trained = raw.metadata.get(META_TRAINED).is_some_and(|v| v == "true");
        let proj = if head_config.shared_projection {
            "out_proj"
        } else {
            "query_proj"
        };
        let mut head = HashMap::new();
        add_tensors(&mut head, raw, &head_path, |n| {
            n.strip_prefix(proj)
                .filter(|rest| *rest == ".weight" || *rest == ".bias")
                .map(|_| (n.to_string(), false))
        })?;
        let mut take = |name: String| {
            head.remove(&name).ok_or_else(|| ModelError::Weights {
                path: head_path.clone(),
                message: format!("missing tensor {name}"),
            })
        };
        let (wshape, w) = take(format!("{proj}.weight"))?;
        let (bshape, b) = take(format!("{proj}.bias"))?;
        let (k, n) = match wshape[..] {
            [k, n] if k == bert.hidden_size && bshape.iter().product::<usize>() == n => (k, n),
            _ => {
                return Err(ModelError::Weights {
                    path: head_path,
                    message: format!(
                        "{proj} has weight {wshape:?} and bias {bshape:?}, expected [{}, n] and [n]",
                        bert.hidden_size
                    ),
                });
            }
        };
        // f32 as the full embedder's projection: it is one small product per query.
        let query_proj =
            PackedLinear::new(&w, Some(&b), k, n, Precision::F32).map_err(ModelError::Config)?;
        let sum = match trained {
            true => Some(head_sha256(weights, Some(&head_bytes))?),
            false => None,
        };
        Ok(Some(QueryEmbedder {
            tokenizer,
            encoder,
            identity: name_weights(sum.as_deref(), n),
            query_proj,
        }))
    }

    /// The name an index records for these weights (as [`crate::weights::identity_of`] gives the
    /// full embedder loaded from the same files).
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// Output vector size.
    pub fn dim(&self) -> usize {
        self.query_proj.out_dim()
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_len()
    }

    /// What runs the transformer: `"int8"`, `"bf16"` or `"f32"` kernels.
    pub fn compute_name(&self) -> &'static str {
        self.encoder.precision().as_str()
    }

    /// Query vectors (transformer mean pool -> query projection -> L2 norm), on every core: the
    /// vectors [`Embedder::embed_queries`](crate::Embedder::embed_queries) gives.
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encs = queries
            .iter()
            .map(|q| self.tokenizer.encode(q))
            .collect::<Result<Vec<_>>>()?;
        query_vectors(&self.encoder, &self.query_proj, BATCH_SIZE, &encs)
    }
}

/// A weights file's bytes (a missing file is named).
pub(crate) fn read_weights(
    files: &ModelFiles,
    name: &str,
) -> Result<std::borrow::Cow<'static, [u8]>> {
    if !files.has(name) {
        return Err(ModelError::MissingModelFile {
            path: files.path(name),
        });
    }
    files.read(name)
}

/// The encoder layer a burn (or Hugging Face) parameter name belongs to.
pub(crate) fn layer_of(name: &str) -> Option<usize> {
    let rest = name
        .strip_prefix("bert.")
        .unwrap_or(name)
        .strip_prefix("encoder.layer.")?;
    rest.split('.').next()?.parse().ok()
}

/// The burn name of a Hugging Face BERT parameter, and whether its values are transposed (a
/// linear layer's `[out, in]` weight); `None` for tensors the encoder does not use (the
/// pooler, `position_ids`). The renames of [`crate::bert::load_bert_bytes`] and burn's
/// `PyTorchToBurnAdapter`.
pub(crate) fn hf_to_burn(name: &str) -> Option<(String, bool)> {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    if !(name.starts_with("embeddings.") || name.starts_with("encoder.layer."))
        || name.ends_with("position_ids")
    {
        return None;
    }
    let mut burn = name
        .replace(".LayerNorm.", ".layer_norm.")
        .replace(".attention.self.", ".attention.self_attn.");
    if burn.contains(".layer_norm.") {
        if let Some(base) = burn.strip_suffix(".weight") {
            burn = format!("{base}.gamma");
        } else if let Some(base) = burn.strip_suffix(".bias") {
            burn = format!("{base}.beta");
        }
        return Some((burn, false));
    }
    let transpose = burn.starts_with("encoder.") && burn.ends_with(".weight");
    Some((burn, transpose))
}

/// Adds the tensors of `raw` that `map` names (`Some((burn name, transpose))`) to `out` as f32,
/// int8 tensors dequantized with their scales as [`RawFile::dequantize`] does (the same
/// values), but only the chosen tensors, and without its round trip through f32 bytes.
pub(crate) fn add_tensors(
    out: &mut HashMap<String, Values>,
    raw: RawFile,
    path: &Path,
    map: impl Fn(&str) -> Option<(String, bool)>,
) -> Result<()> {
    let tensors = raw.tensors;
    if let Some(stray) = tensors.keys().find(|k| {
        k.strip_suffix(SCALE_SUFFIX)
            .is_some_and(|base| tensors.get(base).is_none_or(|t| t.dtype != "I8"))
    }) {
        return Err(ModelError::Weights {
            path: path.to_path_buf(),
            message: format!("tensor {stray:?} is a scale without its int8 tensor"),
        });
    }
    for (key, t) in &tensors {
        if key.ends_with(SCALE_SUFFIX) {
            continue;
        }
        let Some((burn, transpose)) = map(key) else {
            continue;
        };
        let values = if t.dtype == "I8" {
            let scale_name = format!("{key}{SCALE_SUFFIX}");
            let scale = tensors
                .get(&scale_name)
                .ok_or_else(|| ModelError::Weights {
                    path: path.to_path_buf(),
                    message: format!("int8 tensor {key:?} has no {scale_name:?}"),
                })?;
            t.dequantized(key, scale, path)?
        } else {
            t.to_f32().ok_or_else(|| ModelError::Weights {
                path: path.to_path_buf(),
                message: format!("tensor {key:?} is {}, not floating point", t.dtype),
            })?
        };
        let (shape, values) = match (transpose, &t.shape[..]) {
            (true, &[rows, cols]) => {
                let mut tr = vec![0f32; values.len()];
                for (r, row) in values.chunks_exact(cols.max(1)).enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        tr[c * rows + r] = v;
                    }
                }
                (vec![cols, rows], tr)
            }
            (true, shape) => {
                return Err(ModelError::Weights {
                    path: path.to_path_buf(),
                    message: format!("linear weight {key:?} has shape {shape:?}, not a matrix"),
                });
            }
            (false, _) => (t.shape.clone(), values),
        };
        if shape.iter().product::<usize>() != values.len() {
            return Err(ModelError::Weights {
                path: path.to_path_buf(),
                message: format!("tensor {key:?} has {} values for {shape:?}", values.len()),
            });
        }
        out.insert(burn, (shape, values));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hugging_face_names_map_to_burn_names() {
        assert_eq!(
            hf_to_burn("encoder.layer.3.attention.self.query.weight"),
            Some((
                "encoder.layer.3.attention.self_attn.query.weight".into(),
                true
            ))
        );
        assert_eq!(
            hf_to_burn("bert.encoder.layer.0.output.LayerNorm.weight"),
            Some(("encoder.layer.0.output.layer_norm.gamma".into(), false))
        );
        assert_eq!(
            hf_to_burn("embeddings.LayerNorm.bias"),
            Some(("embeddings.layer_norm.beta".into(), false))
        );
        assert_eq!(
            hf_to_burn("embeddings.word_embeddings.weight"),
            Some(("embeddings.word_embeddings.weight".into(), false))
        );
        assert_eq!(hf_to_burn("embeddings.position_ids"), None);
        assert_eq!(hf_to_burn("pooler.dense.weight"), None);
        assert_eq!(layer_of("encoder.layer.12.output.dense.bias"), Some(12));
        assert_eq!(layer_of("embeddings.layer_norm.beta"), None);
    }
}
