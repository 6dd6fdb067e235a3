//! Where the model's files are read from: a directory on disk, or the copy built into this
//! binary.
//!
//! # The built-in model
//!
//! An installed `gnn-coder` must work after the checkout it was built from is gone, so the
//! shipped model is compiled into the binary ([`ModelFiles::Bundled`], 28 MB, and the
//! cross-encoder reranker, [`ModelFiles::BundledRerank`], 10.8 MB): the v2.3 weights
//! of `weights/gnn-coder` (graph network, fusion and projection in `head.safetensors`, all six
//! fine-tuned MiniLM layers in `transformer.safetensors`) and what they still need of
//! all-MiniLM-L6-v2 (Apache-2.0, see `weights/gnn-coder/NOTICE`): its `config.json`, its
//! `tokenizer.json` and its embedding tables ([`EMBEDDINGS_FILE`]; the word table stored as
//! int8 with a scale per row, as the trained layers are). The bytes live in the binary's
//! read-only image, so the kernel maps them on demand rather than the loader reading files.
//! Nothing of MiniLM's own six layers is needed, because every one of them is replaced by a
//! fine-tuned layer; the zero-shot model (`--weights none`) and training still read the full
//! pretrained model from `models/all-MiniLM-L6-v2` (`scripts/fetch-model.sh`).
//!
//! A directory ([`ModelFiles::Dir`]) may hold either form: a full pretrained model
//! (`model.safetensors`) or the embeddings alone beside fine-tuned layers.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// The embedding tables of the pretrained transformer alone (word, position, token type and
/// their layer norm), enough when every encoder layer is fine-tuned.
pub const EMBEDDINGS_FILE: &str = "embeddings.safetensors";

/// Name of the built-in weights (the `weights/gnn-coder` they were compiled from).
pub const BUNDLED_VERSION: &str = "v2.3";

/// SHA-256 of the built-in `head.safetensors` (what an index records as the model's name).
pub const BUNDLED_HEAD_SHA256: &str = env!("GNN_CODER_BUNDLED_HEAD_SHA256");

macro_rules! bundled {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../weights/gnn-coder/", $name)))),*]
    };
}

/// The built-in files, by name.
static BUNDLE: &[(&str, &[u8])] = bundled!(
    "head.json",
    "head.safetensors",
    "transformer.safetensors",
    "embeddings.safetensors",
    "config.json",
    "tokenizer.json",
    "NOTICE",
);

/// The built-in cross-encoder reranker (`weights/gnn-coder-rerank`: its configuration, six
/// layers and score head; the embedding tables and tokenizer are the built-in model's).
static RERANK_BUNDLE: &[(&str, &[u8])] = &[
    (
        "rerank.json",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../weights/gnn-coder-rerank/rerank.json"
        )),
    ),
    (
        "transformer.safetensors",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../weights/gnn-coder-rerank/transformer.safetensors"
        )),
    ),
    (
        "head.safetensors",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../weights/gnn-coder-rerank/head.safetensors"
        )),
    ),
];

/// The shipped reranker's folder in a checkout.
pub const SHIPPED_RERANK_WEIGHTS: &str = "weights/gnn-coder-rerank";

/// The license notice of the built-in model (MiniLM's Apache-2.0 terms).
pub fn bundled_notice() -> &'static str {
    bundled_file("NOTICE")
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

fn bundled_file(name: &str) -> Option<&'static [u8]> {
    BUNDLE.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn bundled_rerank_file(name: &str) -> Option<&'static [u8]> {
    RERANK_BUNDLE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
}

/// Where a model's files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelFiles {
    /// A directory on disk.
    Dir(PathBuf),
    /// The copy compiled into this binary.
    Bundled,
    /// The cross-encoder reranker compiled into this binary ([`crate::rerank`]).
    BundledRerank,
}

impl From<PathBuf> for ModelFiles {
    fn from(dir: PathBuf) -> Self {
        ModelFiles::Dir(dir)
    }
}

impl From<&Path> for ModelFiles {
    fn from(dir: &Path) -> Self {
        ModelFiles::Dir(dir.to_path_buf())
    }
}

impl ModelFiles {
    /// The path a file is named by in messages (`(built in)/NAME` for the bundle).
    pub fn path(&self, name: &str) -> PathBuf {
        match self {
            ModelFiles::Dir(dir) => dir.join(name),
            ModelFiles::Bundled => Path::new("(built in)").join(name),
            ModelFiles::BundledRerank => Path::new("(built in)/rerank").join(name),
        }
    }

    /// Whether the file is there.
    pub fn has(&self, name: &str) -> bool {
        match self {
            ModelFiles::Dir(dir) => dir.join(name).is_file(),
            ModelFiles::Bundled => bundled_file(name).is_some(),
            ModelFiles::BundledRerank => bundled_rerank_file(name).is_some(),
        }
    }

    /// The file's bytes (borrowed from the binary for the bundle).
    pub fn read(&self, name: &str) -> Result<Cow<'static, [u8]>> {
        match self {
            ModelFiles::Dir(dir) => {
                let path = dir.join(name);
                std::fs::read(&path)
                    .map(Cow::Owned)
                    .map_err(|source| ModelError::Io { path, source })
            }
            ModelFiles::Bundled | ModelFiles::BundledRerank => {
                let file = match self {
                    ModelFiles::Bundled => bundled_file(name),
                    _ => bundled_rerank_file(name),
                };
                file.map(Cow::Borrowed)
                    .ok_or_else(|| ModelError::MissingModelFile {
                        path: self.path(name),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundle_is_the_shipped_weights() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
        for (name, bytes) in BUNDLE {
            assert_eq!(
                std::fs::read(dir.join(name)).expect("shipped file"),
                *bytes,
                "{name}"
            );
        }
        let rerank = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder-rerank");
        for (name, bytes) in RERANK_BUNDLE {
            assert_eq!(
                std::fs::read(rerank.join(name)).expect("shipped reranker file"),
                *bytes,
                "rerank {name}"
            );
        }
        let sum = crate::weights::sha256_hex(&dir.join("head.safetensors")).expect("hash");
        assert_eq!(sum, BUNDLED_HEAD_SHA256);
        assert!(bundled_notice().contains("Apache License"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = ModelFiles::Bundled.read("model.safetensors").unwrap_err();
        assert!(
            err.to_string().contains("(built in)/model.safetensors"),
            "{err}"
        );
        assert!(!ModelFiles::Bundled.has("model.safetensors"));
    }
}
