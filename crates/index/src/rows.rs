//! Vector rows: every distinct embedding input (a [`UnitKey`]) gets one row, appended once and
//! never rewritten.
//!
//! ```text
//! vectors/keys.bin   16 bytes per row: the row's UnitKey
//! vectors/rows.i8    int8 codes: 4 + dim bytes per row (f32 scale, little-endian, then dim
//!                    signed bytes)
//! vectors/rows.i4    int4 codes, instead of rows.i8: 4 + ceil(dim / 2) bytes per row
//! ```
//!
//! Which codes an index holds is chosen when it is created ([`VectorCodes`], the manifest's
//! `vector_encoding`) and never changes: the files only grow.
//!
//! - **int8** (the default): a vector `x` (L2-normalized) is stored as `q = round(127 * x / s)`
//!   with `s = max |x_i|`, and read back as `q * s / 127`: 388 bytes per 384-dimensional vector
//!   instead of 1,536 in f32, with an inner-product error far below the gaps between
//!   neighbouring scores (measured on dev in README.md).
//! - **int4**: `q = round(7 * x / s)` clamped to -7..7, with `s` = 2.5 times the vector's RMS
//!   (or `max |x_i|` when smaller): clipping the few largest coordinates costs less than the
//!   coarser steps a scale of `max |x_i|` would give the rest (relative squared error .0133
//!   against .0180 on dev's vectors). The row stores the scale `t` that reads the codes back
//!   (`q * t / 7`) with the norm of `x`. 196 bytes per 384 dimensions. The codes are packed in
//!   blocks of 32 dimensions, 16 bytes each: byte `j` holds dimension `j` in its low nibble and
//!   `j + 16` in its high one (a last, shorter block of `w` dimensions splits at `ceil(w / 2)`),
//!   so that both halves of a block meet the query's coordinates in order.
//!
//! Both files only grow. Index documents name their row, and a document is committed only after
//! the rows it names are on disk (fsync before the tantivy commit), so any prefix the files have
//! after a crash is consistent: a torn last row, or rows of uncommitted documents, are at worst
//! unused. The next writer cuts both files to the rows complete in both. Readers memory-map
//! the rows file and touch only rows their snapshot's documents name, all of which lie below
//! that cut.
//!
//! Rows are content-addressed, so the keys file doubles as the embedding cache: a refresh looks
//! every unit's key up and embeds only the misses. Rows of units that no longer exist stay
//! until the index is rebuilt (`gnn-coder index --rebuild`).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use gnn_coder_store::{Result, StoreError, UnitKey};

use crate::integrity::{BLOCK_BYTES, BlockSums, CHECKSUMS_FILE, Checksums, damaged, verify_blocks};

pub(crate) const VECTORS_DIR: &str = "vectors";
const KEYS_FILE: &str = "keys.bin";
const KEY_BYTES: usize = 16;

/// How an embedded index codes its vectors (chosen when it is created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorCodes {
    /// One signed byte per dimension and a per-vector scale (the default).
    #[default]
    Int8,
    /// Four bits per dimension and a per-vector scale: half the bytes of int8, for a small
    /// loss in semantic ranking (README.md, "How it grows").
    Int4,
}

impl VectorCodes {
    /// The name in the manifest's `vector_encoding` and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            VectorCodes::Int8 => "int8",
            VectorCodes::Int4 => "int4",
        }
    }

    /// The codes named `name`, if any.
    pub fn from_name(name: &str) -> Option<VectorCodes> {
        match name {
            "int8" => Some(VectorCodes::Int8),
            "int4" => Some(VectorCodes::Int4),
            _ => None,
        }
    }
}

impl std::fmt::Display for VectorCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The layout of an index's rows: dimension and codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowFormat {
    pub(crate) dim: usize,
    pub(crate) codes: VectorCodes,
}

impl RowFormat {
    pub(crate) fn new(dim: usize, codes: VectorCodes) -> RowFormat {
        RowFormat { dim, codes }
    }

