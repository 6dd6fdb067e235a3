//! Unit vectors for semantic search, stored beside the lexical index in each generation.
//!
//! ```text
//! gen-NNNNNN/
//!   units.json     compact per-unit metadata by id: language, kind, path (for filtering
//!                  vector hits without touching tantivy)
//!   vectors.f32    `count x dim` little-endian f32, row `i` = unit id `i`, L2-normalized
//! ```
//!
//! Search is an exact scan (dot products over all rows): at 384 dimensions that is about 0.4 ms
//! per 1,000 units on one core, fine for a repository; an ANN index comes with scale-out.

use std::fs;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use globset::GlobMatcher;
use serde::{Deserialize, Serialize};

use crate::{IndexError, Result};

pub(crate) const UNITS_FILE: &str = "units.json";
pub(crate) const VECTORS_FILE: &str = "vectors.f32";

/// Which model produced an index's vectors; recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingInfo {
    /// Model name and version, e.g. `gnn-coder/all-MiniLM-L6-v2+head`.
    pub model: String,
    pub dim: usize,
    /// Whether the model's own (graph, projection) weights were trained.
    pub trained: bool,
}

/// Per-unit metadata by id, with strings interned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct UnitTable {
    pub languages: Vec<String>,
    pub kinds: Vec<String>,
    pub paths: Vec<String>,
    /// `[language, kind, path]` indices, by unit id.
    pub units: Vec<[u32; 3]>,
    #[serde(skip)]
    lookup: std::collections::HashMap<String, u32>,
}

fn intern(
    table: &mut Vec<String>,
    lookup: &mut std::collections::HashMap<String, u32>,
    prefix: char,
    s: &str,
) -> u32 {
    let key = format!("{prefix}{s}");
    if let Some(&i) = lookup.get(&key) {
        return i;
    }
    let i = table.len() as u32;
    table.push(s.to_string());
    lookup.insert(key, i);
    i
}

impl UnitTable {
    /// Appends a unit and returns its id.
    pub fn push(&mut self, language: &str, kind: &str, path: &str) -> u64 {
        let l = intern(&mut self.languages, &mut self.lookup, 'l', language);
        let k = intern(&mut self.kinds, &mut self.lookup, 'k', kind);
        let p = intern(&mut self.paths, &mut self.lookup, 'p', path);
        self.units.push([l, k, p]);
        (self.units.len() - 1) as u64
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(UNITS_FILE);
        let f = fs::File::create(&path).map_err(IndexError::io(&path))?;
        let mut w = BufWriter::new(f);
        serde_json::to_writer(&mut w, self).map_err(|e| IndexError::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        w.flush().map_err(IndexError::io(&path))?;
        w.get_ref().sync_all().map_err(IndexError::io(&path))
    }

    pub fn load(dir: &Path) -> Result<UnitTable> {
        let path = dir.join(UNITS_FILE);
        let text = fs::read(&path).map_err(IndexError::io(&path))?;
        let table: UnitTable =
            serde_json::from_slice(&text).map_err(|e| IndexError::BadManifest {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let (nl, nk, np) = (
            table.languages.len() as u32,
            table.kinds.len() as u32,
            table.paths.len() as u32,
        );
        if table
            .units
            .iter()
            .any(|&[l, k, p]| l >= nl || k >= nk || p >= np)
        {
            return Err(IndexError::BadManifest {
                path,
                reason: "a unit refers to a missing language, kind or path".into(),
            });
        }
        Ok(table)
    }

    /// A predicate over unit ids for the request's filters.
    pub fn filter(
        &self,
        languages: &[String],
        kinds: &[String],
        glob: Option<&GlobMatcher>,
    ) -> impl Fn(usize) -> bool + '_ {
        let allow = |names: &[String], wanted: &[String]| -> Option<Vec<bool>> {
            (!wanted.is_empty()).then(|| names.iter().map(|n| wanted.contains(n)).collect())
        };
        let lang_ok = allow(&self.languages, languages);
        let kind_ok = allow(&self.kinds, kinds);
        let path_ok: Option<Vec<bool>> =
            glob.map(|g| self.paths.iter().map(|p| g.is_match(p)).collect());
        move |id: usize| {
            let Some(&[l, k, p]) = self.units.get(id) else {
                return false;
            };
            lang_ok.as_ref().is_none_or(|ok| ok[l as usize])
                && kind_ok.as_ref().is_none_or(|ok| ok[k as usize])
                && path_ok.as_ref().is_none_or(|ok| ok[p as usize])
        }
    }
}

/// Writes `rows` (row `i` = unit `i`) to `dir/vectors.f32`.
pub(crate) fn write_vectors(dir: &Path, dim: usize, rows: &[Vec<f32>]) -> Result<()> {
    let path = dir.join(VECTORS_FILE);
    if let Some((i, _)) = rows.iter().enumerate().find(|(_, r)| r.len() != dim) {
        return Err(IndexError::Io {
            path,
            source: std::io::Error::other(format!("vector {i} does not have {dim} dimensions")),
        });
    }
    let f = fs::File::create(&path).map_err(IndexError::io(&path))?;
    let mut w = BufWriter::new(f);
    for row in rows {
        for x in row {
            w.write_all(&x.to_le_bytes())
                .map_err(IndexError::io(&path))?;
        }
    }
    w.flush().map_err(IndexError::io(&path))?;
    w.get_ref().sync_all().map_err(IndexError::io(&path))
}

/// All vectors of an index, in memory.
pub(crate) struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn load(dir: &Path, dim: usize, count: usize) -> Result<Vectors> {
        let path = dir.join(VECTORS_FILE);
        let mut bytes = Vec::new();
        fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(IndexError::io(&path))?;
        if dim == 0 || bytes.len() != dim * count * 4 {
            return Err(IndexError::BadManifest {
                path,
                reason: format!(
                    "{} bytes, expected {count} vectors of {dim} f32 ({} bytes)",
                    bytes.len(),
                    dim * count * 4
                ),
            });
        }
        let data = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Vectors { dim, data })
    }

    /// Dot product of `query` with every row.
    pub fn scores(&self, query: &[f32]) -> Vec<f32> {
        self.data
            .chunks_exact(self.dim)
            .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// Ids of the `k` best `scores` among those passing `keep`, best first.
pub(crate) fn top_k(scores: &[f32], k: usize, keep: impl Fn(usize) -> bool) -> Vec<(usize, f32)> {
    let mut cands: Vec<(usize, f32)> = scores
        .iter()
        .enumerate()
        .filter(|&(i, s)| keep(i) && s.is_finite())
        .map(|(i, &s)| (i, s))
        .collect();
    let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if cands.len() > k && k > 0 {
        cands.select_nth_unstable_by(k - 1, by_score);
        cands.truncate(k);
    }
    cands.sort_by(by_score);
    cands.truncate(k);
    cands
}
