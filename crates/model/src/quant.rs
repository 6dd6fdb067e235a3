//! Int8 storage of trained weights.
//!
//! The shipped weights are mostly large matrices: six fine-tuned MiniLM layers and the head's
//! node-kind table. Stored as f16 they come to about 30 MB; stored as symmetric int8 with one f32
//! scale per row or per column they take half of that, and the model computes in f32 either way.
//!
//! # Format
//! Still a plain safetensors file, so any safetensors reader can open it. A quantized tensor
//! `NAME` is stored with dtype `I8`, and beside it `NAME.scale` (`F32`) of the same rank whose
//! every dimension is 1 or `NAME`'s: the value of an element is `q * scale`, the scale taken by
//! broadcasting. Every other tensor keeps its float dtype. [`quantize_file`] picks, for each
//! matrix, the row or column scales whichever reconstructs it with the smaller squared error
//! (per output column suits a linear layer, per row the node-kind table).
//!
//! # Loading
//! The weight loader reads each file once through [`read_raw`], dequantizes its `I8` tensors to
//! f32 in memory ([`RawFile::dequantize`]) and hands the result to burn's store, so a model
//! never sees an integer weight. An `I8` tensor without its scale, a scale
//! whose shape does not broadcast, a scale without its tensor, or any other non-float dtype is
//! refused with the tensor's name; a truncated or inconsistent file is an error, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{ModelError, Result};

/// Suffix of the scale tensor of an int8 tensor.
pub const SCALE_SUFFIX: &str = ".scale";

/// Matrices smaller than this many elements stay as they are in [`quantize_file`] (biases,
/// norms and small vectors are a rounding error of the size and keep their precision).
pub const DEFAULT_MIN_ELEMENTS: usize = 16_384;

/// A matrix that int8 would store with a larger relative RMS error keeps its dtype in
/// [`quantize_file`]. A trained layer's matrix comes out near 0.8% (one step of 1/127 of a
/// row's largest value); a projection kept near the identity (W = I + delta) comes out near
/// 4%, almost all of it on the small delta that training put there, so it stays f16.
pub const DEFAULT_MAX_RELATIVE_ERROR: f64 = 0.02;

/// One tensor as stored: dtype name as safetensors writes it, shape, little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// A whole safetensors file in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFile {
    pub tensors: BTreeMap<String, RawTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// Bytes per element of a safetensors dtype (None: not one we know).
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn bad(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Weights {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Read and check a safetensors file: header size, dtypes, shapes and that every tensor's
/// bytes lie inside the file with the size its shape and dtype give.
pub fn read_raw(path: &Path) -> Result<RawFile> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    RawFile::parse(&bytes, path)
}

impl RawFile {
    /// [`read_raw`] of bytes already in memory; `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<RawFile> {
        parse_raw(bytes).map_err(|m| bad(path, m))
    }
}

fn parse_raw(bytes: &[u8]) -> std::result::Result<RawFile, String> {
    let len_bytes: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("not a safetensors file (shorter than its 8-byte header length)")?;
    let len = u64::from_le_bytes(len_bytes);
    if len > 100 << 20 {
        return Err("safetensors header larger than 100 MiB".into());
    }
    let end = 8 + len as usize;
    let header = bytes
        .get(8..end)
        .ok_or("truncated safetensors file (header runs past the end)")?;
    let json: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("bad safetensors header: {e}"))?;
    let map = json
        .as_object()
        .ok_or("the safetensors header is not a JSON object")?;
    let data = &bytes[end..];
    let mut out = RawFile::default();
    for (name, v) in map {
        if name == "__metadata__" {
            if let Some(meta) = v.as_object() {
                for (k, v) in meta {
                    if let Some(s) = v.as_str() {
                        out.metadata.insert(k.clone(), s.to_string());
                    }
                }
            }
            continue;
        }
        let dtype = v
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| format!("tensor {name:?} has no dtype"))?;
        let size = dtype_size(dtype)
            .ok_or_else(|| format!("tensor {name:?} has unknown dtype {dtype}"))?;
        // A list of non-negative integers under `key`.
        let usizes = |key: &str| -> std::result::Result<Vec<usize>, String> {
            v.get(key)
                .and_then(|s| s.as_array())
                .ok_or_else(|| format!("tensor {name:?} has no {key}"))?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("tensor {name:?} has a bad {key}"))
        };
        let shape = usizes("shape")?;
        let offsets = usizes("data_offsets")?;
        let [begin, stop] = offsets[..] else {
            return Err(format!("tensor {name:?} needs two data_offsets"));
        };
        let want = numel(&shape)
            .and_then(|n| n.checked_mul(size))
            .ok_or_else(|| format!("tensor {name:?} is too large"))?;
        if stop < begin || stop - begin != want {
            return Err(format!(
                "tensor {name:?}: {} bytes stored, its shape {shape:?} of {dtype} needs {want}",
                stop.saturating_sub(begin)
            ));
        }
        let slice = data
            .get(begin..stop)
            .ok_or_else(|| format!("tensor {name:?} runs past the end of the file"))?;
        out.tensors.insert(
            name.clone(),
            RawTensor {
                dtype: dtype.to_string(),
                shape,
                data: slice.to_vec(),
            },
        );
    }
    Ok(out)
}

