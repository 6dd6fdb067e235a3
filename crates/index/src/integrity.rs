//! What is checked at open, so that a damaged index fails loudly instead of answering wrongly.
//!
//! `checksums.json` (beside the manifest) records, at every commit that wrote vector rows and
//! before tantivy's commit makes their documents visible: the number of committed vector rows,
//! the vector dimension, the CRC-32 of the manifest and a CRC-32 per 1 MiB block of the rows
//! file (`vectors/rows.i8`, or `rows.i4`) and `vectors/keys.bin` over exactly those rows. It is
//! written whole and renamed into place, so it is always one commit's record, never half of one.
//!
//! - The rows file is verified by every reader when a snapshot is taken: blocks already verified
//!   by this process are not read again (the file only grows, full blocks never change), so a
//!   process pays for the whole file once and afterwards only for what a commit appended.
//!   `keys.bin` (read by writers only) is verified when a writer opens it.
//! - Every reader also checks that the rows its committed documents name exist
//!   ([`max_named_row`]), which covers indexes written before `checksums.json` existed.
//! - tantivy's own files (`lexical/*`) end in a footer with a CRC-32; [`crate::store`] verifies
//!   each segment file once per process, before tantivy parses it.
//! - The approximate index (`vectors/ann-*.bin`) carries its own checksums (`gnn-coder-ann`); a
//!   damaged one is not an error but a slower search: readers scan exactly and the next writer
//!   deletes and rebuilds it from the rows.
//!
//! An index written before this file existed opens with the length checks and a scan of the
//! rows' scales (a zeroed row has scale 0, which `quantize` never writes); its next commit
//! writes `checksums.json`, so from then on it is fully checked.

use std::fs;
use std::io::Write;
use std::path::Path;

use gnn_coder_store::{Result, StoreError};
use serde::{Deserialize, Serialize};

use crate::manifest::{MANIFEST_FILE, sync_dir};

/// File name of the checksums record inside an index directory.
pub(crate) const CHECKSUMS_FILE: &str = "checksums.json";

/// Bytes per checksummed block.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;

const VERSION: u32 = 1;

/// The contents of `checksums.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checksums {
    pub(crate) version: u32,
    /// CRC-32 of `gnn-coder.json`.
    pub(crate) manifest_crc32: u32,
    /// Vector dimension (`None` for a lexical-only index).
    pub(crate) dim: Option<usize>,
    /// Committed vector rows: `rows.i8` and `keys.bin` hold at least these.
    pub(crate) rows: u32,
    pub(crate) block_bytes: usize,
    /// CRC-32 of each block of the first `rows` rows of `rows.i8`.
    pub(crate) rows_crc32: Vec<u32>,
    /// CRC-32 of each block of the first `rows` keys of `keys.bin`.
    pub(crate) keys_crc32: Vec<u32>,
}

/// The damaged-index error for `path`.
pub(crate) fn damaged(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl Checksums {
    /// Reads `checksums.json`; `None` when the index predates it.
    pub(crate) fn load(dir: &Path) -> Result<Option<Checksums>> {
        let path = dir.join(CHECKSUMS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let sums: Checksums = serde_json::from_slice(&bytes)
            .map_err(|e| damaged(&path, format!("it is not a valid checksums record: {e}")))?;
        if sums.version != VERSION || sums.block_bytes == 0 {
            return Err(damaged(
                &path,
                format!(
                    "unknown checksums version {} or block size {}",
                    sums.version, sums.block_bytes
                ),
            ));
        }
        let manifest = dir.join(MANIFEST_FILE);
        let text = fs::read(&manifest).map_err(StoreError::io(&manifest))?;
        if crc32fast::hash(&text) != sums.manifest_crc32 {
            return Err(damaged(
                &manifest,
                "its checksum does not match the one recorded at the last commit",
            ));
        }
        Ok(Some(sums))
    }

    /// Writes `checksums.json` (temporary file, fsync, rename).
    pub(crate) fn store(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CHECKSUMS_FILE);
        let tmp = dir.join(format!(".{CHECKSUMS_FILE}.tmp-{}", std::process::id()));
        let text = serde_json::to_vec(self).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir);
            Ok(())
        };
        write().map_err(StoreError::io(&path))
    }

    /// A record for `dir`'s manifest, without rows yet.
    pub(crate) fn new(dir: &Path, dim: Option<usize>) -> Result<Checksums> {
        let manifest = dir.join(MANIFEST_FILE);
        let text = fs::read(&manifest).map_err(StoreError::io(&manifest))?;
        Ok(Checksums {
            version: VERSION,
            manifest_crc32: crc32fast::hash(&text),
            dim,
            rows: 0,
            block_bytes: BLOCK_BYTES,
            rows_crc32: Vec::new(),
            keys_crc32: Vec::new(),
        })
    }
}

