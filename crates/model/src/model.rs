//! The full GNN-Coder model: transformer + graph encoder + fusion gate + projections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::store::{FloatCastAdapter, HalfPrecisionAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};

use crate::bert::{BertConfig, BertModel};
use crate::error::{ModelError, Result};
use crate::files::ModelFiles;
use crate::graph::{GraphBatch, GraphConfig, GraphEncoder};

/// File names inside a trained-weights directory.
pub const HEAD_WEIGHTS_FILE: &str = "head.safetensors";
pub const HEAD_CONFIG_FILE: &str = "head.json";
pub const TRANSFORMER_WEIGHTS_FILE: &str = "transformer.safetensors";

/// Safetensors metadata keys written with the head weights.
pub const META_TRAINED: &str = "gnn_coder.trained";
pub const META_FORMAT: &str = "gnn_coder.format";
/// Storage precision of a weights file: `f32` or `f16` (shipped weights are half precision).
pub const META_DTYPE: &str = "gnn_coder.dtype";
const FORMAT_VERSION: &str = "1";

/// Configuration of everything on top of the transformer (saved as `head.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadConfig {
    pub graph: GraphConfig,
    /// Output embedding size.
    pub out_dim: usize,
    /// Initial bias of the fusion gate (`sigmoid(4) ~ 0.982` of the sequence vector).
    pub gate_init_bias: f64,
    /// Maximum token length (including `[CLS]`/`[SEP]`) the head was trained with.
    pub max_tokens: usize,
    /// Seed of the device RNG before the head is initialized, so an untrained head is the same
    /// in every process (burn may seed globally; loaded weights replace it anyway).
    pub seed: u64,
    /// Number of the transformer's top encoder layers that were fine-tuned and are saved in
    /// `transformer.safetensors` (0: the pretrained transformer is used as is). Only these
    /// layers are shipped, so trained weights stay small.
    pub tuned_layers: usize,
    /// Whether code vectors use the graph network (false for weights trained without it: the
    /// code vector is then the projected sequence vector).
    pub use_graph: bool,
    /// Queries and codes share one projection (`out_proj`); `query_proj` is saved as a copy of
    /// it, so readers that always apply `query_proj` to queries get the same vectors.
    pub shared_projection: bool,
    /// The graph branch (`graph_proj`) starts at zero, so an untrained graph network adds
    /// nothing to the code vector and its gradient still flows from the first step.
    pub zero_init_graph: bool,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            graph: GraphConfig::default(),
            out_dim: 384,
            gate_init_bias: 4.0,
            max_tokens: 256,
            seed: 42,
            tuned_layers: 0,
            use_graph: true,
            shared_projection: false,
            zero_init_graph: false,
        }
    }
}

impl HeadConfig {
    pub fn validate(&self) -> Result<()> {
        self.graph.validate()?;
        if self.out_dim == 0 {
            return Err(ModelError::Config("out_dim must be non-zero".into()));
        }
        if self.max_tokens < 2 {
            return Err(ModelError::Config("max_tokens must be at least 2".into()));
        }
        Ok(())
    }

    /// An untrained head that degrades gracefully: identity projections and a gate that passes
    /// ~98% of the sequence vector, so code and query vectors start as the transformer's.
    pub fn init(&self, device: &Device) -> GnnCoderHead {
        let d = self.graph.d_model;
        let identity = |out: usize| {
            let mut lin = LinearConfig::new(d, out).init(device);
            let eye: Tensor<2> = Tensor::eye(d.max(out), device);
            lin.weight = Param::from_tensor(eye.slice([0..d, 0..out]));
            lin.bias = Some(Param::from_tensor(Tensor::zeros([out], device)));
            lin
        };
        let mut gate = LinearConfig::new(2 * d, d).init(device);
        gate.weight = Param::from_tensor(Tensor::zeros([2 * d, d], device));
        gate.bias = Some(Param::from_tensor(Tensor::full(
            [d],
            self.gate_init_bias,
            device,
        )));
        let mut graph_proj = LinearConfig::new(self.graph.readout_dim(), d).init(device);
        if self.zero_init_graph {
            graph_proj.weight =
                Param::from_tensor(Tensor::zeros([self.graph.readout_dim(), d], device));
            graph_proj.bias = Some(Param::from_tensor(Tensor::zeros([d], device)));
        }
        GnnCoderHead {
            graph: self.graph.init(device),
            graph_proj,
            gate,
            out_proj: identity(self.out_dim),
            query_proj: identity(self.out_dim),
            shared_projection: self.shared_projection,
        }
    }
}