impl RawTensor {
    /// The values as f32, for float dtypes (None for any other).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let d = &self.data;
        Some(match self.dtype.as_str() {
            "F32" => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            "F16" => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "BF16" => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            "F64" => d
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            _ => return None,
        })
    }

    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: "F32".into(),
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values of this int8 tensor (named `name`, in file `path`, for errors) times its
    /// `scale` tensor, broadcast (see the module docs): `q as f32 * scale`, computed without an
    /// index table, so a 30k-row embedding table costs one pass.
    pub fn dequantized(&self, name: &str, scale: &RawTensor, path: &Path) -> Result<Vec<f32>> {
        let scale_name = format!("{name}{SCALE_SUFFIX}");
        if self.dtype != "I8" {
            return Err(bad(path, format!("{name:?} is {}, not I8", self.dtype)));
        }
        let scales = scale.to_f32().ok_or_else(|| {
            bad(
                path,
                format!("{scale_name:?} is {}, not floating point", scale.dtype),
            )
        })?;
        let shape = &self.shape;
        let mismatch = || {
            bad(
                path,
                format!(
                    "{scale_name:?} of shape {:?} does not broadcast to {name:?} of shape {shape:?}",
                    scale.shape
                ),
            )
        };
        if shape.len() != scale.shape.len()
            || shape
                .iter()
                .zip(&scale.shape)
                .any(|(&d, &s)| s != 1 && s != d)
            || numel(&scale.shape) != Some(scales.len())
            || numel(shape) != Some(self.data.len())
        {
            return Err(mismatch());
        }
        let q = |b: &u8| f32::from(*b as i8);
        // Matrices (every quantized tensor we write): scale per row, per column or per element,
        // in loops the compiler vectorizes.
        if let ([rows, cols], [sr, sc]) = (&shape[..], &scale.shape[..]) {
            let (rows, cols) = (*rows, (*cols).max(1));
            let mut out = Vec::with_capacity(self.data.len());
            for (r, row) in self.data.chunks_exact(cols).enumerate().take(rows) {
                match (*sr == 1, *sc == 1) {
                    (_, true) => {
                        let s = scales[if *sr == 1 { 0 } else { r }];
                        out.extend(row.iter().map(|b| q(b) * s));
                    }
                    (true, false) => out.extend(row.iter().zip(&scales).map(|(b, s)| q(b) * s)),
                    (false, false) => out.extend(
                        row.iter()
                            .zip(&scales[r * cols..(r + 1) * cols])
                            .map(|(b, s)| q(b) * s),
                    ),
                }
            }
            return Ok(out);
        }
        // Row-major strides of the scale, 0 along its size-1 dimensions.
        let rank = shape.len();
        let mut strides = vec![0usize; rank];
        let mut acc = 1usize;
        for i in (0..rank).rev() {
            strides[i] = if scale.shape[i] == 1 { 0 } else { acc };
            acc = acc.checked_mul(scale.shape[i]).ok_or_else(mismatch)?;
        }
        let mut idx = vec![0usize; rank];
        let mut at = 0usize;
        let mut out = Vec::with_capacity(self.data.len());
        for b in &self.data {
            let s = scales.get(at).copied().ok_or_else(mismatch)?;
            out.push(q(b) * s);
            for k in (0..rank).rev() {
                idx[k] += 1;
                at += strides[k];
                if idx[k] < shape[k] {
                    break;
                }
                at -= strides[k] * shape[k];
                idx[k] = 0;
            }
        }
        Ok(out)
    }

    pub fn is_float(&self) -> bool {
        matches!(self.dtype.as_str(), "F16" | "BF16" | "F32" | "F64")
    }
}