/// Verifies blocks `from..` of `bytes` (the checksummed prefix of a file) against `crcs`.
/// Returns the number of full blocks verified (for the next call's `from`).
pub(crate) fn verify_blocks(
    path: &Path,
    bytes: &[u8],
    block: usize,
    crcs: &[u32],
    from: usize,
) -> Result<usize> {
    let blocks = bytes.len().div_ceil(block);
    if crcs.len() != blocks {
        return Err(damaged(
            path,
            format!(
                "the checksums record has {} blocks for {} bytes",
                crcs.len(),
                bytes.len()
            ),
        ));
    }
    for (i, want) in crcs.iter().enumerate().skip(from) {
        let start = i * block;
        let end = (start + block).min(bytes.len());
        if crc32fast::hash(&bytes[start..end]) != *want {
            return Err(damaged(
                path,
                format!("bytes {start}..{end} do not match their checksum"),
            ));
        }
    }
    Ok(bytes.len() / block)
}

/// Block checksums of a growing file: full blocks are final, the last partial one is kept to
/// extend.
#[derive(Debug, Default)]
pub(crate) struct BlockSums {
    pub(crate) full: Vec<u32>,
    tail: Vec<u8>,
}

impl BlockSums {
    /// The sums of `bytes` (a whole prefix).
    pub(crate) fn of(bytes: &[u8]) -> BlockSums {
        let mut s = BlockSums::default();
        s.extend(bytes);
        s
    }

    /// The sums of `bytes` from a record already checked against them (`crcs` holds one per
    /// block, the partial last one included): only the partial last block is read.
    pub(crate) fn recorded(crcs: &[u32], bytes: &[u8]) -> BlockSums {
        let full = bytes.len() / BLOCK_BYTES;
        BlockSums {
            full: crcs[..full.min(crcs.len())].to_vec(),
            tail: bytes[full * BLOCK_BYTES..].to_vec(),
        }
    }

    pub(crate) fn extend(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (BLOCK_BYTES - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() == BLOCK_BYTES {
                self.full.push(crc32fast::hash(&self.tail));
                self.tail.clear();
            }
        }
    }

    /// Every block's sum, the partial last one included.
    pub(crate) fn all(&self) -> Vec<u32> {
        let mut v = self.full.clone();
        if !self.tail.is_empty() {
            v.push(crc32fast::hash(&self.tail));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sums_extend_like_a_whole_hash() {
        let data: Vec<u8> = (0..(BLOCK_BYTES * 2 + 123))
            .map(|i| (i * 7) as u8)
            .collect();
        let whole = BlockSums::of(&data).all();
        let mut parts = BlockSums::default();
        for chunk in data.chunks(100_003) {
            parts.extend(chunk);
        }
        assert_eq!(parts.all(), whole);
        assert_eq!(whole.len(), 3);
        let p = Path::new("x");
        assert_eq!(verify_blocks(p, &data, BLOCK_BYTES, &whole, 0).unwrap(), 2);
        let mut bad = data.clone();
        bad[BLOCK_BYTES + 5] ^= 1;
        assert!(verify_blocks(p, &bad, BLOCK_BYTES, &whole, 0).is_err());
        assert!(
            verify_blocks(p, &bad, BLOCK_BYTES, &whole, 2).is_ok(),
            "skips verified"
        );
        assert!(verify_blocks(p, &data[..10], BLOCK_BYTES, &whole, 0).is_err());
    }
}
