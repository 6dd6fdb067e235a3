//! The inference path: load pretrained (and optionally trained) weights once, embed queries and
//! code units in length-bucketed batches on the CPU.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use gnn_coder_syntax::AstGraph;

use crate::bert::{BertConfig, BertModel, LoadReport, load_bert_bytes};
use crate::cpu::{self, PackedLinear, Precision};
use crate::error::{ModelError, Result};
use crate::files::{EMBEDDINGS_FILE, ModelFiles};
use crate::graph::{GraphBatch, GraphInput};
use crate::model::{GnnCoderModel, HEAD_CONFIG_FILE, HeadConfig, read_head_config_from};
use crate::tokenize::{Encoded, TextTokenizer};

/// Files of the pretrained model directory (see `scripts/fetch-model.sh`).
pub const MODEL_WEIGHTS_FILE: &str = "model.safetensors";
pub const MODEL_CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Where the pretrained model lives by default: `$GNN_CODER_MODEL_DIR`, else
/// `models/all-MiniLM-L6-v2` relative to the working directory.
pub fn default_model_dir() -> PathBuf {
    std::env::var_os("GNN_CODER_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models/all-MiniLM-L6-v2"))
}

/// Check that a pretrained model directory has every file we need.
pub fn check_model_dir(dir: &Path) -> Result<()> {
    for f in [MODEL_WEIGHTS_FILE, MODEL_CONFIG_FILE, TOKENIZER_FILE] {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(ModelError::MissingModelFile { path });
        }
    }
    Ok(())
}

/// The CPU device used for inference (burn's pure-Rust "flex" backend, multi-threaded through
/// rayon; see the crate docs for the measurements behind this choice).
pub fn default_device() -> Device {
    Device::flex()
}

/// When the graph encoder runs on code units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphUse {
    /// Only with trained head weights; untrained, code vectors are exactly the transformer's
    /// (MiniLM zero-shot) and the graph work is skipped.
    #[default]
    IfTrained,
    /// Always (untrained weights give approximately the transformer's vectors).
    Always,
    /// Never: sequence vectors only.
    Never,
}

/// What runs the transformer at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compute {
    /// The packed CPU kernels ([`crate::cpu`]) at [`Precision::best`]: int8 on CPUs with
    /// AVX-512 VNNI, else f32.
    #[default]
    Auto,
    /// The packed CPU kernels at this precision (bf16 and int8 fail to load, with a typed
    /// error, on CPUs without their instructions).
    Kernels(Precision),
    /// burn's flex backend, the graph training differentiates: the reference, ~2-4x slower.
    Burn,
}

impl Compute {
    /// `GNN_CODER_COMPUTE` (`auto`, `f32`, `bf16`, `int8` or `burn`); unset or empty means
    /// `auto`.
    pub fn from_env() -> Result<Compute> {
        match std::env::var("GNN_CODER_COMPUTE") {
            Ok(v) if !v.trim().is_empty() => v.parse().map_err(ModelError::Config),
            _ => Ok(Compute::Auto),
        }
    }

    /// The precision the kernels run at (`None` for burn).
    pub fn precision(self) -> Option<Precision> {
        match self {
            Compute::Auto => Some(Precision::best()),
            Compute::Kernels(p) => Some(p),
            Compute::Burn => None,
        }
    }
}

