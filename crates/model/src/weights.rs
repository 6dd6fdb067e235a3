//! Finding the model files and our trained weights, checking them, and naming the result.
//!
//! One place for what the CLI, the engine and the trainer all need: where the pretrained
//! transformer is ([`find_model_dir`]), which trained weights apply ([`resolve_weights`]), that
//! they are the files their `SHA256SUMS` names ([`verify_checksums`]), and the identity an index
//! records so that vectors of different models are never compared ([`ModelIdentity`]).

use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::embedder::{
    Embedder, EmbedderOptions, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE, TOKENIZER_FILE,
    check_model_dir,
};
use crate::error::{ModelError, Result};
use crate::files::{BUNDLED_HEAD_SHA256, EMBEDDINGS_FILE, ModelFiles};
use crate::model::{HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE, TRANSFORMER_WEIGHTS_FILE};
use crate::query::QueryEmbedder;
use crate::rerank::{CrossEncoder, RERANK_CONFIG_FILE};

/// The shipped weights directory, relative to the checkout, and the checksum file name.
pub const SHIPPED_WEIGHTS: &str = "weights/gnn-coder";
pub const CHECKSUMS_FILE: &str = "SHA256SUMS";
/// The license notice shipped with weights that carry parts of the pretrained model.
pub const NOTICE_FILE: &str = "NOTICE";

/// Which model to load: the pretrained directory and the trained weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelChoice {
    /// `--model-dir`; `None`: `$GNN_CODER_MODEL_DIR`, else the built-in copy (see
    /// [`resolve_model`]).
    pub model_dir: Option<PathBuf>,
    /// `--weights`; `None`: `$GNN_CODER_WEIGHTS` or the weights built into the binary;
    /// `Some("none")`: the zero-shot transformer.
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
        EMBEDDINGS_FILE,
        MODEL_CONFIG_FILE,
        TOKENIZER_FILE,
        NOTICE_FILE,
        RERANK_CONFIG_FILE,
    ] {
        let p = dir.join(f);
        if p.is_file() {
            out.push_str(&format!("{}  {f}\n", sha256_hex(&p)?));
        }
    }
    let path = dir.join(CHECKSUMS_FILE);
    std::fs::write(&path, out).map_err(|source| ModelError::Io { path, source })
}

/// The files a [`ModelChoice`] comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The pretrained transformer's files.
    pub model: ModelFiles,
    /// The trained weights; `None` for the zero-shot transformer (`--weights none`).
    pub weights: Option<ModelFiles>,
}

/// Whether `files` hold a usable pretrained transformer: the configuration, the tokenizer and
/// the whole model or (for weights that replace every layer) its embeddings.
fn has_transformer(files: &ModelFiles, embeddings_will_do: bool) -> bool {
    files.has(MODEL_CONFIG_FILE)
        && files.has(TOKENIZER_FILE)
        && (files.has(MODEL_WEIGHTS_FILE) || (embeddings_will_do && files.has(EMBEDDINGS_FILE)))
}

/// Which files `choice` means, without loading them.
///
/// Weights: `--weights DIR` (or `$GNN_CODER_WEIGHTS`), checked against its `SHA256SUMS`;
/// `none` for the zero-shot transformer; by default the weights built into the binary. There
/// is no silent fall-back to an untrained head: only `none` asks for one.
///
/// Transformer: `--model-dir DIR` (or `$GNN_CODER_MODEL_DIR`); else, with the built-in weights,
/// the built-in copy; else a weights directory that carries the transformer's files itself,
/// then `models/all-MiniLM-L6-v2` of the working directory or of the checkout this binary was
/// built from, then (for weights that fine-tune every layer) the built-in embeddings and
/// tokenizer. The zero-shot transformer needs the whole pretrained model
/// (`scripts/fetch-model.sh`); without it this is [`ModelError::ModelNotFound`].
pub fn resolve_model(choice: &ModelChoice) -> Result<ResolvedModel> {
    let weights_flag = choice
        .weights
        .clone()
        .or_else(|| std::env::var_os("GNN_CODER_WEIGHTS").map(PathBuf::from));
    let weights = match weights_flag {
        Some(dir) if dir.as_os_str() == "none" => None,
        Some(dir) => {
            if !dir.join(HEAD_CONFIG_FILE).is_file() {
                return Err(ModelError::NotWeights { path: dir });
            }
            verify_checksums(&dir)?;
            Some(ModelFiles::Dir(dir))
        }
        None => Some(ModelFiles::Bundled),
    };
    let model_flag = choice
        .model_dir
        .clone()
        .or_else(|| std::env::var_os("GNN_CODER_MODEL_DIR").map(PathBuf::from));
    let model = if let Some(dir) = model_flag {
        if !has_transformer(&ModelFiles::Dir(dir.clone()), weights.is_some()) {
            check_model_dir(&dir)?;
        }
        ModelFiles::Dir(dir)
    } else {
        match &weights {
            Some(ModelFiles::Bundled) => ModelFiles::Bundled,
            Some(w) if has_transformer(w, true) => w.clone(),
            _ => {
                let candidates = model_dir_candidates(None);
                match candidates.iter().find(|d| check_model_dir(d).is_ok()) {
                    Some(dir) => ModelFiles::Dir(dir.clone()),
                    None if weights.is_some() => ModelFiles::Bundled,
                    None => return Err(ModelError::ModelNotFound { tried: candidates }),
                }
            }
        }
    };
    Ok(ResolvedModel { model, weights })
}

