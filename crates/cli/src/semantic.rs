//! The model side of the CLI: finding the model files, embedding units while indexing, and
//! embedding questions while searching.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use gnn_coder_index::EmbeddingInfo;
use gnn_coder_model::{Embedder, EmbedderOptions, UnitInput, check_model_dir};
use gnn_coder_syntax::AstGraph;

/// Where the pretrained model is looked for, in order.
pub fn model_dir_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(dir) = std::env::var_os("GNN_CODER_MODEL_DIR") {
        out.push(PathBuf::from(dir));
    }
    out.push(PathBuf::from("models/all-MiniLM-L6-v2"));
    // The checkout this binary was built from (`cargo install --path crates/cli` keeps it).
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2"));
    out
}

/// The first candidate directory that holds a complete model, or an error naming the fix.
pub fn find_model_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = model_dir_candidates(explicit);
    for dir in &candidates {
        if check_model_dir(dir).is_ok() {
            return Ok(dir.clone());
        }
    }
    let tried: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "the pretrained model (all-MiniLM-L6-v2) was not found; run scripts/fetch-model.sh in the \
         gnn-coder checkout, or point --model-dir / GNN_CODER_MODEL_DIR at it (looked in: {})",
        tried.join(", ")
    )
}

/// Loads the embedder from `dir`.
pub fn load_embedder(dir: &Path) -> Result<Embedder> {
    Embedder::load(&EmbedderOptions::new(dir))
        .with_context(|| format!("cannot load the model from {}", dir.display()))
}

/// What the index records about the model that made its vectors.
pub fn embedding_info(embedder: &Embedder) -> EmbeddingInfo {
    let head = if embedder.is_trained() {
        "trained"
    } else {
        "untrained"
    };
    EmbeddingInfo {
        model: format!("all-MiniLM-L6-v2+gnn-coder-head({head})"),
        dim: embedder.dim(),
        trained: embedder.is_trained(),
    }
}

/// A unit waiting to be embedded.
pub struct PendingUnit {
    pub id: u64,
    pub language: String,
    pub code: String,
    pub graph: Option<AstGraph>,
}

/// Embeds `units` (any order) and returns one row per id `0..units.len()`.
pub fn embed_units(
    embedder: &Embedder,
    mut units: Vec<PendingUnit>,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Vec<f32>>> {
    units.sort_by_key(|u| u.id);
    if units.iter().enumerate().any(|(i, u)| u.id != i as u64) {
        bail!("internal error: unit ids are not dense");
    }
    // Chunks large enough for good length bucketing, small enough for a lively progress bar.
    // burn's CPU kernels leave cores idle on these batch sizes, so chunks are embedded by one
    // worker per core; rows come back in id order.
    let chunks: Vec<&[PendingUnit]> = units.chunks(256).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Vec<Vec<f32>>>>> = Mutex::new(vec![None; chunks.len()]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    let inputs: Vec<UnitInput> = chunk
                        .iter()
                        .map(|u| UnitInput::new(&u.code, u.graph.as_ref(), &u.language))
                        .collect();
                    match embedder.embed_units(&inputs) {
                        Ok(rows) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(rows);
                            }
                            progress(done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len());
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e.into());
                            }
                            // Stop every worker.
                            next.store(chunks.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("an embedding worker panicked"))?;
    let mut rows = Vec::with_capacity(units.len());
    for chunk in results {
        rows.extend(chunk.context("an embedding worker stopped early")?);
    }
    Ok(rows)
}

/// Says once, on stderr, that the model's own weights are untrained.
pub fn warn_if_untrained(info: &EmbeddingInfo) {
    if !info.trained {
        eprintln!(
            "note: the GNN-Coder head is untrained; semantic scores come from the pretrained \
             MiniLM vectors alone (zero-shot)"
        );
    }
}
