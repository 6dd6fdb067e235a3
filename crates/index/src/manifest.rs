//! The index manifest (`gnn-coder.json`): format version and the model of the vectors. Written
//! once, when the index is created (atomically: the whole directory is built aside and renamed
//! into place), and read by every open.

use std::fs;
use std::io::Write;
use std::path::Path;

use gnn_coder_store::{EmbeddingInfo, Result, StoreError};

use crate::rows::{RowFormat, VectorCodes};
use serde::{Deserialize, Serialize};

/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "gnn-coder.json";

/// Version of the on-disk format this build reads and writes. Version 1 was the single-root,
/// rebuild-only layout of generations.
pub const FORMAT_VERSION: u32 = 2;

const FORMAT_NAME: &str = "gnn-coder-index";

/// The contents of `gnn-coder.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Version of gnn-coder that created the index.
    pub engine_version: String,
    /// Seconds since the Unix epoch when the index was created.
    pub created_unix: u64,
    /// The model whose vectors the index holds; `None` for a lexical-only index.
    #[serde(default)]
    pub embedding: Option<EmbeddingInfo>,
    /// How vectors are stored: `int8` (one signed byte per dimension and a per-vector scale)
    /// or `int4` (four bits per dimension): [`VectorCodes`].
    pub vector_encoding: String,
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Manifest {
    pub(crate) fn new(embedding: Option<EmbeddingInfo>, codes: VectorCodes) -> Manifest {
        Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix: now_unix(),
            embedding,
            vector_encoding: codes.name().to_string(),
        }
    }

    /// Reads and validates the manifest of the index at `dir`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !dir.exists() {
            return Err(StoreError::NotFound {
                path: dir.to_path_buf(),
                reason: "the directory does not exist".into(),
            });
        }
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound {
                    path: dir.to_path_buf(),
                    reason: format!("it has no {MANIFEST_FILE}, so it is not a gnn-coder index"),
                });
            }
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let bad = |reason: String| StoreError::Damaged {
            path: dir.to_path_buf(),
            reason: format!("{MANIFEST_FILE}: {reason}"),
        };
        // Check the version before the full schema, so that another format with other fields
        // gets the version message rather than a parse error.
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
            return Err(bad(format!("its \"format\" is not {FORMAT_NAME:?}")));
        }
        let found = value
            .get("format_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| bad("it has no numeric \"format_version\"".into()))?;
        if found != u64::from(FORMAT_VERSION) {
            return Err(StoreError::IncompatibleVersion {
                path: dir.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if VectorCodes::from_name(&manifest.vector_encoding).is_none() {
            return Err(bad(format!(
                "unknown vector encoding {:?}",
                manifest.vector_encoding
            )));
        }
        if manifest
            .embedding
            .as_ref()
            .is_some_and(|e| e.dim == 0 || e.dim > 65_536)
        {
            return Err(bad("bad vector dimension".into()));
        }
        Ok(manifest)
    }

    /// How the index codes its vectors (validated by [`Manifest::load`]).
    pub fn vector_codes(&self) -> VectorCodes {
        VectorCodes::from_name(&self.vector_encoding).unwrap_or_default()
    }

    /// The layout of the index's vector rows (`None` for a lexical-only index).
    pub(crate) fn row_format(&self) -> Option<RowFormat> {
        self.embedding
            .as_ref()
            .map(|e| RowFormat::new(e.dim, self.vector_codes()))
    }

    /// Writes the manifest into `dir` (temporary file, fsync, rename).
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir);
            Ok(())
        };
        write().map_err(StoreError::io(&path))
    }
}

/// Makes renames inside `dir` durable (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