    /// The rows file's name inside `vectors/`.
    pub(crate) fn file_name(self) -> &'static str {
        match self.codes {
            VectorCodes::Int8 => "rows.i8",
            VectorCodes::Int4 => "rows.i4",
        }
    }

    fn row_bytes(self) -> usize {
        match self.codes {
            VectorCodes::Int8 => 4 + self.dim,
            VectorCodes::Int4 => 4 + self.dim.div_ceil(2),
        }
    }

    /// Appends `x` coded to `out` (`x.len()` is the format's dimension).
    pub(crate) fn quantize(self, x: &[f32], out: &mut Vec<u8>) {
        match self.codes {
            VectorCodes::Int8 => quantize(x, out),
            VectorCodes::Int4 => quantize4(x, out),
        }
    }

    /// Inner product of a stored row with `q` (the same dimension).
    #[inline]
    pub(crate) fn dot(self, row: &[u8], q: &[f32]) -> f32 {
        match self.codes {
            VectorCodes::Int8 => dot_row(row, q),
            VectorCodes::Int4 => dot_row4(row, q),
        }
    }

    /// The vector a row stands for.
    pub(crate) fn dequantize(self, row: &[u8]) -> Vec<f32> {
        match self.codes {
            VectorCodes::Int8 => dequantize(row),
            VectorCodes::Int4 => dequantize4(row, self.dim),
        }
    }
}

/// The scale word at the start of a row.
fn scale_of(row: &[u8]) -> f32 {
    f32::from_le_bytes([row[0], row[1], row[2], row[3]])
}

/// The scale word of a row, or 1 where `s` is not a usable one.
fn usable_scale(s: f32) -> f32 {
    if s.is_finite() && s > 0.0 { s } else { 1.0 }
}

/// Appends `x` quantized to int8 to `out`.
fn quantize(x: &[f32], out: &mut Vec<u8>) {
    let s = usable_scale(x.iter().fold(0.0f32, |m, v| m.max(v.abs())));
    out.extend_from_slice(&s.to_le_bytes());
    let k = 127.0 / s;
    out.extend(x.iter().map(|v| {
        let q = (v * k).round();
        (if q.is_finite() {
            q.clamp(-127.0, 127.0)
        } else {
            0.0
        }) as i8 as u8
    }));
}

/// Dimensions per packed block of int4 codes (16 bytes).
const I4_BLOCK: usize = 32;

/// The int4 code of `v` at `k` steps per unit, as a nibble.
fn code4(v: f32, k: f32) -> u8 {
    let q = (v * k).round();
    let q = if q.is_finite() {
        q.clamp(-7.0, 7.0)
    } else {
        0.0
    };
    (q as i8 as u8) & 0x0f
}

/// The signed value of a nibble.
#[inline(always)]
fn nibble(b: u8) -> i8 {
    ((b << 4) as i8) >> 4
}

/// Appends `x` quantized to int4 to `out` (module docs).
fn quantize4(x: &[f32], out: &mut Vec<u8>) {
    let norm2: f32 = x.iter().map(|v| v * v).sum();
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let rms = (norm2 / x.len().max(1) as f32).sqrt();
    let s = usable_scale((2.5 * rms).min(max));
    let k = 7.0 / s;
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut codes2 = 0.0f32;
    for block in x.chunks(I4_BLOCK) {
        let half = block.len().div_ceil(2);
        for j in 0..half {
            let lo = code4(block[j], k);
            let hi = block.get(j + half).map_or(0, |v| code4(*v, k));
            codes2 += f32::from(nibble(lo)).powi(2) + f32::from(nibble(hi)).powi(2);
            out.push(lo | (hi << 4));
        }
    }
    // The stored scale gives the decoded vector the norm of `x`: rounding and clipping change
    // a vector's length by about a percent, enough to reorder near-ties between a cosine (the
    // approximate index's metric) and the inner product (the exact scan's).
    let stored = if codes2 > 0.0 && norm2.is_finite() {
        usable_scale(7.0 * norm2.sqrt() / codes2.sqrt())
    } else {
        s
    };
    out[start..start + 4].copy_from_slice(&stored.to_le_bytes());
}

/// Inner product of a stored int8 row with `q` (the same dimension).
#[inline]
fn dot_row(row: &[u8], q: &[f32]) -> f32 {
    let scale = scale_of(row) / 127.0;
    let body = &row[4..];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe { dot_i8_avx2(body, q) } * scale;
        }
    }
    dot_i8(body, q) * scale
}

