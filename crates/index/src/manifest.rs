//! The index manifest (`gnn-coder.json`) and the generation switch that makes builds crash-safe.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{IndexError, Result};

/// File name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "gnn-coder.json";

/// Version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

const FORMAT_NAME: &str = "gnn-coder-index";

/// What a build saw; stored in the manifest and shown by the CLI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildStats {
    pub files: u64,
    pub units: u64,
    pub bytes: u64,
    /// Files skipped, by reason (`"binary"`, `"too large"`, ...).
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub seconds: f64,
}

/// The contents of `gnn-coder.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// Version of gnn-coder that wrote the index.
    pub engine_version: String,
    /// Name of the live generation directory.
    pub generation: String,
    /// Absolute path of the indexed root; result paths are relative to it.
    pub root: String,
    /// Seconds since the Unix epoch when the build finished.
    pub created_unix: u64,
    pub stats: BuildStats,
    /// The model whose vectors the index holds; `None` for a lexical-only index.
    #[serde(default)]
    pub embedding: Option<crate::EmbeddingInfo>,
}

impl Manifest {
    pub(crate) fn new(generation: String, root: String, stats: BuildStats) -> Manifest {
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Manifest {
            format: FORMAT_NAME.to_string(),
            format_version: FORMAT_VERSION,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            generation,
            root,
            created_unix,
            stats,
            embedding: None,
        }
    }

    /// Reads and validates the manifest of the index at `dir`.
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        if !dir.exists() {
            return Err(IndexError::NotFound {
                path: dir.to_path_buf(),
                reason: "the directory does not exist (build one with `gnn-coder index ROOT`)"
                    .into(),
            });
        }
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(IndexError::NotFound {
                    path: dir.to_path_buf(),
                    reason: format!("it has no {MANIFEST_FILE}, so it is not a gnn-coder index"),
                });
            }
            Err(e) => return Err(IndexError::io(&path)(e)),
        };
        let bad = |reason: String| IndexError::BadManifest {
            path: path.clone(),
            reason,
        };
        // Check the version before the full schema, so that a future format with other fields
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
            return Err(IndexError::IncompatibleVersion {
                path: dir.to_path_buf(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
                expected: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if !is_generation_name(&manifest.generation) {
            return Err(bad(format!(
                "bad generation name {:?}",
                manifest.generation
            )));
        }
        Ok(manifest)
    }

    /// Atomically replaces the manifest of `dir` with this one.
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let tmp = dir.join(format!(".{MANIFEST_FILE}.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| IndexError::BadManifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        };
        write().map_err(IndexError::io(&path))
    }

    /// Directory of the live generation.
    pub fn generation_dir(&self, dir: &Path) -> PathBuf {
        dir.join(&self.generation)
    }
}

pub(crate) fn is_generation_name(name: &str) -> bool {
    name.strip_prefix("gen-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates a fresh, empty generation directory in the index directory `dir` (which the caller
/// has checked is an index or empty) and returns its name and path.
pub(crate) fn new_generation(dir: &Path) -> Result<(String, PathBuf)> {
    let mut highest = 0u64;
    for entry in fs::read_dir(dir).map_err(IndexError::io(dir))? {
        let entry = entry.map_err(IndexError::io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_generation_name(&name)
            && let Ok(n) = name[4..].parse::<u64>()
        {
            highest = highest.max(n);
        }
    }
    let name = format!("gen-{:06}", highest + 1);
    let path = dir.join(&name);
    fs::create_dir(&path).map_err(IndexError::io(&path))?;
    Ok((name, path))
}

/// Removes every generation directory but `live` (leftovers of replaced or crashed builds).
pub(crate) fn remove_stale_generations(dir: &Path, live: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_generation_name(&name) && name != live {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