impl std::str::FromStr for Compute {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Compute::Auto),
            "burn" => Ok(Compute::Burn),
            other => other
                .parse::<Precision>()
                .map(Compute::Kernels)
                .map_err(|_| {
                    format!("unknown GNN_CODER_COMPUTE {other:?} (auto, f32, bf16, int8 or burn)")
                }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EmbedderOptions {
    /// The pretrained transformer (`config.json`, `tokenizer.json`, and `model.safetensors` or,
    /// when the weights fine-tune every layer, `embeddings.safetensors`): a directory or the
    /// built-in copy.
    pub model: ModelFiles,
    /// Our trained weights (`head.json`, `head.safetensors`, optional
    /// `transformer.safetensors`); `None` = untrained head built from `head`.
    pub weights: Option<ModelFiles>,
    /// Head configuration when `weights` is `None`.
    pub head: HeadConfig,
    /// Token limit including `[CLS]`/`[SEP]`; longer texts keep their head (for code units:
    /// the signature and docstring, which come first).
    pub max_tokens: usize,
    /// Texts per transformer batch (after sorting by token length).
    pub batch_size: usize,
    pub graph: GraphUse,
    /// What runs the transformer.
    pub compute: Compute,
}

impl EmbedderOptions {
    pub fn new(model: impl Into<ModelFiles>) -> Self {
        Self {
            model: model.into(),
            weights: None,
            head: HeadConfig::default(),
            max_tokens: 256,
            batch_size: 32,
            graph: GraphUse::default(),
            compute: Compute::Auto,
        }
    }
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self::new(default_model_dir())
    }
}

/// One code unit to embed.
#[derive(Debug, Clone, Copy)]
pub struct UnitInput<'a> {
    /// Source text of the unit; the graph's byte spans are relative to its start.
    pub code: &'a str,
    pub graph: Option<&'a AstGraph>,
    /// Offset added to the graph's per-language node-kind ids ([`crate::kind_offset`]).
    pub kind_offset: u32,
}

impl<'a> UnitInput<'a> {
    pub fn new(code: &'a str, graph: Option<&'a AstGraph>, language: &str) -> Self {
        Self {
            code,
            graph,
            kind_offset: crate::kind_offset(language),
        }
    }
}

/// Loaded model + tokenizer, ready to embed.
#[derive(Debug)]
pub struct Embedder {
    model: GnnCoderModel,
    tokenizer: TextTokenizer,
    device: Device,
    head_config: HeadConfig,
    trained: bool,
    options: EmbedderOptions,
    load_report: LoadReport,
    /// The packed copy of the transformer and the query projection (unless `Compute::Burn`).
    kernels: Option<Kernels>,
}

#[derive(Debug)]
struct Kernels {
    encoder: cpu::Encoder,
    query_proj: PackedLinear,
    code_head: cpu::CodeHead,
}

/// Threads for one call that is not itself one of several parallel workers.
pub(crate) fn all_threads() -> usize {
    rayon::current_num_threads().max(1)
}

impl Embedder {
    /// Load on [`default_device`].
    pub fn load(options: &EmbedderOptions) -> Result<Self> {
        Self::load_on(options, default_device())
    }