#[inline(always)]
fn dot_i8(body: &[u8], q: &[f32]) -> f32 {
    // Sixteen independent lanes let the compiler vectorize the float sum.
    let mut lanes = [0.0f32; 16];
    let n = body.len().min(q.len());
    let (b, q) = (&body[..n], &q[..n]);
    let mut bc = b.chunks_exact(16);
    let mut qc = q.chunks_exact(16);
    for (bb, qq) in (&mut bc).zip(&mut qc) {
        for i in 0..16 {
            lanes[i] += f32::from(bb[i] as i8) * qq[i];
        }
    }
    let mut sum: f32 = lanes.iter().sum();
    for (x, y) in bc.remainder().iter().zip(qc.remainder()) {
        sum += f32::from(*x as i8) * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8_avx2(body: &[u8], q: &[f32]) -> f32 {
    dot_i8(body, q)
}

/// Inner product of a stored int4 row with `q` (the same dimension).
#[inline]
fn dot_row4(row: &[u8], q: &[f32]) -> f32 {
    let scale = scale_of(row) / 7.0;
    let body = &row[4..];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports the features the function was compiled for.
            return unsafe { dot_i4_avx2(body, q) } * scale;
        }
    }
    dot_i4(body, q) * scale
}

#[inline(always)]
fn dot_i4(body: &[u8], q: &[f32]) -> f32 {
    // Full blocks: the low nibbles meet q[0..16], the high ones q[16..32], each in sixteen
    // independent lanes the compiler vectorizes.
    let (mut lo, mut hi) = ([0.0f32; 16], [0.0f32; 16]);
    let full = (q.len() / I4_BLOCK).min(body.len() / 16);
    for (bb, qq) in body
        .chunks_exact(16)
        .zip(q.chunks_exact(I4_BLOCK))
        .take(full)
    {
        for i in 0..16 {
            lo[i] += f32::from(nibble(bb[i])) * qq[i];
            hi[i] += f32::from((bb[i] as i8) >> 4) * qq[16 + i];
        }
    }
    let mut sum: f32 = lo.iter().sum::<f32>() + hi.iter().sum::<f32>();
    // A last, shorter block.
    let (tail_q, tail_b) = (&q[full * I4_BLOCK..], body.get(full * 16..).unwrap_or(&[]));
    let half = tail_q.len().div_ceil(2);
    for (j, b) in tail_b.iter().take(half).enumerate() {
        sum += f32::from(nibble(*b)) * tail_q[j];
        if let Some(v) = tail_q.get(j + half) {
            sum += f32::from((*b as i8) >> 4) * v;
        }
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i4_avx2(body: &[u8], q: &[f32]) -> f32 {
    dot_i4(body, q)
}

fn dequantize(row: &[u8]) -> Vec<f32> {
    let scale = scale_of(row) / 127.0;
    row[4..]
        .iter()
        .map(|&b| f32::from(b as i8) * scale)
        .collect()
}

fn dequantize4(row: &[u8], dim: usize) -> Vec<f32> {
    let scale = scale_of(row) / 7.0;
    let mut out = vec![0.0f32; dim];
    let body = &row[4..];
    for (bi, block) in out.chunks_mut(I4_BLOCK).enumerate() {
        let half = block.len().div_ceil(2);
        for j in 0..half {
            let b = body.get(bi * 16 + j).copied().unwrap_or(0);
            block[j] = f32::from(nibble(b)) * scale;
            if let Some(v) = block.get_mut(j + half) {
                *v = f32::from((b as i8) >> 4) * scale;
            }
        }
    }
    out
}

/// The writer's side: the key map and pending appends.
pub(crate) struct RowWriter {
    dir: PathBuf,
    format: RowFormat,
    /// Rows durably on disk.
    durable: u32,
    pending_keys: Vec<u8>,
    pending_rows: Vec<u8>,
    map: HashMap<UnitKey, u32>,
    /// Block checksums of the durable rows and keys.
    row_sums: BlockSums,
    key_sums: BlockSums,
}

/// What the last writer of this process knew of the row files, handed to the next one by the
/// store: rebuilding the key map and the block sums from the files took most of a one-file
/// update on a large index. Valid while the committed record still says `rows` rows with these
/// key sums (only the lock holder appends, and the record changes with every commit).
pub(crate) struct CachedRows {
    rows: u32,
    keys_crc32: Vec<u32>,
    map: HashMap<UnitKey, u32>,
}

impl CachedRows {
    /// The key map of the rows `sums` records, read from `keys.bin` without the writer lock
    /// (for a process to build it before its first update: a million keys take about 150
    /// ms). The keys are checked against their recorded checksums; a writer that appended
    /// meanwhile makes the record differ, and a writer opened with a stale record rebuilds the
    /// map (see [`RowWriter::open_with`]).
    pub(crate) fn read(index_dir: &Path, sums: &Checksums) -> Result<CachedRows> {
        let path = index_dir.join(VECTORS_DIR).join(KEYS_FILE);
        let mut keys = Vec::new();
        fs::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut keys))
            .map_err(StoreError::io(&path))?;
        let want = sums.rows as usize * KEY_BYTES;
        short(&path, keys.len() as u64, sums.rows, KEY_BYTES)?;
        let keys = &keys[..want];
        verify_blocks(&path, keys, sums.block_bytes, &sums.keys_crc32, 0)?;
        Ok(CachedRows {
            rows: sums.rows,
            keys_crc32: sums.keys_crc32.clone(),
            map: key_map(keys),
        })
    }
}