impl RawFile {
    /// Replace every int8 tensor and its scale by the f32 tensor they stand for, and check that
    /// every tensor left is floating point. `path` names the file in errors.
    pub fn dequantize(mut self, path: &Path) -> Result<Self> {
        let names: Vec<String> = self.tensors.keys().cloned().collect();
        for name in &names {
            if let Some(base) = name.strip_suffix(SCALE_SUFFIX)
                && self.tensors.get(base).is_none_or(|t| t.dtype != "I8")
            {
                return Err(bad(
                    path,
                    format!("tensor {name:?} is a scale without the int8 tensor {base:?}"),
                ));
            }
        }
        for name in names {
            let Some(t) = self.tensors.get(&name) else {
                continue;
            };
            if t.dtype != "I8" {
                continue;
            }
            let scale_name = format!("{name}{SCALE_SUFFIX}");
            let scale = self
                .tensors
                .get(&scale_name)
                .ok_or_else(|| bad(path, format!("int8 tensor {name:?} has no {scale_name:?}")))?;
            let values = t.dequantized(&name, scale, path)?;
            let shape = t.shape.clone();
            self.tensors.remove(&scale_name);
            self.tensors
                .insert(name.clone(), RawTensor::from_f32(shape, &values));
        }
        if let Some((name, t)) = self.tensors.iter().find(|(_, t)| !t.is_float()) {
            return Err(bad(
                path,
                format!(
                    "tensor {name:?} is {}; weights must be floating point (F16, BF16, F32 or \
                     F64) or int8 with a {SCALE_SUFFIX} tensor",
                    t.dtype
                ),
            ));
        }
        Ok(self)
    }

    /// Serialize as a safetensors file (tensors in name order, header padded to 8 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        if !self.metadata.is_empty() {
            let meta: serde_json::Map<String, serde_json::Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            header.insert("__metadata__".into(), serde_json::Value::Object(meta));
        }
        let mut offset = 0usize;
        for (name, t) in &self.tensors {
            header.insert(
                name.clone(),
                serde_json::json!({
                    "dtype": t.dtype,
                    "shape": t.shape,
                    "data_offsets": [offset, offset + t.data.len()],
                }),
            );
            offset += t.data.len();
        }
        let mut head = serde_json::Value::Object(header).to_string().into_bytes();
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + head.len() + offset);
        out.extend_from_slice(&(head.len() as u64).to_le_bytes());
        out.extend_from_slice(&head);
        for t in self.tensors.values() {
            out.extend_from_slice(&t.data);
        }
        out
    }
}

/// Symmetric int8 with one scale per row (`rows_axis`) or per column of a `[r, c]` matrix:
/// the codes, the scales and the squared reconstruction error.
fn quantize_matrix(v: &[f32], r: usize, c: usize, per_row: bool) -> (Vec<u8>, Vec<f32>, f64) {
    let groups = if per_row { r } else { c };
    let group_of = |i: usize| if per_row { i / c } else { i % c };
    let mut maxabs = vec![0f32; groups];
    for (i, &x) in v.iter().enumerate() {
        let g = group_of(i);
        maxabs[g] = maxabs[g].max(x.abs());
    }
    let scales: Vec<f32> = maxabs.iter().map(|m| m / 127.0).collect();
    let mut err = 0f64;
    let codes = v
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let s = scales[group_of(i)];
            let q = if s > 0.0 {
                (x / s).round().clamp(-127.0, 127.0)
            } else {
                0.0
            };
            err += f64::from(q * s - x).powi(2);
            (q as i8) as u8
        })
        .collect();
    (codes, scales, err)
}

/// What [`quantize_file`] did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct QuantReport {
    /// Tensors stored as int8.
    pub quantized: usize,
    /// Tensors kept as they were (too small, or not a float matrix).
    pub kept: usize,
    /// Root-mean-square error of the quantized matrices over their root-mean-square value.
    pub relative_rms_error: f64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Write `src` to `dst` with every float matrix of at least `min_elements` elements that int8
/// stores within `max_relative_error` (relative RMS) stored as int8 + scales (see the module
/// docs); the metadata is kept, with `gnn_coder.dtype` = `int8`. An int8 file given again is
/// left as it is. `dst` is replaced atomically.
pub fn quantize_file(
    src: &Path,
    dst: &Path,
    min_elements: usize,
    max_relative_error: f64,
) -> Result<QuantReport> {
    let file = read_raw(src)?;
    let bytes_before =
        std::fs::metadata(src)
            .map(|m| m.len())
            .map_err(|source| ModelError::Io {
                path: src.to_path_buf(),
                source,
            })?;
    let (out, mut report) = quantize_raw(file, min_elements, max_relative_error);
    report.bytes_before = bytes_before;
    report.bytes_after = write_atomically(&out, dst)?;
    Ok(report)
}