    pub fn load_on(options: &EmbedderOptions, device: Device) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(ModelError::Config("batch_size must be at least 1".into()));
        }
        let files = &options.model;
        let bert = BertConfig::from_bytes(
            &files.read(MODEL_CONFIG_FILE)?,
            &files.path(MODEL_CONFIG_FILE),
        )?;
        let max_tokens = options.max_tokens.min(bert.max_position_embeddings);
        let tokenizer = TextTokenizer::from_bytes(
            &files.read(TOKENIZER_FILE)?,
            &files.path(TOKENIZER_FILE),
            max_tokens,
        )?;
        let head_config = match &options.weights {
            Some(w) if w.has(HEAD_CONFIG_FILE) => read_head_config_from(w)?,
            Some(w) => {
                return Err(ModelError::MissingModelFile {
                    path: w.path(HEAD_CONFIG_FILE),
                });
            }
            None => {
                let mut h = options.head.clone();
                h.graph.d_model = bert.hidden_size;
                h
            }
        };
        let mut model = GnnCoderModel::new(&bert, &head_config, &device)?;
        // The whole pretrained model, or its embeddings alone when the trained weights replace
        // every encoder layer (the built-in model).
        let every_layer_tuned =
            options.weights.is_some() && head_config.tuned_layers >= bert.num_hidden_layers;
        let (name, expected, embeddings_only) = if files.has(MODEL_WEIGHTS_FILE) {
            (MODEL_WEIGHTS_FILE, bert.num_weight_tensors(), false)
        } else if every_layer_tuned && files.has(EMBEDDINGS_FILE) {
            (
                EMBEDDINGS_FILE,
                bert.num_weight_tensors() - 16 * bert.num_hidden_layers,
                true,
            )
        } else {
            return Err(ModelError::MissingModelFile {
                path: files.path(MODEL_WEIGHTS_FILE),
            });
        };
        let load_report = load_bert_bytes(
            &mut model.transformer,
            &files.read(name)?,
            &files.path(name),
            embeddings_only,
        )?;
        if load_report.applied != expected {
            return Err(ModelError::Weights {
                path: load_report.path.clone(),
                message: format!(
                    "applied {} tensors, expected {expected}",
                    load_report.applied
                ),
            });
        }
        let trained = match &options.weights {
            Some(w) => model.load_saved_from(w, &head_config)?,
            None => false,
        };
        let kernels = match options.compute.precision() {
            None => None,
            Some(precision) => {
                let encoder =
                    cpu::Encoder::from_burn(&model.transformer, bert.layer_norm_eps, precision)?;
                let query_proj = cpu::linear(model.head.query_projection(), Precision::F32)?;
                Some(Kernels {
                    encoder,
                    query_proj,
                    code_head: cpu::CodeHead::from_burn(&model.head)?,
                })
            }
        };
        Ok(Self {
            model,
            tokenizer,
            device,
            head_config,
            trained,
            options: options.clone(),
            load_report,
            kernels,
        })
    }

    /// Output vector size.
    pub fn dim(&self) -> usize {
        self.head_config.out_dim
    }

    /// Whether the head weights were loaded from a directory marked trained.
    pub fn is_trained(&self) -> bool {
        self.trained
    }

    pub fn max_tokens(&self) -> usize {
        self.tokenizer.max_len()
    }

    pub fn model(&self) -> &GnnCoderModel {
        &self.model
    }

    pub fn head_config(&self) -> &HeadConfig {
        &self.head_config
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// What loading the pretrained weights applied (101 tensors for MiniLM-L6).
    pub fn load_report(&self) -> &LoadReport {
        &self.load_report
    }

    /// Whether [`embed_units`](Self::embed_units) runs the graph network (units then need
    /// their AST graphs).
    pub fn graphs_enabled(&self) -> bool {
        if !self.head_config.use_graph {
            return false;
        }
        match self.options.graph {
            GraphUse::Always => true,
            GraphUse::Never => false,
            GraphUse::IfTrained => self.trained,
        }
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        texts.iter().map(|t| self.tokenizer.encode(t)).collect()
    }

    /// What runs the transformer: `"bf16"` or `"f32"` kernels, or `"burn"`.
    pub fn compute_name(&self) -> &'static str {
        match &self.kernels {
            Some(k) => k.encoder.precision().as_str(),
            None => "burn",
        }
    }

    /// Query vectors (transformer mean pool -> query projection -> L2 norm), on every core.
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encs = self.tokenize(queries)?;
        let Some(k) = &self.kernels else {
            return self.run_batches(&encs, &|_| true, |_, ids, mask| {
                Ok(self.model.forward_query(ids, mask))
            });
        };
        query_vectors(&k.encoder, &k.query_proj, self.options.batch_size, &encs)
    }

    /// Code-unit vectors (transformer + graph encoder -> fusion -> projection -> L2 norm), on
    /// every core.
    pub fn embed_units(&self, units: &[UnitInput<'_>]) -> Result<Vec<Vec<f32>>> {
        self.embed_units_with(units, all_threads())
    }

    /// [`embed_units`](Self::embed_units) on at most `threads` threads for the transformer
    /// (1 when the caller runs one worker per core).
    pub fn embed_units_with(
        &self,
        units: &[UnitInput<'_>],
        threads: usize,
    ) -> Result<Vec<Vec<f32>>> {
        self.embed_units_until(units, threads, &|_| true)
    }

    /// [`embed_units_with`](Self::embed_units_with) that calls `after_batch(n)` after each
    /// transformer batch (of `n` units, at most [`EmbedderOptions::batch_size`]): a caller
    /// reports progress there, and stops the work by returning `false`, which ends the call
    /// with [`ModelError::Stopped`] before the next batch starts.
    pub fn embed_units_until(
        &self,
        units: &[UnitInput<'_>],
        threads: usize,
        after_batch: &dyn Fn(usize) -> bool,
    ) -> Result<Vec<Vec<f32>>> {
        let texts: Vec<&str> = units.iter().map(|u| u.code).collect();
        let encs = self.tokenize(&texts)?;
        let use_graphs = self.graphs_enabled();
        let kind_vocab = self.head_config.graph.kind_vocab_size;
        let graph_inputs = |idx: &[usize]| -> Vec<GraphInput<'_>> {
            idx.iter()
                .enumerate()
                .filter_map(|(row, &i)| {
                    units[i].graph.map(|graph| GraphInput {
                        row,
                        graph,
                        tokens: &encs[i],
                        kind_offset: units[i].kind_offset,
                    })
                })
                .collect()
        };
        let Some(k) = &self.kernels else {
            return self.run_batches(&encs, after_batch, |idx, ids, mask| {
                let graphs = match use_graphs {
                    true => Some(GraphBatch::build(
                        &graph_inputs(idx),
                        ids.dims()[1],
                        kind_vocab,
                    )?),
                    false => None,
                };
                self.model.forward_code(ids, mask, graphs.as_ref())
            });
        };
        let threads = threads.max(1);
        self.run_ragged(&encs, threads, after_batch, |idx, states| {
            let graphs = match use_graphs {
                true => Some(GraphBatch::build_ragged(
                    &graph_inputs(idx),
                    &states.offsets,
                    kind_vocab,
                )?),
                false => None,
            };
            k.code_head
                .code_vectors(&states.mean_pool(), states, graphs.as_ref(), threads)
        })
    }

    /// Plain sentence-transformers embeddings (mean pool + L2 norm, no head): what
    /// all-MiniLM-L6-v2 gives zero-shot. Used by the parity test and the benchmark.
    pub fn embed_sentences(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let encs = self.tokenize(texts)?;
        if self.kernels.is_none() {
            return self.run_batches(&encs, &|_| true, |_, ids, mask| {
                let states = self.model.transformer.forward(ids, mask.clone());
                let v = BertModel::mean_pool(states, mask);
                let norm = v.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
                Ok(v / norm)
            });
        }
        self.run_ragged(&encs, all_threads(), &|_| true, |_, states| {
            Ok(cpu::normalize_rows(states.mean_pool(), states.dim))
        })
    }

    /// Like [`run_batches`](Self::run_batches) on the packed kernels: sorted by length, cut
    /// into batches, each encoded without padding; `f(original indices, states)` returns one
    /// vector per text.
    fn run_ragged<F>(
        &self,
        encs: &[Encoded],
        threads: usize,
        after_batch: &dyn Fn(usize) -> bool,
        f: F,
    ) -> Result<Vec<Vec<f32>>>
    where
        F: Fn(&[usize], &cpu::States) -> Result<Vec<Vec<f32>>>,
    {
        let Some(k) = &self.kernels else {
            return Err(ModelError::Config("the CPU kernels are not loaded".into()));
        };
        run_ragged(
            &k.encoder,
            self.options.batch_size,
            encs,
            threads,
            after_batch,
            f,
        )
    }

    /// Sort by token length, cut into batches of `batch_size`, pad each to its longest member,
    /// run `f(original indices, ids [B, L], mask [B, L])`, and put the rows back in input order.
    fn run_batches<F>(
        &self,
        encs: &[Encoded],
        after_batch: &dyn Fn(usize) -> bool,
        f: F,
    ) -> Result<Vec<Vec<f32>>>
    where
        F: Fn(&[usize], Tensor<2, Int>, Tensor<2>) -> Result<Tensor<2>>,
    {
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| encs[i].len());
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); encs.len()];
        for chunk in order.chunks(self.options.batch_size) {
            let (ids, mask) = pad_batch(encs, chunk, &self.device);
            let vectors = f(chunk, ids, mask)?;
            let [_, dim] = vectors.dims();
            let flat: Vec<f32> = vectors
                .try_into_vec_as::<f32>()
                .map_err(|e| ModelError::Tensor(format!("{e:?}")))?;
            for (row, &i) in chunk.iter().enumerate() {
                out[i] = flat[row * dim..(row + 1) * dim].to_vec();
            }
            if !after_batch(chunk.len()) {
                return Err(ModelError::Stopped);
            }
        }
        Ok(out)
    }
}