/// Each key of `keys` (whole keys, in row order) to the first row holding it.
fn key_map(keys: &[u8]) -> HashMap<UnitKey, u32> {
    let mut map = HashMap::with_capacity(keys.len() / KEY_BYTES);
    for (row, k) in keys.chunks_exact(KEY_BYTES).enumerate() {
        let mut key = [0u8; KEY_BYTES];
        key.copy_from_slice(k);
        map.entry(UnitKey(key)).or_insert(row as u32);
    }
    map
}

/// Refuses a row file holding fewer than `rows` rows of `unit` bytes.
fn short(path: &Path, len: u64, rows: u32, unit: usize) -> Result<()> {
    let want = u64::from(rows) * unit as u64;
    if len < want {
        return Err(damaged(
            path,
            format!("it has {len} bytes but the committed index needs {want} ({rows} rows)"),
        ));
    }
    Ok(())
}

impl RowWriter {
    /// Opens the row files of `index_dir` for appending. `sums` is the last commit's record
    /// (`None` for an index written before checksums were recorded); `named` the number of
    /// rows the committed documents need (one past the highest row they name). Refuses files
    /// shorter than either, or failing their checksums, and cuts only a tail no commit names.
    pub(crate) fn open(
        index_dir: &Path,
        format: RowFormat,
        sums: Option<&Checksums>,
        named: u32,
    ) -> Result<RowWriter> {
        RowWriter::open_with(
            index_dir,
            format,
            sums,
            named,
            None,
            &mut RowsVerified::default(),
        )
    }

