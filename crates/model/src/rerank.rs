//! The cross-encoder reranker: a question and one candidate's code read *together* by a
//! six-layer MiniLM, so every word of the question attends to every token of the code (the
//! bi-encoder compares two vectors made apart). It is far costlier per candidate than a vector
//! product, so search runs it only over the first stage's top few dozen.
//!
//! # Design
//!
//! * **Input**: `[CLS] question [SEP] code [SEP]`, the question cut to `query_tokens` word
//!   pieces (32), the whole to `max_tokens` (192), token type 0 throughout (so the same
//!   [`cpu::Encoder`] that embeds queries runs it unchanged; the segment is told apart by the
//!   `[SEP]`, as RoBERTa-style models do).
//! * **Score**: the mean of the last layer's token vectors, one linear map to a scalar (a
//!   logit: higher is likelier the answer; only the order within one question means anything).
//! * **Weights** (`weights/gnn-coder-rerank`, [`RERANK_CONFIG_FILE`] + `transformer.safetensors`
//!   with all six layers in burn names, int8 like the bi-encoder's + `head.safetensors` with
//!   `score.weight`/`score.bias`): trained by `training/rerank/train.py` from GNN-Coder's own
//!   fine-tuned layers on questions mined from the training packages, with the first stage's
//!   own hard negatives. The embedding tables and the tokenizer are the transformer's
//!   (`ModelFiles` of the bi-encoder), frozen in training, so they are not stored twice; the
//!   reranker is built into the binary beside the bi-encoder ([`ModelFiles::BundledRerank`]).
//! * Candidates run in ragged batches (no padding) on every core, at the bi-encoder's
//!   [`Compute`] precision (int8 on AVX-512 VNNI; f32 for `burn`, which has no separate path
//!   here).

use std::collections::HashMap;

use serde::Deserialize;

use crate::bert::BertConfig;
use crate::cpu::{self, Precision};
use crate::embedder::{
    Compute, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, TOKENIZER_FILE, all_threads,
};
use crate::error::{ModelError, Result};
use crate::files::{EMBEDDINGS_FILE, ModelFiles};
use crate::model::{HEAD_WEIGHTS_FILE, TRANSFORMER_WEIGHTS_FILE};
use crate::quant::RawFile;
use crate::query::{Values, add_tensors, hf_to_burn, layer_of, read_weights};
use crate::tokenize::TextTokenizer;

/// The reranker's configuration file.
pub const RERANK_CONFIG_FILE: &str = "rerank.json";

const CLS: u32 = 101;
const SEP: u32 = 102;
/// Candidates per transformer batch.
const BATCH: usize = 16;

/// `rerank.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RerankConfig {
    /// Word pieces of the whole input, `[CLS]` and both `[SEP]` included.
    pub max_tokens: usize,
    /// Word pieces of the question at most.
    pub query_tokens: usize,
    /// Only `"mean"`.
    pub pooling: String,
    /// Encoder layers in `transformer.safetensors`.
    pub layers: usize,
}

/// A loaded cross-encoder.
#[derive(Debug)]
pub struct CrossEncoder {
    config: RerankConfig,
    tokenizer: TextTokenizer,
    encoder: cpu::Encoder,
    weight: Vec<f32>,
    bias: f32,
}