/// Query vectors on the packed kernels (transformer mean pool -> `query_proj` -> L2 norm), on
/// every core: what [`Embedder::embed_queries`] and [`crate::QueryEmbedder`] compute.
pub(crate) fn query_vectors(
    encoder: &cpu::Encoder,
    query_proj: &PackedLinear,
    batch_size: usize,
    encs: &[Encoded],
) -> Result<Vec<Vec<f32>>> {
    let threads = all_threads();
    run_ragged(
        encoder,
        batch_size,
        encs,
        threads,
        &|_| true,
        |_, states| {
            let n = states.len();
            let seq = states.mean_pool();
            let mut out = vec![0f32; n * query_proj.out_dim()];
            query_proj.forward(&seq, n, &mut out, threads, &mut Vec::new());
            Ok(cpu::normalize_rows(out, query_proj.out_dim()))
        },
    )
}

/// Sorted by length, cut into batches of `batch_size`, each encoded without padding;
/// `f(original indices, states)` returns one vector per text; `after_batch(n)` returning false
/// stops with [`ModelError::Stopped`].
fn run_ragged<F>(
    encoder: &cpu::Encoder,
    batch_size: usize,
    encs: &[Encoded],
    threads: usize,
    after_batch: &dyn Fn(usize) -> bool,
    f: F,
) -> Result<Vec<Vec<f32>>>
where
    F: Fn(&[usize], &cpu::States) -> Result<Vec<Vec<f32>>>,
{
    if batch_size == 0 {
        return Err(ModelError::Config("batch_size must be at least 1".into()));
    }
    let mut order: Vec<usize> = (0..encs.len()).collect();
    order.sort_by_key(|&i| encs[i].len());
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); encs.len()];
    for chunk in order.chunks(batch_size) {
        let ids: Vec<&[u32]> = chunk.iter().map(|&i| encs[i].ids.as_slice()).collect();
        let states = encoder.encode(&ids, threads)?;
        let rows = f(chunk, &states)?;
        if rows.len() != chunk.len() {
            return Err(ModelError::Tensor("wrong number of vectors".into()));
        }
        for (&i, row) in chunk.iter().zip(rows) {
            out[i] = row;
        }
        if !after_batch(chunk.len()) {
            return Err(ModelError::Stopped);
        }
    }
    Ok(out)
}

/// Token ids and attention mask of `encs[rows]`, padded to the longest: ([B, L], [B, L]).
pub fn pad_batch(encs: &[Encoded], rows: &[usize], device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let l = rows
        .iter()
        .map(|&i| encs[i].len())
        .max()
        .unwrap_or(0)
        .max(1);
    let b = rows.len();
    let mut ids = vec![0i64; b * l];
    let mut mask = vec![0f32; b * l];
    for (row, &i) in rows.iter().enumerate() {
        for (j, &id) in encs[i].ids.iter().enumerate() {
            ids[row * l + j] = i64::from(id);
            mask[row * l + j] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(ids, [b, l]), device),
        Tensor::from_data(TensorData::new(mask, [b, l]), device),
    )
}