    /// [`RowWriter::open`] reusing what an earlier writer of this process knew (`cached`, when
    /// it still matches the record) and skipping the row blocks this process verified
    /// (`verified`, updated).
    pub(crate) fn open_with(
        index_dir: &Path,
        format: RowFormat,
        sums: Option<&Checksums>,
        named: u32,
        cached: Option<CachedRows>,
        verified: &mut RowsVerified,
    ) -> Result<RowWriter> {
        let dir = index_dir.join(VECTORS_DIR);
        fs::create_dir_all(&dir).map_err(StoreError::io(&dir))?;
        let keys_path = dir.join(KEYS_FILE);
        let rows_path = dir.join(format.file_name());
        let dim = format.dim;
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(p)
                .map_err(StoreError::io(p))
        };
        let mut keys_file = open(&keys_path)?;
        let rows_file = open(&rows_path)?;
        let mut keys = Vec::new();
        keys_file
            .read_to_end(&mut keys)
            .map_err(StoreError::io(&keys_path))?;
        let rows_len = rows_file
            .metadata()
            .map_err(StoreError::io(&rows_path))?
            .len();
        let rb = format.row_bytes();
        let complete = (keys.len() / KEY_BYTES).min((rows_len / rb as u64) as usize);
        let complete = u32::try_from(complete).map_err(|_| StoreError::Damaged {
            path: dir.clone(),
            reason: "more than 2^32 vector rows".into(),
        })?;
        if let Some(s) = sums
            && s.dim != Some(dim)
        {
            return Err(damaged(
                &index_dir.join(CHECKSUMS_FILE),
                format!("it records dimension {:?}, the manifest {dim}", s.dim),
            ));
        }
        // Rows a commit relies on: the recorded count, or (before checksums) the named ones.
        let needed = sums.map_or(named, |s| s.rows.max(named));
        short(&keys_path, keys.len() as u64, needed, KEY_BYTES)?;
        short(&rows_path, rows_len, needed, rb)?;
        // With a record, rows past it were never committed (written before a crash): cut them
        // too, they have no checksum.
        let cut = if sums.is_some() { needed } else { complete };
        let want_keys = cut as u64 * KEY_BYTES as u64;
        let want_rows = cut as u64 * rb as u64;
        if keys.len() as u64 != want_keys {
            keys_file
                .set_len(want_keys)
                .map_err(StoreError::io(&keys_path))?;
            keys.truncate(want_keys as usize);
        }
        if rows_len != want_rows {
            rows_file
                .set_len(want_rows)
                .map_err(StoreError::io(&rows_path))?;
        }
        let (row_sums, key_sums) = if want_rows == 0 {
            (BlockSums::default(), BlockSums::default())
        } else {
            // SAFETY: this process holds the writer lock; nobody else writes the file, and it
            // is only read within the length just set.
            let map =
                unsafe { memmap2::Mmap::map(&rows_file) }.map_err(StoreError::io(&rows_path))?;
            let bytes = map
                .get(..want_rows as usize)
                .ok_or_else(|| damaged(&rows_path, "it changed size while it was opened"))?;
            if let Some(s) = sums {
                // The recorded prefix (documents of a writer that did not record checksums may
                // name rows past it: those are checked for length only).
                let (r, k) = (s.rows as usize * rb, s.rows as usize * KEY_BYTES);
                let (Some(rows), Some(keys)) = (bytes.get(..r), keys.get(..k)) else {
                    return Err(damaged(&rows_path, "it is shorter than the committed rows"));
                };
                // Blocks this process verified are not read again (the file only grows).
                let from = if s.block_bytes == BLOCK_BYTES {
                    verified.blocks
                } else {
                    0
                };
                let full = verify_blocks(&rows_path, rows, s.block_bytes, &s.rows_crc32, from)?;
                if s.block_bytes == BLOCK_BYTES {
                    verified.blocks = verified.blocks.max(full);
                }
                verify_blocks(&keys_path, keys, s.block_bytes, &s.keys_crc32, 0)?;
            }
            match sums {
                // The recorded sums are those of the bytes just verified: only the partial last
                // block is kept to extend.
                Some(s) if s.block_bytes == BLOCK_BYTES && s.rows == cut => (
                    BlockSums::recorded(&s.rows_crc32, bytes),
                    BlockSums::recorded(&s.keys_crc32, &keys),
                ),
                _ => (BlockSums::of(bytes), BlockSums::of(&keys)),
            }
        };
        let reuse = cached.filter(|c| {
            sums.is_some_and(|s| s.rows == cut && c.rows == cut && c.keys_crc32 == s.keys_crc32)
        });
        let map = match reuse {
            Some(c) => c.map,
            None => key_map(&keys[..keys.len().min(cut as usize * KEY_BYTES)]),
        };
        Ok(RowWriter {
            dir,
            format,
            durable: cut,
            pending_keys: Vec::new(),
            pending_rows: Vec::new(),
            map,
            row_sums,
            key_sums,
        })
    }

    /// What the next writer of this process may reuse: `None` with rows not yet durable.
    pub(crate) fn into_cached(self) -> Option<CachedRows> {
        if !self.pending_keys.is_empty() {
            return None;
        }
        Some(CachedRows {
            rows: self.durable,
            keys_crc32: self.key_sums.all(),
            map: self.map,
        })
    }

    /// The record of the durable rows, for `checksums.json` (`base` holds the manifest's).
    pub(crate) fn checksums(&self, base: &Checksums) -> Checksums {
        Checksums {
            dim: Some(self.format.dim),
            rows: self.durable,
            block_bytes: BLOCK_BYTES,
            rows_crc32: self.row_sums.all(),
            keys_crc32: self.key_sums.all(),
            ..base.clone()
        }
    }

    pub(crate) fn lookup(&self, key: &UnitKey) -> Option<u32> {
        self.map.get(key).copied()
    }

    /// The row for `key`, appending `vector` when the key is new.
    pub(crate) fn insert(&mut self, key: UnitKey, vector: &[f32]) -> Result<u32> {
        if let Some(row) = self.lookup(&key) {
            return Ok(row);
        }
        if vector.len() != self.format.dim {
            return Err(StoreError::DimensionMismatch {
                path: self.dir.clone(),
                index: self.format.dim,
                query: vector.len(),
            });
        }
        let row = self.durable + (self.pending_keys.len() / KEY_BYTES) as u32;
        self.pending_keys.extend_from_slice(&key.0);
        self.format.quantize(vector, &mut self.pending_rows);
        self.map.insert(key, row);
        Ok(row)
    }

    /// Appends pending rows to both files and fsyncs them.
    pub(crate) fn sync(&mut self) -> Result<()> {
        if self.pending_keys.is_empty() {
            return Ok(());
        }
        for (name, bytes) in [
            (self.format.file_name(), &self.pending_rows),
            (KEYS_FILE, &self.pending_keys),
        ] {
            let path = self.dir.join(name);
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(StoreError::io(&path))?;
            f.write_all(bytes).map_err(StoreError::io(&path))?;
            f.sync_data().map_err(StoreError::io(&path))?;
        }
        self.durable += (self.pending_keys.len() / KEY_BYTES) as u32;
        self.row_sums.extend(&self.pending_rows);
        self.key_sums.extend(&self.pending_keys);
        self.pending_keys.clear();
        self.pending_rows.clear();
        Ok(())
    }

    /// Durable rows and their quantized bytes, for building the approximate index.
    pub(crate) fn durable_rows(&self) -> u32 {
        self.durable
    }
}