impl CrossEncoder {
    /// Loads the reranker in `rerank` over the embedding tables, configuration and tokenizer
    /// of the transformer `model`.
    pub fn load(model: &ModelFiles, rerank: &ModelFiles, compute: Compute) -> Result<CrossEncoder> {
        let config: RerankConfig =
            serde_json::from_slice(&read_weights(rerank, RERANK_CONFIG_FILE)?).map_err(|e| {
                ModelError::Weights {
                    path: rerank.path(RERANK_CONFIG_FILE),
                    message: e.to_string(),
                }
            })?;
        if config.pooling != "mean" {
            return Err(ModelError::Config(format!(
                "{}: pooling {:?} (only \"mean\")",
                rerank.path(RERANK_CONFIG_FILE).display(),
                config.pooling
            )));
        }
        let bert = BertConfig::from_bytes(
            &model.read(MODEL_CONFIG_FILE)?,
            &model.path(MODEL_CONFIG_FILE),
        )?;
        bert.validate()?;
        if config.layers == 0 || config.layers > bert.num_hidden_layers {
            return Err(ModelError::Config(format!(
                "the reranker has {} layers, the transformer {}",
                config.layers, bert.num_hidden_layers
            )));
        }
        if config.query_tokens == 0
            || config.max_tokens < config.query_tokens + 4
            || config.max_tokens > bert.max_position_embeddings
        {
            return Err(ModelError::Config(format!(
                "reranker lengths: {} tokens with {} for the question (at most {} positions)",
                config.max_tokens, config.query_tokens, bert.max_position_embeddings
            )));
        }
        let tokenizer = TextTokenizer::from_bytes(
            &model.read(TOKENIZER_FILE)?,
            &model.path(TOKENIZER_FILE),
            config.max_tokens,
        )?;

        let mut tensors: HashMap<String, Values> = HashMap::new();
        let name = if model.has(EMBEDDINGS_FILE) {
            EMBEDDINGS_FILE
        } else {
            MODEL_WEIGHTS_FILE
        };
        let path = model.path(name);
        let raw = RawFile::parse(&read_weights(model, name)?, &path)?;
        add_tensors(&mut tensors, raw, &path, |n| {
            hf_to_burn(n).filter(|(b, _)| b.starts_with("embeddings."))
        })?;
        let layers_path = rerank.path(TRANSFORMER_WEIGHTS_FILE);
        let raw = RawFile::parse(
            &read_weights(rerank, TRANSFORMER_WEIGHTS_FILE)?,
            &layers_path,
        )?;
        add_tensors(&mut tensors, raw, &layers_path, |n| {
            layer_of(n)
                .filter(|&i| i < config.layers)
                .map(|_| (n.to_string(), false))
        })?;
        let precision = compute.precision().unwrap_or(Precision::F32);
        let encoder = cpu::Encoder::from_tensors(
            config.layers,
            bert.num_attention_heads,
            bert.layer_norm_eps,
            precision,
            &mut |name| {
                tensors.remove(name).ok_or_else(|| ModelError::Weights {
                    path: match layer_of(name) {
                        Some(_) => layers_path.clone(),
                        None => path.clone(),
                    },
                    message: format!("missing tensor {name}"),
                })
            },
        )?;

        let head_path = rerank.path(HEAD_WEIGHTS_FILE);
        let raw = RawFile::parse(&read_weights(rerank, HEAD_WEIGHTS_FILE)?, &head_path)?;
        let mut head = HashMap::new();
        add_tensors(&mut head, raw, &head_path, |n| {
            n.starts_with("score.").then(|| (n.to_string(), false))
        })?;
        let dim = encoder.dim();
        let weight = match head.remove("score.weight") {
            Some((_, w)) if w.len() == dim => w,
            other => {
                return Err(ModelError::Weights {
                    path: head_path,
                    message: format!(
                        "score.weight has {} values, expected {dim}",
                        other.map_or(0, |(_, w)| w.len())
                    ),
                });
            }
        };
        let bias = match head.remove("score.bias") {
            Some((_, b)) if b.len() == 1 => b[0],
            _ => {
                return Err(ModelError::Weights {
                    path: head_path,
                    message: "score.bias must hold one value".into(),
                });
            }
        };
        Ok(CrossEncoder {
            config,
            tokenizer,
            encoder,
            weight,
            bias,
        })
    }

    pub fn config(&self) -> &RerankConfig {
        &self.config
    }

    pub fn precision(&self) -> Precision {
        self.encoder.precision()
    }

    /// The input ids of one (question, code) pair: `[CLS] question [SEP] code [SEP]`.
    pub fn pair_ids(&self, query: &str, code: &str) -> Result<Vec<u32>> {
        let q = self.tokenizer.encode(query)?;
        let c = self.tokenizer.encode(code)?;
        let inner = |e: &crate::Encoded| -> Vec<u32> {
            e.ids
                .iter()
                .zip(&e.special)
                .filter(|(_, s)| !**s)
                .map(|(i, _)| *i)
                .collect()
        };
        let mut q = inner(&q);
        q.truncate(self.config.query_tokens);
        let mut c = inner(&c);
        c.truncate(self.config.max_tokens - q.len() - 3);
        let mut ids = Vec::with_capacity(q.len() + c.len() + 3);
        ids.push(CLS);
        ids.extend(q);
        ids.push(SEP);
        ids.extend(c);
        ids.push(SEP);
        Ok(ids)
    }

    /// One score per code, in order (higher: likelier what `query` asks for). `keep_going` is
    /// asked between batches; `false` stops with [`ModelError::Stopped`].
    pub fn score(
        &self,
        query: &str,
        codes: &[&str],
        keep_going: &dyn Fn() -> bool,
    ) -> Result<Vec<f32>> {
        let ids = codes
            .iter()
            .map(|c| self.pair_ids(query, c))
            .collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let threads = all_threads();
        let mut out = vec![0f32; ids.len()];
        for chunk in order.chunks(BATCH) {
            if !keep_going() {
                return Err(ModelError::Stopped);
            }
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| ids[i].as_slice()).collect();
            let pooled = self.encoder.encode(&batch, threads)?.mean_pool();
            for (&i, row) in chunk.iter().zip(pooled.chunks_exact(self.weight.len())) {
                out[i] = self.bias
                    + row
                        .iter()
                        .zip(&self.weight)
                        .map(|(a, b)| a * b)
                        .sum::<f32>();
            }
        }
        Ok(out)
    }
}