/// Graph encoder, fusion and projections: everything we train.
#[derive(Module, Debug)]
pub struct GnnCoderHead {
    pub graph: GraphEncoder,
    /// Readouts (num_layers * 2 * hidden) -> d_model.
    pub graph_proj: Linear,
    /// `[seq || graph] -> d_model` gate logits (per dimension).
    pub gate: Linear,
    pub out_proj: Linear,
    pub query_proj: Linear,
    /// Queries go through `out_proj` too (see [`HeadConfig::shared_projection`]).
    pub shared_projection: bool,
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl GnnCoderHead {
    /// Fuse sequence vectors with graph readouts and project. `seq`: [B, d]; `graphs`: the
    /// batch's graphs (rows without a graph, or with an empty one, use the sequence vector
    /// alone). Returns L2-normalized [B, out_dim].
    pub fn code_vectors(
        &self,
        seq: Tensor<2>,
        token_states: Tensor<3>,
        graphs: Option<&GraphBatch>,
    ) -> Result<Tensor<2>> {
        let device = seq.device();
        let [b, d] = seq.dims();
        let fused = match graphs {
            Some(gb) if !gb.is_empty() => {
                let readouts = self.graph.forward(token_states, gb)?; // [G, R]
                let rows: Vec<i64> = gb.rows.iter().map(|&r| r as i64).collect();
                let g = rows.len();
                let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [g]), &device);
                let gp_rows = self.graph_proj.forward(readouts);
                let gp = Tensor::zeros([b, d], &device).select_assign(
                    0,
                    rows.clone(),
                    gp_rows,
                    burn::tensor::IndexingUpdateOp::Add,
                );
                let has = Tensor::zeros([b, 1], &device).select_assign(
                    0,
                    rows,
                    Tensor::ones([g, 1], &device),
                    burn::tensor::IndexingUpdateOp::Add,
                );
                let gate = sigmoid(
                    self.gate
                        .forward(Tensor::cat(vec![seq.clone(), gp.clone()], 1)),
                );
                // Rows without a graph: gate = 1 (sequence vector only).
                let gate = gate * has.clone() + (has.neg() + 1.0);
                seq.clone() * gate.clone() + gp * (gate.neg() + 1.0)
            }
            _ => seq,
        };
        Ok(l2_normalize(self.out_proj.forward(fused)))
    }

    /// Query vectors: [B, d] mean-pooled transformer vectors -> L2-normalized [B, out_dim].
    pub fn query_vectors(&self, seq: Tensor<2>) -> Tensor<2> {
        l2_normalize(self.query_projection().forward(seq))
    }

    /// The projection queries go through.
    pub fn query_projection(&self) -> &Linear {
        if self.shared_projection {
            &self.out_proj
        } else {
            &self.query_proj
        }
    }
}

/// Transformer + head, one burn module (usable on `device.autodiff()` for training).
#[derive(Module, Debug)]
pub struct GnnCoderModel {
    pub transformer: BertModel,
    pub head: GnnCoderHead,
}

impl GnnCoderModel {
    pub fn new(bert: &BertConfig, head: &HeadConfig, device: &Device) -> Result<Self> {
        bert.validate()?;
        head.validate()?;
        if head.graph.d_model != bert.hidden_size {
            return Err(ModelError::Config(format!(
                "head d_model {} != transformer hidden_size {}",
                head.graph.d_model, bert.hidden_size
            )));
        }
        device.seed(head.seed);
        let head_module = head.init(device);
        // Parameters initialize lazily; draw them now, right after seeding.
        head_module.visit(&mut ForceInit);
        Ok(Self {
            transformer: bert.init(device),
            head: head_module,
        })
    }