/// Loads the embedder of `choice` (see [`resolve_model`]): the pretrained transformer plus the
/// trained weights.
pub fn load_embedder(choice: &ModelChoice) -> Result<(Embedder, ModelIdentity)> {
    let resolved = resolve_model(choice)?;
    let mut opts = EmbedderOptions::new(resolved.model.clone());
    opts.weights = resolved.weights.clone();
    opts.compute = crate::embedder::Compute::from_env()?;
    let embedder = Embedder::load(&opts)?;
    let identity = identity_of(&embedder, resolved.weights.as_ref())?;
    Ok((embedder, identity))
}

/// The light query-only model of `choice` (see [`crate::query`]), with its identity; `None`
/// when it cannot serve the choice (`--weights none`, `GNN_CODER_COMPUTE=burn`), where the
/// caller loads the full model with [`load_embedder`].
pub fn load_query_embedder(choice: &ModelChoice) -> Result<Option<QueryEmbedder>> {
    let resolved = resolve_model(choice)?;
    let opts = EmbedderOptions::new(resolved.model.clone());
    QueryEmbedder::load(
        &resolved.model,
        resolved.weights.as_ref(),
        crate::embedder::Compute::from_env()?,
        opts.max_tokens,
    )
}

/// The environment variable naming a reranker folder to use instead of the built-in one.
pub const RERANK_WEIGHTS_ENV: &str = "GNN_CODER_RERANK_WEIGHTS";

/// The cross-encoder reranker ([`crate::rerank`]) over the transformer files of `choice`:
/// `$GNN_CODER_RERANK_WEIGHTS` (a folder with `rerank.json`, checked against its
/// `SHA256SUMS`) or the one built into the binary.
pub fn load_reranker(choice: &ModelChoice) -> Result<CrossEncoder> {
    let resolved = resolve_model(choice)?;
    let rerank = match std::env::var_os(RERANK_WEIGHTS_ENV) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if !dir.join(RERANK_CONFIG_FILE).is_file() {
                return Err(ModelError::MissingModelFile {
                    path: dir.join(RERANK_CONFIG_FILE),
                });
            }
            verify_checksums(&dir)?;
            ModelFiles::Dir(dir)
        }
        _ => ModelFiles::BundledRerank,
    };
    CrossEncoder::load(
        &resolved.model,
        &rerank,
        crate::embedder::Compute::from_env()?,
    )
}

/// The identity of `embedder` loaded with `weights`, from a directory or built in: trained
/// weights are named by the checksum of their head (the same weights get the same name either
/// way, so an index built with the checkout's weights is searched by the binary's).
pub fn identity_of(embedder: &Embedder, weights: Option<&ModelFiles>) -> Result<ModelIdentity> {
    let sum = match weights {
        Some(w) if embedder.is_trained() => Some(head_sha256(w, None)?),
        _ => None,
    };
    Ok(name_weights(sum.as_deref(), embedder.dim()))
}

/// The SHA-256 (hex) of the `head.safetensors` of `weights`: the built-in one's is known at
/// build time; a directory's is computed from `bytes` when the caller has read them already,
/// else from the file.
pub(crate) fn head_sha256(weights: &ModelFiles, bytes: Option<&[u8]>) -> Result<String> {
    Ok(match (weights, bytes) {
        (ModelFiles::Bundled, _) => BUNDLED_HEAD_SHA256.to_string(),
        (ModelFiles::BundledRerank, _) => {
            return Err(ModelError::Config(
                "the built-in reranker is not bi-encoder weights".into(),
            ));
        }
        (ModelFiles::Dir(_), Some(b)) => format!("{:x}", sha2::Sha256::digest(b)),
        (ModelFiles::Dir(dir), None) => sha256_hex(&dir.join(HEAD_WEIGHTS_FILE))?,
    })
}

/// The one place that names a model: trained weights by the checksum of their head
/// (`trained_head_sha256`; `None` for an untrained head), so an index and a query model that
/// differ are told apart.
pub fn name_weights(trained_head_sha256: Option<&str>, dim: usize) -> ModelIdentity {
    let head = match trained_head_sha256 {
        Some(sum) => format!("trained:{}", &sum[..sum.len().min(12)]),
        None => "untrained".to_string(),
    };
    ModelIdentity {
        model: format!("all-MiniLM-L6-v2+gnn-coder-head({head})"),
        dim,
        trained: trained_head_sha256.is_some(),
    }
}