/// What a process verified of the rows file already (the file only grows; verified parts never
/// change).
#[derive(Debug, Default)]
pub(crate) struct RowsVerified {
    /// Full checksum blocks verified.
    pub(crate) blocks: usize,
    /// Rows whose scale was checked (indexes without checksums).
    pub(crate) scanned: u32,
}

/// The readers' side: the rows file memory-mapped.
pub(crate) struct RowReader {
    map: Option<memmap2::Mmap>,
    format: RowFormat,
    count: u32,
}

impl RowReader {
    /// Maps the rows file, verifying it against `sums` (the last commit's record): it must hold the
    /// recorded rows, and their blocks not verified yet must match their checksums. Without a
    /// record (an index written before them), every row's scale must be one `quantize` can
    /// write (finite, positive: a zeroed row has scale 0). `verified` is what this process
    /// checked before, updated.
    pub(crate) fn open(
        index_dir: &Path,
        format: RowFormat,
        sums: Option<&Checksums>,
        verified: &mut RowsVerified,
    ) -> Result<RowReader> {
        let path = index_dir.join(VECTORS_DIR).join(format.file_name());
        let rb = format.row_bytes();
        let recorded = sums.map_or(0, |s| s.rows);
        let empty = RowReader {
            map: None,
            format,
            count: 0,
        };
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && recorded == 0 => {
                return Ok(empty);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(damaged(
                    &path,
                    format!("it is missing ({recorded} rows were committed)"),
                ));
            }
            Err(e) => return Err(StoreError::io(&path)(e)),
        };
        let len = file.metadata().map_err(StoreError::io(&path))?.len();
        short(&path, len, recorded, rb)?;
        if len == 0 {
            return Ok(empty);
        }
        // SAFETY: the file only grows, and only rows below the length mapped here are read; a
        // writer cuts only a torn tail beyond every committed row (module docs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(StoreError::io(&path))?;
        let count = (map.len() / rb) as u32;
        if let Some(s) = sums {
            let end = recorded as usize * rb;
            let bytes = map
                .get(..end)
                .ok_or_else(|| damaged(&path, "it shrank while it was opened"))?;
            verified.blocks =
                verify_blocks(&path, bytes, s.block_bytes, &s.rows_crc32, verified.blocks)?;
        } else {
            for row in verified.scanned..count {
                let at = row as usize * rb;
                let scale = map
                    .get(at..at + 4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                if !scale.is_some_and(|s| s.is_finite() && s > 0.0) {
                    return Err(damaged(
                        &path,
                        format!("row {row} has no valid scale (bytes {at}..{})", at + rb),
                    ));
                }
            }
            verified.scanned = verified.scanned.max(count);
        }
        Ok(RowReader {
            map: Some(map),
            format,
            count,
        })
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn row(&self, row: u32) -> Option<&[u8]> {
        if row >= self.count {
            return None;
        }
        let rb = self.format.row_bytes();
        let start = row as usize * rb;
        self.map.as_ref().and_then(|m| m.get(start..start + rb))
    }

    pub(crate) fn dot(&self, row: u32, q: &[f32]) -> Option<f32> {
        self.row(row).map(|r| self.format.dot(r, q))
    }

    pub(crate) fn vector(&self, row: u32) -> Option<Vec<f32>> {
        self.row(row).map(|r| self.format.dequantize(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_dot_is_close() {
        let x: Vec<f32> = (0..384)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let x: Vec<f32> = x.iter().map(|v| v / n).collect();
        let q: Vec<f32> = x.iter().rev().copied().collect();
        let exact: f32 = x.iter().zip(&q).map(|(a, b)| a * b).sum();
        let mut row = Vec::new();
        quantize(&x, &mut row);
        assert_eq!(row.len(), 4 + 384);
        assert!((dot_row(&row, &q) - exact).abs() < 0.01);
        assert!((dot_row(&row, &x) - 1.0).abs() < 0.01);
        let back = dequantize(&row);
        assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() < 0.01));
    }

    /// A pseudo-random unit vector (xorshift) of `dim` dimensions.
    fn unit_vector(seed: u64, dim: usize) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
        v.into_iter().map(|a| a / n).collect()
    }

    /// int4 rows: the dot product is the one of the decoded vector, for full blocks of 32
    /// dimensions and shorter last ones (odd lengths included), and both are close to the
    /// exact one.
    #[test]
    fn int4_rows_decode_and_score_alike() {
        for dim in [1usize, 3, 7, 32, 33, 47, 64, 100, 384] {
            let f = RowFormat::new(dim, VectorCodes::Int4);
            for seed in 1..6u64 {
                let x = unit_vector(seed, dim);
                let q = unit_vector(seed + 100, dim);
                let mut row = Vec::new();
                f.quantize(&x, &mut row);
                assert_eq!(row.len(), f.row_bytes(), "dim {dim}");
                assert_eq!(row.len(), 4 + dim.div_ceil(2));
                let back = f.dequantize(&row);
                assert_eq!(back.len(), dim);
                let decoded: f32 = back.iter().zip(&q).map(|(a, b)| a * b).sum();
                let scored = f.dot(&row, &q);
                assert!(
                    (scored - decoded).abs() < 1e-4,
                    "dim {dim}: kernel {scored}, decoded {decoded}"
                );
                let exact: f32 = x.iter().zip(&q).map(|(a, b)| a * b).sum();
                // Steps of s / 7 with s <= 2.5 RMS: an error of a few hundredths at most.
                assert!(
                    (scored - exact).abs() < 0.08,
                    "dim {dim}: {scored} vs {exact}"
                );
                let self_score = f.dot(&row, &x);
                assert!((self_score - 1.0).abs() < 0.08, "dim {dim}: {self_score}");
            }
        }
    }

    /// The int4 layout of the module docs: the scale, then per block byte `j` = dimension `j`
    /// (low nibble) and `j + half` (high nibble), codes in -7..7, clipped at 2.5 RMS.
    #[test]
    fn int4_codes_are_laid_out_as_documented() {
        let f = RowFormat::new(5, VectorCodes::Int4);
        // RMS 1 (2.5 > max |x|, so the scale is max |x| = 2): codes round(7 x / 2).
        let x = [2.0f32, -1.0, 0.0, 0.5, -0.25];
        let mut row = Vec::new();
        f.quantize(&x, &mut row);
        // Codes 7, -4 (-3.5 rounds away from zero), 0, 2 (1.75), -1 (-0.875); half = 3:
        // bytes (7 | 2 << 4), (-4 | -1 << 4), (0 | 0).
        assert_eq!(&row[4..], &[0x27, 0xfc, 0x00]);
        // The stored scale reads them back with the norm of x: 7 |x| / |codes|.
        let s = scale_of(&row);
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        let want = 7.0 * norm / (49.0f32 + 16.0 + 4.0 + 1.0).sqrt();
        assert!((s - want).abs() < 1e-5, "scale {s}, want {want}");
        let back = f.dequantize(&row);
        let back_norm = back.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((back_norm - norm).abs() < 1e-5, "{back_norm} vs {norm}");
        // An outlier is clipped at 2.5 RMS rather than setting the scale: the rest keep
        // their steps.
        let mut y = vec![0.5f32; 64];
        y[5] = 10.0;
        let mut row = Vec::new();
        RowFormat::new(64, VectorCodes::Int4).quantize(&y, &mut row);
        assert_eq!(row[4 + 5] & 0x0f, 7, "the outlier takes the top code");
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 64.0).sqrt();
        let small = (0.5 * 7.0 / (2.5 * rms)).round() as u8;
        // (Scaled by max |y| = 10 they would all be 0.)
        assert!(small >= 1, "the others keep a nonzero code");
        assert_eq!(row[4] & 0x0f, small);
        // A zero vector keeps a usable scale and scores 0.
        let mut row = Vec::new();
        RowFormat::new(8, VectorCodes::Int4).quantize(&[0.0; 8], &mut row);
        assert_eq!(scale_of(&row), 1.0);
        assert_eq!(
            RowFormat::new(8, VectorCodes::Int4).dot(&row, &[1.0; 8]),
            0.0
        );
    }