    /// Stop gradients into the transformer (train only the head).
    pub fn freeze_transformer(mut self) -> Self {
        self.transformer = self.transformer.no_grad();
        self
    }

    /// Code vectors for a padded token batch. `ids`/`mask`: [B, L].
    pub fn forward_code(
        &self,
        ids: Tensor<2, Int>,
        mask: Tensor<2>,
        graphs: Option<&GraphBatch>,
    ) -> Result<Tensor<2>> {
        let states = self.transformer.forward(ids, mask.clone());
        let seq = BertModel::mean_pool(states.clone(), mask);
        self.head.code_vectors(seq, states, graphs)
    }

    /// Query vectors for a padded token batch.
    pub fn forward_query(&self, ids: Tensor<2, Int>, mask: Tensor<2>) -> Tensor<2> {
        let states = self.transformer.forward(ids, mask.clone());
        self.head.query_vectors(BertModel::mean_pool(states, mask))
    }

    /// Save our trained weights into `dir`: `head.json` (the config), `head.safetensors`
    /// (metadata marks them trained or not) and, when `config.tuned_layers > 0`,
    /// `transformer.safetensors` with the top `tuned_layers` encoder layers only (burn parameter
    /// names). `half` stores float weights as f16 (what we ship; checkpoints keep f32).
    pub fn save(&self, dir: &Path, config: &HeadConfig, trained: bool, half: bool) -> Result<()> {
        let save_err = |path: &Path, message: String| ModelError::Save {
            path: path.to_path_buf(),
            message,
        };
        let n = self.transformer.num_layers();
        if config.tuned_layers > n {
            return Err(ModelError::Config(format!(
                "tuned_layers {} > transformer layers {n}",
                config.tuned_layers
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| save_err(dir, e.to_string()))?;
        let dtype = if half { "f16" } else { "f32" };
        let head_path = dir.join(HEAD_WEIGHTS_FILE);
        let mut store = SafetensorsStore::from_file(&head_path)
            .metadata(META_TRAINED, if trained { "true" } else { "false" })
            .metadata(META_FORMAT, FORMAT_VERSION)
            .metadata(META_DTYPE, dtype)
            .overwrite(true);
        if half {
            store = store.with_to_adapter(HalfPrecisionAdapter::new());
        }
        let mut head = self.head.clone();
        if config.shared_projection {
            head.query_proj = head.out_proj.clone();
        }
        head.save_into(&mut store)
            .map_err(|e| save_err(&head_path, e.to_string()))?;
        let tpath = dir.join(TRANSFORMER_WEIGHTS_FILE);
        if config.tuned_layers > 0 {
            let mut store = SafetensorsStore::from_file(&tpath)
                .with_regex(tuned_layers_regex(n, config.tuned_layers))
                .metadata(META_FORMAT, FORMAT_VERSION)
                .metadata(META_DTYPE, dtype)
                .overwrite(true);
            if half {
                store = store.with_to_adapter(HalfPrecisionAdapter::new());
            }
            self.transformer
                .save_into(&mut store)
                .map_err(|e| save_err(&tpath, e.to_string()))?;
        } else if tpath.exists() {
            // A stale file from an earlier save would be loaded with the new head.
            std::fs::remove_file(&tpath).map_err(|e| save_err(&tpath, e.to_string()))?;
        }
        // Written last: a directory with a config but without weights fails to load loudly.
        let cfg_path = dir.join(HEAD_CONFIG_FILE);
        let json =
            serde_json::to_string_pretty(config).map_err(|e| save_err(&cfg_path, e.to_string()))?;
        std::fs::write(&cfg_path, json).map_err(|e| save_err(&cfg_path, e.to_string()))?;
        Ok(())
    }

    /// Load weights saved by [`save`](Self::save) into this model (whose head must have been
    /// built from the same `head.json`: `tuned_layers` is read from `config`). Returns whether
    /// the weights are marked trained.
    pub fn load_saved(&mut self, dir: &Path, config: &HeadConfig) -> Result<bool> {
        self.load_saved_from(&ModelFiles::Dir(dir.to_path_buf()), config)
    }

    /// [`load_saved`](Self::load_saved) from a directory or the built-in weights.
    pub fn load_saved_from(&mut self, files: &ModelFiles, config: &HeadConfig) -> Result<bool> {
        let head_path = files.path(HEAD_WEIGHTS_FILE);
        let head = read_weights(files, HEAD_WEIGHTS_FILE)?;
        let trained = head.metadata.get(META_TRAINED).is_some_and(|v| v == "true");
        load_complete(&mut self.head, head, &head_path, None)?;
        if config.tuned_layers > 0 {
            let n = self.transformer.num_layers();
            if config.tuned_layers > n {
                return Err(ModelError::Config(format!(
                    "tuned_layers {} > transformer layers {n}",
                    config.tuned_layers
                )));
            }
            let tpath = files.path(TRANSFORMER_WEIGHTS_FILE);
            let re = tuned_layers_regex(n, config.tuned_layers);
            let raw = read_weights(files, TRANSFORMER_WEIGHTS_FILE)?;
            let applied = load_complete(&mut self.transformer, raw, &tpath, Some(&re))?;
            let per_layer = 16;
            if applied != per_layer * config.tuned_layers {
                return Err(ModelError::Weights {
                    path: tpath,
                    message: format!(
                        "applied {applied} tensors, expected {} ({} layers)",
                        per_layer * config.tuned_layers,
                        config.tuned_layers
                    ),
                });
            }
        }
        Ok(trained)
    }
}

/// A weights file of `files`, read and checked (a missing file is named).
fn read_weights(files: &ModelFiles, name: &str) -> Result<crate::quant::RawFile> {
    let path = files.path(name);
    if !files.has(name) {
        return Err(ModelError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "weights file not found"),
        });
    }
    crate::quant::RawFile::parse(&files.read(name)?, &path)
}

/// Parameter-path pattern of the top `k` of `n` encoder layers.
fn tuned_layers_regex(n: usize, k: usize) -> String {
    let ids: Vec<String> = (n - k..n).map(|i| i.to_string()).collect();
    format!(r"^encoder\.layer\.({})\.", ids.join("|"))
}

struct ForceInit;

impl burn::module::ModuleVisitor for ForceInit {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let _ = param.val();
    }
}

