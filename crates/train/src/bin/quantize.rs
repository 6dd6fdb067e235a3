//! `quantize IN OUT`: writes trained weights with their matrices stored as int8 + scales (the
//! format of `gnn_coder_model::quant`), the way `weights/gnn-coder` ships. `OUT` gets
//! `head.json`, `head.safetensors`, `transformer.safetensors` (when `IN` has one) and a new
//! `SHA256SUMS`; `OUT` may be `IN` (each file is replaced atomically). The weights are checked
//! by loading them before anything is written.
//!
//! With `--embeddings-from MODEL_DIR` (the pretrained all-MiniLM-L6-v2), `OUT` also gets what
//! the fine-tuned layers still need of it, so that `OUT` is a whole model by itself (what the
//! binary carries built in, see `gnn_coder_model::files`): `embeddings.safetensors` (the
//! embedding tables, the large ones as int8 by the same rule), `config.json` and
//! `tokenizer.json`. Only weights that fine-tune every layer can do without the rest.
//!
//! `IN` may also be a cross-encoder reranker (`rerank.json` instead of `head.json`, as
//! `training/rerank/train.py export` writes): its `transformer.safetensors` is quantized by the
//! same rule, `rerank.json` and `head.safetensors` (one score vector) are copied, and the
//! reranker is loaded over the pretrained model's files before anything is written.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use gnn_coder_model::EMBEDDINGS_FILE;
use gnn_coder_model::TRANSFORMER_WEIGHTS_FILE;
use gnn_coder_model::model::{HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE};
use gnn_coder_model::quant::{
    DEFAULT_MAX_RELATIVE_ERROR, DEFAULT_MIN_ELEMENTS, quantize_file, quantize_raw, read_raw,
    write_atomically,
};
use gnn_coder_model::{Compute, CrossEncoder, ModelFiles, RERANK_CONFIG_FILE};

#[derive(Parser, Debug)]
#[command(about = "Store trained GNN-Coder weights as int8 matrices with f32 scales")]
struct Args {
    /// Trained weights directory (head.json, head.safetensors, ...), as `gnn-coder train` writes.
    input: PathBuf,
    /// Output directory (created; may be the input).
    output: PathBuf,
    /// Matrices with fewer elements keep their dtype.
    #[arg(long, default_value_t = DEFAULT_MIN_ELEMENTS)]
    min_elements: usize,
    /// Matrices that int8 would store with a larger relative RMS error keep their dtype.
    #[arg(long, default_value_t = DEFAULT_MAX_RELATIVE_ERROR)]
    max_relative_error: f64,
    /// Also store the pretrained model's embedding tables, configuration and tokenizer from
    /// this directory (weights that fine-tune every layer then need nothing else).
    #[arg(long, value_name = "MODEL_DIR")]
    embeddings_from: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.input.join(RERANK_CONFIG_FILE).is_file() {
        return quantize_reranker(&args);
    }
    if !args.input.join(HEAD_CONFIG_FILE).is_file() {
        bail!(
            "{} holds no trained weights (no {HEAD_CONFIG_FILE})",
            args.input.display()
        );
    }
    // Refuses broken weights before anything is written.
    gnn_coder_model::read_head_config(&args.input)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let same = args.input.canonicalize()? == args.output.canonicalize()?;
    if !same {
        std::fs::copy(
            args.input.join(HEAD_CONFIG_FILE),
            args.output.join(HEAD_CONFIG_FILE),
        )
        .context("cannot copy head.json")?;
    }
    for file in [HEAD_WEIGHTS_FILE, TRANSFORMER_WEIGHTS_FILE] {
        let src = args.input.join(file);
        if !src.is_file() {
            continue;
        }
        let report = quantize_file(
            &src,
            &args.output.join(file),
            args.min_elements,
            args.max_relative_error,
        )?;
        println!(
            "{file}: {} -> {} bytes; {} matrices int8, {} tensors kept; relative RMS error {:.5}",
            report.bytes_before,
            report.bytes_after,
            report.quantized,
            report.kept,
            report.relative_rms_error
        );
    }
    if let Some(model) = &args.embeddings_from {
        gnn_coder_model::check_model_dir(model)?;
        let src = model.join(gnn_coder_model::MODEL_WEIGHTS_FILE);
        let mut raw = read_raw(&src)?;
        raw.tensors
            .retain(|name, t| name.starts_with("embeddings.") && t.is_float());
        raw.metadata.clear();
        let (out, report) = quantize_raw(raw, args.min_elements, args.max_relative_error);
        let dst = args.output.join(EMBEDDINGS_FILE);
        let bytes = write_atomically(&out, &dst)?;
        println!(
            "{EMBEDDINGS_FILE}: {bytes} bytes; {} matrices int8, {} tensors kept; relative RMS \
             error {:.5}",
            report.quantized, report.kept, report.relative_rms_error
        );
        for file in [
            gnn_coder_model::MODEL_CONFIG_FILE,
            gnn_coder_model::TOKENIZER_FILE,
        ] {
            std::fs::copy(model.join(file), args.output.join(file))
                .with_context(|| format!("cannot copy {file}"))?;
        }
    }
    gnn_coder_model::write_checksums(&args.output)?;
    Ok(())
}

/// A cross-encoder reranker: its layers as int8, its configuration and score head copied.
fn quantize_reranker(args: &Args) -> Result<()> {
    let model = args
        .embeddings_from
        .clone()
        .unwrap_or_else(gnn_coder_model::default_model_dir);
    // Refuses broken weights before anything is written.
    CrossEncoder::load(
        &ModelFiles::Dir(model.clone()),
        &ModelFiles::Dir(args.input.clone()),
        Compute::Kernels(gnn_coder_model::cpu::Precision::F32),
    )
    .with_context(|| format!("{} is not a loadable reranker", args.input.display()))?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    if args.input.canonicalize()? != args.output.canonicalize()? {
        for file in [RERANK_CONFIG_FILE, HEAD_WEIGHTS_FILE] {
            std::fs::copy(args.input.join(file), args.output.join(file))
                .with_context(|| format!("cannot copy {file}"))?;
        }
    }
    let report = quantize_file(
        &args.input.join(TRANSFORMER_WEIGHTS_FILE),
        &args.output.join(TRANSFORMER_WEIGHTS_FILE),
        args.min_elements,
        args.max_relative_error,
    )?;
    println!(
        "{TRANSFORMER_WEIGHTS_FILE}: {} -> {} bytes; {} matrices int8, {} tensors kept; relative \
         RMS error {:.5}",
        report.bytes_before,
        report.bytes_after,
        report.quantized,
        report.kept,
        report.relative_rms_error
    );
    gnn_coder_model::write_checksums(&args.output)?;
    Ok(())
}