    #[test]
    fn torn_tails_are_cut_and_keys_map_to_rows() {
        for codes in [VectorCodes::Int8, VectorCodes::Int4] {
            torn_tails_are_cut(RowFormat::new(4, codes));
        }
    }

    fn torn_tails_are_cut(f4: RowFormat) {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = RowWriter::open(tmp.path(), f4, None, 0).unwrap();
        let a = w.insert(UnitKey([1; 16]), &[1.0, 0.0, 0.0, 0.0]).unwrap();
        let b = w.insert(UnitKey([2; 16]), &[0.0, 1.0, 0.0, 0.0]).unwrap();
        assert_eq!((a, b), (0, 1));
        assert_eq!(
            w.insert(UnitKey([1; 16]), &[0.0; 4]).unwrap(),
            0,
            "cached key"
        );
        assert!(
            w.insert(UnitKey([3; 16]), &[0.0; 3]).is_err(),
            "wrong dimension"
        );
        w.sync().unwrap();
        // A torn append: half a row and a key without its row.
        let dir = tmp.path().join(VECTORS_DIR);
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join(f4.file_name()))
            .unwrap()
            .write_all(&[9; 3])
            .unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(dir.join(KEYS_FILE))
            .unwrap()
            .write_all(&[7; 16])
            .unwrap();
        let w = RowWriter::open(tmp.path(), f4, None, 2).unwrap();
        assert_eq!(w.durable_rows(), 2);
        assert_eq!(w.lookup(&UnitKey([2; 16])), Some(1));
        assert_eq!(w.lookup(&UnitKey([7; 16])), None);
        let r = RowReader::open(tmp.path(), f4, None, &mut RowsVerified::default()).unwrap();
        assert_eq!(r.count(), 2);
        assert!((r.dot(1, &[0.0, 1.0, 0.0, 0.0]).unwrap() - 1.0).abs() < 1e-6);
        assert!(r.dot(2, &[0.0; 4]).is_none());
    }
}