/// Read `head.json` from a trained-weights directory.
pub fn read_head_config(dir: &Path) -> Result<HeadConfig> {
    read_head_config_from(&ModelFiles::Dir(dir.to_path_buf()))
}

/// [`read_head_config`] from a directory or the built-in weights.
pub fn read_head_config_from(files: &ModelFiles) -> Result<HeadConfig> {
    let path = files.path(HEAD_CONFIG_FILE);
    let bytes = files.read(HEAD_CONFIG_FILE)?;
    let cfg: HeadConfig =
        serde_json::from_slice(&bytes).map_err(|source| ModelError::Json { path, source })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Load every tensor of `path` into `module` (only the paths matching `filter`, if given).
/// Each tensor is read by its own dtype, as the file's header gives it, whatever the file's
/// metadata says: f16, bf16 and f64 tensors are converted to the model's f32 (so a file
/// rewritten by another tool, metadata dropped, still loads), int8 tensors with their scales
/// are dequantized (see [`crate::quant`]), and any other tensor is refused with its name.
/// Returns the number of tensors applied.
fn load_complete<M: ModuleSnapshot>(
    module: &mut M,
    raw: crate::quant::RawFile,
    path: &Path,
    filter: Option<&str>,
) -> Result<usize> {
    // int8 tensors (see `quant`) become f32 here, and any other non-float dtype is refused.
    let raw = raw.dequantize(path)?;
    let mut store = SafetensorsStore::from_bytes(Some(raw.to_bytes()))
        .allow_partial(true)
        .with_from_adapter(FloatCastAdapter::to(burn::tensor::DType::F32));
    if let Some(re) = filter {
        store = store.with_regex(re);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| ModelError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if (filter.is_none() && !result.missing.is_empty()) || !result.errors.is_empty() {
        return Err(ModelError::IncompleteWeights {
            path: path.to_path_buf(),
            applied: result.applied.len(),
            missing: result.missing.iter().map(|(p, _)| p.clone()).collect(),
            errors: result.errors.iter().map(|e| e.to_string()).collect(),
        });
    }
    Ok(result.applied.len())
}

/// The JSON header of a safetensors file.
fn read_safetensors_header(path: &Path) -> Result<serde_json::Value> {
    use std::io::Read;
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let bad = |message: &str| ModelError::Weights {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(io)?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 {
        return Err(bad("safetensors header larger than 100 MiB"));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(io)?;
    serde_json::from_slice(&header).map_err(|source| ModelError::Json {
        path: PathBuf::from(path),
        source,
    })
}

/// Each tensor's name and dtype (`F16`, `F32`, ...) from a safetensors header.
pub fn read_safetensors_dtypes(path: &Path) -> Result<Vec<(String, String)>> {
    let json = read_safetensors_header(path)?;
    let Some(map) = json.as_object() else {
        return Err(ModelError::Weights {
            path: path.to_path_buf(),
            message: "the safetensors header is not a JSON object".into(),
        });
    };
    Ok(map
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            (
                k.clone(),
                v.get("dtype")
                    .and_then(|d| d.as_str())
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect())
}

/// The `__metadata__` map of a safetensors file (read from its JSON header).
pub fn read_safetensors_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let json = read_safetensors_header(path)?;
    let mut out = HashMap::new();
    if let Some(meta) = json.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in meta {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphInput;
    use crate::tokenize::Encoded;
    use gnn_coder_syntax::AstGraph;

    /// A zero-started graph branch leaves code vectors at the (projected) sequence vector, and
    /// a shared projection sends queries through `out_proj`.
    #[test]
    fn zero_init_graph_and_shared_projection() {
        let device = Device::flex();
        let cfg = HeadConfig {
            graph: GraphConfig {
                d_model: 8,
                hidden: 4,
                kind_vocab_size: 10,
                ..GraphConfig::default()
            },
            out_dim: 8,
            gate_init_bias: 0.0,
            zero_init_graph: true,
            shared_projection: true,
            ..HeadConfig::default()
        };
        let mut head = cfg.init(&device);
        let g = AstGraph {
            kinds: vec![1, 2, 3],
            spans: vec![(0, 11), (0, 3), (4, 11)],
            child_counts: vec![2, 0, 0],
            edges: vec![(0, 1), (0, 2)],
        };
        let enc = Encoded {
            ids: vec![0; 4],
            offsets: vec![(0, 0), (0, 3), (4, 11), (0, 0)],
            special: vec![true, false, false, true],
        };
        let batch = GraphBatch::build(
            &[GraphInput {
                row: 0,
                graph: &g,
                tokens: &enc,
                kind_offset: 0,
            }],
            4,
            10,
        )
        .unwrap();
        let states: Tensor<3> =
            Tensor::random([1, 4, 8], burn::tensor::Distribution::Default, &device);
        let seq: Tensor<2> = states.clone().mean_dim(1).reshape([1, 8]);
        let values = |t: Tensor<2>| -> Vec<f32> { t.try_into_vec_as::<f32>().unwrap() };
        let code = values(
            head.code_vectors(seq.clone(), states.clone(), Some(&batch))
                .unwrap(),
        );
        let plain = values(
            head.code_vectors(seq.clone(), states.clone(), None)
                .unwrap(),
        );
        for (a, b) in code.iter().zip(&plain) {
            assert!((a - b).abs() < 1e-6, "{code:?} vs {plain:?}");
        }
        // Queries use out_proj: change it and query vectors follow.
        head.out_proj.weight = Param::from_tensor(Tensor::random(
            [8, 8],
            burn::tensor::Distribution::Default,
            &device,
        ));
        let q = values(head.query_vectors(seq.clone()));
        let via_out = values(l2_normalize(head.out_proj.forward(seq)));
        assert_eq!(q, via_out);
    }
}
