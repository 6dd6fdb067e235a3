//! The approximate nearest-neighbour index over vector rows (placeholder until the HNSW crate
//! is wired in: every search scans exactly).

use std::path::{Path, PathBuf};

use gnn_coder_store::{CancellationToken, Result};

use crate::rows::RowReader;

/// A loaded approximate index covering rows `0..covered`.
pub(crate) struct AnnState {
    pub(crate) covered: u32,
}

impl AnnState {
    pub(crate) fn load(_path: &Path) -> Result<AnnState> {
        Ok(AnnState { covered: 0 })
    }

    pub(crate) fn search(&self, _q: &[f32], _k: usize, _keep: &dyn Fn(u32) -> bool) -> Vec<(u32, f32)> {
        Vec::new()
    }
}

pub(crate) fn newest(_dir: &Path, _rows: u32) -> Option<(u32, PathBuf)> {
    None
}

pub(crate) fn needs_rebuild(_covered: u32, _rows: u32) -> bool {
    false
}

pub(crate) fn build_and_save(
    _dir: &Path,
    _rows: &RowReader,
    _count: u32,
    _cancel: &CancellationToken,
) -> Result<()> {
    Ok(())
}