/// Writes `file` to `dst` through a temporary file and a rename; returns the bytes written.
pub fn write_atomically(file: &RawFile, dst: &Path) -> Result<u64> {
    let bytes = file.to_bytes();
    let tmp = dst.with_extension("safetensors.tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, dst).map_err(io(dst))?;
    Ok(bytes.len() as u64)
}

/// [`quantize_file`] in memory (the report's byte counts are left at 0).
pub fn quantize_raw(
    file: RawFile,
    min_elements: usize,
    max_relative_error: f64,
) -> (RawFile, QuantReport) {
    let mut out = RawFile {
        tensors: BTreeMap::new(),
        metadata: file.metadata.clone(),
    };
    out.metadata
        .insert(crate::model::META_DTYPE.to_string(), "int8".to_string());
    let (mut quantized, mut kept, mut err, mut energy) = (0, 0, 0f64, 0f64);
    for (name, t) in file.tensors {
        let values = match (&t.shape[..], t.to_f32()) {
            ([r, c], Some(v)) if r * c >= min_elements && !name.ends_with(SCALE_SUFFIX) => {
                (*r, *c, v)
            }
            _ => {
                kept += 1;
                out.tensors.insert(name, t);
                continue;
            }
        };
        let (r, c, v) = values;
        let by_row = quantize_matrix(&v, r, c, true);
        let by_col = quantize_matrix(&v, r, c, false);
        let (codes, scales, e, scale_shape) = if by_row.2 <= by_col.2 {
            (by_row.0, by_row.1, by_row.2, vec![r, 1])
        } else {
            (by_col.0, by_col.1, by_col.2, vec![1, c])
        };
        let e2: f64 = v.iter().map(|&x| f64::from(x).powi(2)).sum();
        if e > max_relative_error.powi(2) * e2 {
            kept += 1;
            out.tensors.insert(name, t);
            continue;
        }
        err += e;
        energy += e2;
        out.tensors.insert(
            format!("{name}{SCALE_SUFFIX}"),
            RawTensor::from_f32(scale_shape, &scales),
        );
        out.tensors.insert(
            name,
            RawTensor {
                dtype: "I8".into(),
                shape: vec![r, c],
                data: codes,
            },
        );
        quantized += 1;
    }
    let report = QuantReport {
        quantized,
        kept,
        relative_rms_error: if energy > 0.0 {
            (err / energy).sqrt()
        } else {
            0.0
        },
        bytes_before: 0,
        bytes_after: 0,
    };
    (out, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_file(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> RawFile {
        RawFile {
            tensors: tensors
                .iter()
                .map(|(n, s, v)| (n.to_string(), RawTensor::from_f32(s.clone(), v)))
                .collect(),
            metadata: BTreeMap::from([("k".to_string(), "v".to_string())]),
        }
    }

    #[test]
    fn round_trip_bytes() {
        let f = f32_file(&[
            ("a", vec![2, 3], vec![1., 2., 3., 4., 5., 6.]),
            ("b", vec![1], vec![7.]),
        ]);
        let back = parse_raw(&f.to_bytes()).expect("parses");
        assert_eq!(back, f);
    }

    #[test]
    fn quantize_then_dequantize_is_close_and_picks_the_better_axis() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Rows of very different magnitude: per-row scales fit them far better.
        let (r, c) = (64, 32);
        let v: Vec<f32> = (0..r * c)
            .map(|i| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i / c) as f32))
            .collect();
        let small = vec![0.5f32; 4];
        let f = f32_file(&[
            ("w", vec![r, c], v.clone()),
            ("bias", vec![4], small.clone()),
        ]);
        let src = dir.path().join("a.safetensors");
        let dst = dir.path().join("b.safetensors");
        std::fs::write(&src, f.to_bytes()).expect("write");
        let rep = quantize_file(&src, &dst, 1000, 0.02).expect("quantizes");
        assert_eq!((rep.quantized, rep.kept), (1, 1));
        assert!(rep.relative_rms_error < 0.01, "{rep:?}");
        let q = read_raw(&dst).expect("reads");
        assert_eq!(q.tensors["w"].dtype, "I8");
        assert_eq!(q.tensors["w.scale"].shape, vec![r, 1]);
        assert_eq!(q.metadata["k"], "v");
        assert_eq!(q.metadata[crate::model::META_DTYPE], "int8");
        let d = q.dequantize(&dst).expect("dequantizes");
        assert!(!d.tensors.contains_key("w.scale"));
        let back = d.tensors["w"].to_f32().expect("f32");
        for (row, (a, b)) in back.chunks(c).zip(v.chunks(c)).enumerate() {
            let step = b.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= step / 2.0 + 1e-6, "row {row}: {x} vs {y}");
            }
        }
        assert_eq!(d.tensors["bias"].to_f32(), Some(small));
    }

    /// A projection kept near the identity loses its small trained part to int8 rounding: it
    /// keeps its dtype, a plain matrix does not.
    #[test]
    fn near_identity_matrices_keep_their_dtype() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Off the diagonal, all under half an int8 step (1/254): rounded to 0.
        let n = 256;
        let eye: Vec<f32> = (0..n * n)
            .map(|i| {
                if i / n == i % n {
                    1.0
                } else {
                    ((i % 7) as f32 - 3.0) * 1e-3
                }
            })
            .collect();
        let plain: Vec<f32> = (0..n * n)
            .map(|i| ((i * 31 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let f = f32_file(&[("eye", vec![n, n], eye), ("plain", vec![n, n], plain)]);
        let src = dir.path().join("a.safetensors");
        std::fs::write(&src, f.to_bytes()).expect("write");
        let dst = dir.path().join("b.safetensors");
        let rep = quantize_file(&src, &dst, 16, DEFAULT_MAX_RELATIVE_ERROR).expect("quantizes");
        assert_eq!((rep.quantized, rep.kept), (1, 1));
        let q = read_raw(&dst).expect("reads");
        assert_eq!(q.tensors["eye"].dtype, "F32");
        assert_eq!(q.tensors["plain"].dtype, "I8");
    }

    #[test]
    fn column_scales_broadcast() {
        let mut f = RawFile::default();
        f.tensors.insert(
            "w".into(),
            RawTensor {
                dtype: "I8".into(),
                shape: vec![2, 3],
                data: [1i8, -2, 3, -4, 5, -127].iter().map(|&q| q as u8).collect(),
            },
        );
        f.tensors.insert(
            "w.scale".into(),
            RawTensor::from_f32(vec![1, 3], &[1.0, 0.5, 2.0]),
        );
        let d = f.dequantize(Path::new("x")).expect("dequantizes");
        assert_eq!(
            d.tensors["w"].to_f32(),
            Some(vec![1.0, -1.0, 6.0, -4.0, 2.5, -254.0])
        );
    }

    #[test]
    fn bad_files_are_errors_with_the_tensor_name() {
        let p = Path::new("w.safetensors");
        let i8t = |shape: Vec<usize>| RawTensor {
            dtype: "I8".into(),
            data: vec![1; numel(&shape).unwrap_or(0)],
            shape,
        };
        // int8 without a scale
        let mut f = RawFile::default();
        f.tensors.insert("w".into(), i8t(vec![2, 2]));
        let e = f.clone().dequantize(p).expect_err("no scale").to_string();
        assert!(e.contains("\"w\"") && e.contains("w.scale"), "{e}");
        // a scale that does not broadcast
        f.tensors
            .insert("w.scale".into(), RawTensor::from_f32(vec![3, 1], &[1.; 3]));
        let e = f.clone().dequantize(p).expect_err("bad shape").to_string();
        assert!(e.contains("does not broadcast"), "{e}");
        // a scale without its tensor
        let mut g = RawFile::default();
        g.tensors
            .insert("v.scale".into(), RawTensor::from_f32(vec![1], &[1.]));
        let e = g.dequantize(p).expect_err("orphan").to_string();
        assert!(e.contains("v.scale"), "{e}");
        // another integer dtype
        let mut h = RawFile::default();
        h.tensors.insert(
            "n".into(),
            RawTensor {
                dtype: "I32".into(),
                shape: vec![1],
                data: vec![0; 4],
            },
        );
        let e = h.dequantize(p).expect_err("i32").to_string();
        assert!(e.contains("\"n\" is I32"), "{e}");
        // truncated and lying files
        let ok = f32_file(&[("a", vec![4], vec![1.; 4])]).to_bytes();
        for cut in [0, 5, 8, 20, ok.len() - 1] {
            assert!(parse_raw(&ok[..cut]).is_err(), "cut at {cut}");
        }
        let lying = String::from_utf8_lossy(&ok).replace("[4]", "[9]");
        assert!(parse_raw(lying.as_bytes()).is_err());
    }
}
