//! The on-disk envelope: a fixed 64-byte little-endian header followed by the USearch payload.
//!
//! ```text
//! offset size field
//!      0    8 magic            b"GNNCANN\0"
//!      8    4 format version   u32 (FORMAT_VERSION)
//!     12    4 dim              u32
//!     16    8 count            u64 (vectors in the graph)
//!     24    4 m                u32 (AnnParams::m)
//!     28    4 ef_construction  u32
//!     32    4 ef_search        u32 (the index's default ef)
//!     36    1 vector encoding  u8  (1 = int8, per-vector max-abs scale, cosine metric;
//!                                  2 = the same codes, left out of the file: see below)
//!     37    3 reserved         zero
//!     40    8 payload length   u64 (= file length - 64)
//!     48    4 payload crc32    u32 (crc32 / IEEE of the payload bytes)
//!     52    8 reserved         zero
//!     60    4 header crc32     u32 (crc32 of bytes 0..60)
//!     64    - payload          encoding 1: USearch's `save_to_buffer` image;
//!                              encoding 2: see below; empty when count == 0
//! ```
//!
//! USearch's image starts with its vector matrix: `u32` rows, `u32` bytes per row, then each
//! slot's codes in slot order, followed by its own header and the graph. Encoding 2 replaces
//! that matrix by what rebuilds it from the caller's vectors:
//!
//! ```text
//!      0    4 matrix crc32     u32 (crc32 of the left-out matrix's codes)
//!      4  4 n slot ids         u32 each: the id whose vector fills slot i
//!   4+4n    - the image after the matrix (USearch's header and graph)
//! ```
//!
//! Every field is checked on load before the payload is handed to USearch, so a truncated,
//! bit-flipped or foreign file is rejected with an error rather than parsed.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const MAGIC: [u8; 8] = *b"GNNCANN\0";
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;
/// Vector encoding id stored in the header: int8 codes, per-vector max-abs scale, cosine metric.
pub(crate) const ENCODING_I8_COS: u8 = 1;
/// The same codes, not stored: the loader recomputes them from the caller's vectors.
pub(crate) const ENCODING_I8_COS_EXTERNAL: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub dim: u32,
    pub count: u64,
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
    pub encoding: u8,
    pub payload_len: u64,
    pub payload_crc: u32,
}

/// Why a file was rejected; turned into `AnnError::Corrupt` / `AnnError::Version` by the caller.
#[derive(Debug)]
pub(crate) enum DecodeError {
    Corrupt(String),
    Version(u32),
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&self.dim.to_le_bytes());
        h[16..24].copy_from_slice(&self.count.to_le_bytes());
        h[24..28].copy_from_slice(&self.m.to_le_bytes());
        h[28..32].copy_from_slice(&self.ef_construction.to_le_bytes());
        h[32..36].copy_from_slice(&self.ef_search.to_le_bytes());
        h[36] = self.encoding;
        h[40..48].copy_from_slice(&self.payload_len.to_le_bytes());
        h[48..52].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Splits `bytes` (a whole file) into its header and verified payload.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
        let corrupt = |s: &str| DecodeError::Corrupt(s.to_owned());
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Corrupt(format!(
                "file is {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        let h = &bytes[..HEADER_LEN];
        if h[0..8] != MAGIC {
            return Err(corrupt("bad magic (not a gnn-coder ANN file)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[o..o + 8]);
            u64::from_le_bytes(b)
        };
        if crc32fast::hash(&h[..60]) != u32_at(60) {
            return Err(corrupt("header checksum mismatch"));
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        let header = Header {
            dim: u32_at(12),
            count: u64_at(16),
            m: u32_at(24),
            ef_construction: u32_at(28),
            ef_search: u32_at(32),
            encoding: h[36],
            payload_len: u64_at(40),
            payload_crc: u32_at(48),
        };
        if h[37..40].iter().chain(&h[52..60]).any(|&b| b != 0) {
            return Err(corrupt("reserved header bytes are not zero"));
        }
        if header.encoding != ENCODING_I8_COS && header.encoding != ENCODING_I8_COS_EXTERNAL {
            return Err(DecodeError::Corrupt(format!(
                "unknown vector encoding {}",
                header.encoding
            )));
        }
        let payload = &bytes[HEADER_LEN..];
        if payload.len() as u64 != header.payload_len {
            return Err(DecodeError::Corrupt(format!(
                "payload is {} bytes, header says {} (truncated or appended file)",
                payload.len(),
                header.payload_len
            )));
        }
        if crc32fast::hash(payload) != header.payload_crc {
            return Err(corrupt("payload checksum mismatch"));
        }
        if (header.count == 0) != payload.is_empty() {
            return Err(corrupt("payload length does not match the vector count"));
        }
        Ok((header, payload))
    }
}

/// Writes `header` + `payload` to `path` atomically: a temporary file in the same directory,
/// `fsync`, `rename` over `path`, then `fsync` of the directory (Unix). Readers see either the
/// old file or the complete new one, never a partial write.
pub(crate) fn write_atomic(path: &Path, header: &[u8], payload: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name")
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(header)?;
        f.write_all(payload)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            dim: 4,
            count: 1,
            m: 16,
            ef_construction: 128,
            ef_search: 64,
            encoding: ENCODING_I8_COS,
            payload_len: 3,
            payload_crc: crc32fast::hash(b"abc"),
        }
    }

    #[test]
    fn round_trip_and_every_single_bit_flip_is_caught() {
        let mut file = header().encode().to_vec();
        file.extend_from_slice(b"abc");
        let (h, p) = Header::decode(&file).unwrap();
        assert_eq!(h, header());
        assert_eq!(p, b"abc");
        for byte in 0..file.len() {
            for bit in 0..8 {
                let mut bad = file.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    Header::decode(&bad).is_err(),
                    "flip at byte {byte} bit {bit} accepted"
                );
            }
        }
        for len in 0..file.len() {
            assert!(
                Header::decode(&file[..len]).is_err(),
                "truncation to {len} accepted"
            );
        }
    }
}
