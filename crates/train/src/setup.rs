//! What training and evaluation share: the pretrained model with (optional) trained weights,
//! and the transformer-state caches built with it.
//!
//! # Design
//!
//! [`load_model`] reads the base model (config, tokenizer, transformer weights) from a model
//! directory onto a burn device, then either applies saved weights (whose `head.json` decides
//! the head) or builds a new head. It keeps two transformers: the model's own, which training
//! changes, and [`Loaded::base`], the pretrained one caches are built with. A cache is
//! fingerprinted by the texts, the split layer and [`Loaded::tag`] (the base model), so a cache
//! directory shared by several runs is rebuilt only when its inputs change.
//!
//! [`CacheBuilder`] builds (or reloads) those caches, reporting [`Progress::Caching`] and
//! [`Progress::Cached`]; [`CacheBuilder::pairs`] makes the aligned query and code caches of a
//! set of [`Example`]s under `DIR/{name}-queries` and `DIR/{name}-codes`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::Device;
use gnn_coder_model::{
    BertConfig, BertModel, GnnCoderModel, HeadConfig, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE,
    TOKENIZER_FILE, TextTokenizer, load_bert_weights, read_head_config,
};

use crate::cache::{CacheInputs, CacheText, StateCache};
use crate::error::{ErrorContext, Result};
use crate::example::Example;
use crate::progress::{Progress, ProgressFn};

/// Nodes kept of a code's AST graph when pairs become [`Example`]s (training and evaluation
/// alike).
pub const MAX_GRAPH_NODES: usize = 512;

/// Where the pretrained model is and how a run uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Directory of the pretrained model (already found, e.g. by
    /// [`gnn_coder_model::find_model_dir`]).
    pub dir: PathBuf,
    /// Token limit of code and queries (including `[CLS]`/`[SEP]`).
    pub max_tokens: usize,
    /// Threads for building state caches (0: one per core).
    pub threads: usize,
}

/// The pretrained transformer (+ tokenizer) with optional trained weights applied.
pub struct Loaded {
    pub model: GnnCoderModel,
    /// The transformer state caches are built with: the pretrained one (no trained layers), so
    /// a cache fingerprinted by `tag` (the base model) holds the same states whatever weights
    /// were loaded beside it. Training swaps in the loaded layers, and adds their checksum to
    /// `tag`, only when its frozen layers include tuned ones.
    pub base: BertModel,
    pub head: HeadConfig,
    pub tokenizer: TextTokenizer,
    pub tag: String,
}

/// Load the base model from `model_dir` onto `device`, then `weights` (if any; else a new head
/// configured by `fresh`, or the default one).
pub fn load_model(
    model_dir: &Path,
    weights: Option<&Path>,
    max_tokens: usize,
    device: &Device,
    fresh: Option<HeadConfig>,
) -> Result<Loaded> {
    gnn_coder_model::check_model_dir(model_dir)?;
    let bert = BertConfig::from_file(&model_dir.join(MODEL_CONFIG_FILE))?;
    let mut head = match weights {
        Some(w) => read_head_config(w)
            .with_context(|| format!("cannot read the weights in {}", w.display()))?,
        None => fresh.unwrap_or_default(),
    };
    head.graph.d_model = bert.hidden_size;
    let tokenizer = TextTokenizer::from_file(
        &model_dir.join(TOKENIZER_FILE),
        max_tokens.min(bert.max_position_embeddings),
    )?;
    let mut model = GnnCoderModel::new(&bert, &head, device)?;
    load_bert_weights(&mut model.transformer, &model_dir.join(MODEL_WEIGHTS_FILE))?;
    let base = model.transformer.clone();
    if let Some(w) = weights {
        model
            .load_saved(w, &head)
            .with_context(|| format!("cannot load the weights in {}", w.display()))?;
    }
    // Identifies the base model in cache fingerprints.
    let size = std::fs::metadata(model_dir.join(MODEL_WEIGHTS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let tag = format!("{}:{size}", bert.num_hidden_layers);
    Ok(Loaded {
        model,
        base,
        head,
        tokenizer,
        tag,
    })
}

/// `n` worker threads, 0 meaning one per core.
pub fn threads(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    }
}

/// Builds (or reloads) state caches with a loaded model's base transformer.
pub struct CacheBuilder<'a> {
    loaded: &'a Loaded,
    /// Layer whose output the caches keep.
    split: usize,
    /// Worker threads (already resolved by [`threads`]).
    threads: usize,
    progress: &'a ProgressFn<'a>,
}

impl<'a> CacheBuilder<'a> {
    pub fn new(
        loaded: &'a Loaded,
        split: usize,
        threads: usize,
        progress: &'a ProgressFn<'a>,
    ) -> Self {
        Self {
            loaded,
            split,
            threads,
            progress,
        }
    }

    /// Cache `texts` in `dir` (reused when built from the same inputs); `top`: keep the
    /// final-layer states too. `what` names the cache in progress events and errors.
    pub fn states(
        &self,
        what: &str,
        dir: &Path,
        texts: &[CacheText<'_>],
        top: bool,
    ) -> Result<StateCache> {
        let started = Instant::now();
        let report = self.progress;
        let progress = |done: usize, total: usize| {
            report(&Progress::Caching {
                what,
                done,
                total,
                seconds: started.elapsed().as_secs_f64(),
            })
        };
        // `Loaded::base` as a plain-device copy: on an autodiff device every op would be
        // recorded for a backward pass.
        let plain = self.loaded.base.valid();
        let inputs = CacheInputs {
            model: &plain,
            tokenizer: &self.loaded.tokenizer,
            texts,
            split: self.split,
            top,
            workers: self.threads,
            model_tag: &self.loaded.tag,
            progress: &progress,
        };
        let cache = StateCache::load_or_build(dir, inputs)
            .with_context(|| format!("cannot cache the {what} states in {}", dir.display()))?;
        report(&Progress::Cached {
            what,
            texts: cache.len(),
            tokens: cache.meta.tokens,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(cache)
    }

    /// Query and code caches of `examples` under `dir/{name}-queries` and `dir/{name}-codes`;
    /// `code_top`: the codes keep their final-layer states even when every layer is tuned.
    pub fn pairs(
        &self,
        name: &str,
        dir: &Path,
        examples: &[Example],
        code_top: bool,
    ) -> Result<(StateCache, StateCache)> {
        let queries: Vec<CacheText> = examples
            .iter()
            .map(|e| CacheText {
                text: &e.query,
                graph: None,
                kind_offset: 0,
            })
            .collect();
        let codes: Vec<CacheText> = examples
            .iter()
            .map(|e| CacheText {
                text: &e.code,
                graph: e.graph.as_ref(),
                kind_offset: gnn_coder_model::kind_offset(&e.language),
            })
            .collect();
        // Queries always keep their final-layer states (stage 1, query distillation); codes
        // need them except when every layer is fine-tuned (split 0), where the embeddings
        // suffice, unless `code_top` (code distillation) asks for them.
        let q = self.states(
            &format!("{name} queries"),
            &dir.join(format!("{name}-queries")),
            &queries,
            true,
        )?;
        let c = self.states(
            &format!("{name} code"),
            &dir.join(format!("{name}-codes")),
            &codes,
            self.split > 0 || code_top,
        )?;
        Ok((q, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_threads_means_one_per_core() {
        assert!(threads(0) >= 1);
        assert_eq!(threads(3), 3);
    }
}
