//! Fuzz targets of the weights' parsers (see `crates/syntax/tests/fuzz.rs` for how they run
//! and how to run them longer): the safetensors reader and the int8 dequantizer over damaged
//! and arbitrary files, and `head.json`.

use std::path::Path;

use gnn_coder_model::model::{HEAD_CONFIG_FILE, read_head_config};
use gnn_coder_model::quant::{RawFile, RawTensor, SCALE_SUFFIX};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("GNN_CODER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A small valid weights file: an f32 matrix, an int8 matrix with its row scales, metadata.
fn valid() -> Vec<u8> {
    let mut f = RawFile::default();
    f.tensors.insert(
        "a.weight".into(),
        RawTensor::from_f32(vec![2, 3], &[0.5, -1.0, 2.0, 0.0, 1.5, -0.25]),
    );
    f.tensors.insert(
        "b.weight".into(),
        RawTensor {
            dtype: "I8".into(),
            shape: vec![2, 2],
            data: vec![1, 255, 127, 129],
        },
    );
    f.tensors.insert(
        format!("b.weight{SCALE_SUFFIX}"),
        RawTensor::from_f32(vec![2, 1], &[0.01, 0.02]),
    );
    f.metadata.insert("format".into(), "pt".into());
    f.to_bytes()
}

fn damage(mut bytes: Vec<u8>, mode: u8, at: prop::sample::Index, byte: u8) -> Vec<u8> {
    let i = at.index(bytes.len().max(1));
    match mode {
        0 => bytes.truncate(i),
        1 if !bytes.is_empty() => bytes[i] = byte,
        2 => bytes.splice(i..i, [byte; 3]).for_each(drop),
        _ => {}
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// A damaged file is refused (or, when the damage hit only tensor values, read with the
    /// shapes its header declares); dequantizing it never panics.
    #[test]
    fn safetensors_parse_or_refuse(
        edits in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = valid();
        for (mode, at, byte) in edits {
            bytes = damage(bytes, mode, at, byte);
        }
        if let Ok(file) = RawFile::parse(&bytes, Path::new("fuzz.safetensors")) {
            for t in file.tensors.values() {
                let n: usize = t.shape.iter().product();
                prop_assert!(t.data.len() >= n, "{t:?}");
            }
            if let Ok(f32s) = file.dequantize(Path::new("fuzz.safetensors")) {
                prop_assert!(f32s.tensors.values().all(|t| t.to_f32().is_some()));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = RawFile::parse(&bytes, Path::new("fuzz.safetensors"));
    }

    /// `head.json` damaged anywhere: a config that validates, or an error.
    #[test]
    fn head_config_parses_or_refuses(
        mode in 0u8..3, at in any::<prop::sample::Index>(), byte in any::<u8>(),
    ) {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
        let good = std::fs::read(shipped.join(HEAD_CONFIG_FILE)).expect("shipped head.json");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(HEAD_CONFIG_FILE), damage(good, mode, at, byte)).expect("write");
        let _ = read_head_config(dir.path());
    }
}
