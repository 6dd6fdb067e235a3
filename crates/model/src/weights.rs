//! Finding the model files and our trained weights, checking them, and naming the result.
//!
//! One place for what the CLI, the engine and the trainer all need: where the pretrained
//! transformer is ([`find_model_dir`]), which trained weights apply ([`resolve_weights`]), that
//! they are the files their `SHA256SUMS` names ([`verify_checksums`]), and the identity an index
//! records so that vectors of different models are never compared ([`ModelIdentity`]).

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::embedder::{Embedder, EmbedderOptions, check_model_dir};
use crate::error::{ModelError, Result};
use crate::model::{HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, TRANSFORMER_WEIGHTS_FILE};

/// The shipped weights directory, relative to the checkout, and the checksum file name.
pub const SHIPPED_WEIGHTS: &str = "weights/gnn-coder";
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";

/// Which model to load: the pretrained directory and the trained weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChoice {
    /// `--model-dir`; `None`: `$GNN_CODER_MODEL_DIR`, `./models/all-MiniLM-L6-v2`, or the
    /// checkout's `models/` folder.
    pub model_dir: Option<PathBuf>,
    /// `--weights`; `None`: `$GNN_CODER_WEIGHTS` or the shipped weights; `Some("none")`: the
    /// zero-shot transformer.
    pub weights: Option<PathBuf>,
}

/// What produced a set of vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelIdentity {
    /// e.g. `all-MiniLM-L6-v2+gnn-coder-head(trained:1a2b3c4d5e6f)`.
    pub model: String,
    pub dim: usize,
    pub trained: bool,
}

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

/// The first candidate directory holding a complete pretrained model.
pub fn find_model_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let candidates = model_dir_candidates(explicit);
    for dir in &candidates {
        if check_model_dir(dir).is_ok() {
            return Ok(dir.clone());
        }
    }
    Err(ModelError::ModelNotFound { tried: candidates })
}

/// Which trained weights to use: `explicit` (or `none` for the zero-shot transformer), else
/// `$GNN_CODER_WEIGHTS` (same forms), else the shipped `weights/gnn-coder` of the working
/// directory or of the checkout this binary was built from; `None` when there are none. The
/// chosen directory's checksums are verified.
pub fn resolve_weights(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let chosen = explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("GNN_CODER_WEIGHTS").map(PathBuf::from));
    if let Some(dir) = chosen {
        if dir.as_os_str() == "none" {
            return Ok(None);
        }
        if !dir.join(HEAD_CONFIG_FILE).is_file() {
            return Err(ModelError::NotWeights { path: dir });
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
        if dir.join(HEAD_CONFIG_FILE).is_file() {
            verify_checksums(&dir)?;
            return Ok(Some(dir));
        }
    }
    Ok(None)
}

/// The SHA-256 of a file, as lowercase hex (what `SHA256SUMS` lists).
pub fn sha256_hex(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(format!("{:x}", sha2::Sha256::digest(&bytes)))
}

/// Checks the files listed in `dir/SHA256SUMS` (`sha256sum` format); a directory without the
/// file is accepted (weights of a local training run written by an older version).
pub fn verify_checksums(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKSUMS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(());
    };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((sum, file)) = line.split_once(char::is_whitespace) else {
            return Err(ModelError::Checksum {
                path: path.clone(),
                message: format!("malformed line {line:?}"),
            });
        };
        let file = file.trim().trim_start_matches('*');
        if file.contains('/') || file.contains("..") {
            return Err(ModelError::Checksum {
                path: path.clone(),
                message: format!("{file:?} is not a file of the weights directory"),
            });
        }
        let actual = sha256_hex(&dir.join(file))?;
        if !actual.eq_ignore_ascii_case(sum.trim()) {
            return Err(ModelError::Checksum {
                path: dir.join(file),
                message: format!(
                    "does not match its checksum in {CHECKSUMS_FILE} (corrupt or replaced weights)"
                ),
            });
        }
    }
    Ok(())
}

/// Writes `dir/SHA256SUMS` for the weight files of `dir`.
pub fn write_checksums(dir: &Path) -> Result<()> {
    let mut out = String::new();
    for f in [
        HEAD_CONFIG_FILE,
        HEAD_WEIGHTS_FILE,
        TRANSFORMER_WEIGHTS_FILE,
    ] {
        let p = dir.join(f);
        if p.is_file() {
            out.push_str(&format!("{}  {f}\n", sha256_hex(&p)?));
        }
    }
    let path = dir.join(CHECKSUMS_FILE);
    std::fs::write(&path, out).map_err(|source| ModelError::Io { path, source })
}

/// Loads the embedder of `choice`: the pretrained transformer plus the resolved weights.
pub fn load_embedder(choice: &ModelChoice) -> Result<(Embedder, ModelIdentity)> {
    let dir = find_model_dir(choice.model_dir.as_deref())?;
    let weights = resolve_weights(choice.weights.as_deref())?;
    let mut opts = EmbedderOptions::new(&dir);
    opts.weights_dir = weights.clone();
    opts.compute = crate::embedder::Compute::from_env()?;
    let embedder = Embedder::load(&opts)?;
    let identity = identity(&embedder, weights.as_deref())?;
    Ok((embedder, identity))
}

/// The identity of `embedder` loaded with `weights`: trained weights are named by the checksum
/// of their head, so an index and a query model that differ are told apart.
pub fn identity(embedder: &Embedder, weights: Option<&Path>) -> Result<ModelIdentity> {
    let head = match weights {
        Some(w) if embedder.is_trained() => {
            let sum = sha256_hex(&w.join(HEAD_WEIGHTS_FILE))?;
            format!("trained:{}", &sum[..sum.len().min(12)])
        }
        _ => "untrained".to_string(),
    };
    Ok(ModelIdentity {
        model: format!("all-MiniLM-L6-v2+gnn-coder-head({head})"),
        dim: embedder.dim(),
        trained: embedder.is_trained(),
    })
}
