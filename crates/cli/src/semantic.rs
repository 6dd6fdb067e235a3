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

/// Name of the shipped weights directory (inside the checkout) and of the checksum file in
/// every weights directory.
pub const SHIPPED_WEIGHTS: &str = "weights/gnn-coder";
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// Which trained weights to use: `--weights DIR` (or `none` for the zero-shot transformer), else
/// `$GNN_CODER_WEIGHTS` (same forms), else the shipped `weights/gnn-coder` of the working
/// directory or of the checkout this binary was built from; `None` when there are none.
pub fn resolve_weights(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GNN_CODER_WEIGHTS").map(PathBuf::from));
    if let Some(dir) = chosen {
        if dir.as_os_str() == "none" {
            return Ok(None);
        }
        if !dir.join(gnn_coder_model::model::HEAD_CONFIG_FILE).is_file() {
            bail!(
                "{} holds no trained weights (no head.json); pass a directory written by                  `gnn-coder train` (its OUT/weights), or `none` for the zero-shot model",
                dir.display()
            );
        }
        verify_checksums(&dir)?;
        return Ok(Some(dir));
    }
    for dir in [
        PathBuf::from(SHIPPED_WEIGHTS),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(SHIPPED_WEIGHTS),
    ] {
        if dir.join(gnn_coder_model::model::HEAD_CONFIG_FILE).is_file() {
            verify_checksums(&dir)?;
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

fn sha256_hex(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Check the files listed in `dir/SHA256SUMS` (`sha256sum` format); a directory without the
/// file is accepted (weights of a local training run written by an older version).
pub fn verify_checksums(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKSUMS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((sum, file)) = line.split_once(char::is_whitespace) else {
            bail!("{}: malformed line {line:?}", path.display());
        };
        let file = file.trim().trim_start_matches('*');
        let actual = sha256_hex(&dir.join(file))?;
        if !actual.eq_ignore_ascii_case(sum.trim()) {
            bail!(
                "{}/{file} does not match its checksum in {CHECKSUMS_FILE} (corrupt or \
                 replaced weights; restore them with git or retrain)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Write `dir/SHA256SUMS` for the weight files of `dir`.
pub fn write_checksums(dir: &Path) -> Result<()> {
    let mut out = String::new();
    for f in [
        gnn_coder_model::model::HEAD_CONFIG_FILE,
        gnn_coder_model::model::HEAD_WEIGHTS_FILE,
        gnn_coder_model::model::TRANSFORMER_WEIGHTS_FILE,
    ] {
        let p = dir.join(f);
        if p.is_file() {
            out.push_str(&format!("{}  {f}\n", sha256_hex(&p)?));
        }
    }
    let path = dir.join(CHECKSUMS_FILE);
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Loads the embedder from `dir` with trained `weights` (None: zero-shot).
pub fn load_embedder(dir: &Path, weights: Option<&Path>) -> Result<Embedder> {
    let mut opts = EmbedderOptions::new(dir);
    opts.weights_dir = weights.map(Path::to_path_buf);
    let e = Embedder::load(&opts).with_context(|| match weights {
        Some(w) => format!(
            "cannot load the model from {} with the weights in {}",
            dir.display(),
            w.display()
        ),
        None => format!("cannot load the model from {}", dir.display()),
    })?;
    Ok(e)
}

/// What the index records about the model that made its vectors; trained weights are named by
/// the checksum of their head, so an index and a query model that differ are told apart.
pub fn embedding_info(embedder: &Embedder, weights: Option<&Path>) -> EmbeddingInfo {
    let head = match weights {
        Some(w) if embedder.is_trained() => {
            let sum = sha256_hex(&w.join(gnn_coder_model::model::HEAD_WEIGHTS_FILE))
                .unwrap_or_else(|_| "unknown".into());
            format!("trained:{}", &sum[..sum.len().min(12)])
        }
        _ => "untrained".to_string(),
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
