//! The cross-encoder reranker built into the binary: its input layout, its agreement with the
//! PyTorch model it was trained as (`training/rerank/train.py reference`), batching, stopping,
//! and refusing broken files.

use std::path::{Path, PathBuf};

use gnn_coder_model::cpu::Precision;
use gnn_coder_model::{Compute, CrossEncoder, ModelError, ModelFiles};
use serde::Deserialize;

fn built_in(precision: Precision) -> CrossEncoder {
    CrossEncoder::load(
        &ModelFiles::Bundled,
        &ModelFiles::BundledRerank,
        Compute::Kernels(precision),
    )
    .expect("the built-in reranker loads")
}

#[derive(Deserialize)]
struct Reference {
    pairs: Vec<Pair>,
}

#[derive(Deserialize)]
struct Pair {
    query: String,
    code: String,
    ids: Vec<u32>,
    logit: f32,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rerank_reference.json");
    serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("fixture JSON")
}

#[test]
fn inputs_are_the_question_then_the_code_as_in_training() {
    let model = built_in(Precision::F32);
    let config = model.config().clone();
    for pair in reference().pairs {
        let ids = model.pair_ids(&pair.query, &pair.code).unwrap();
        assert_eq!(ids, pair.ids, "{:?}", pair.query);
        assert!(ids.len() <= config.max_tokens);
        assert_eq!(ids.first(), Some(&101));
        assert_eq!(ids.last(), Some(&102));
        let sep = ids.iter().position(|&t| t == 102).unwrap();
        assert!(
            sep - 1 <= config.query_tokens,
            "question of {} pieces",
            sep - 1
        );
    }
}

#[test]
fn scores_match_the_trained_model() {
    let pairs = reference().pairs;
    let mut precisions = vec![(Precision::F32, 1e-3f32)];
    if Precision::Int8.supported() {
        // Measured: at most 0.10 from the f32 logits on these pairs.
        precisions.push((Precision::Int8, 0.2));
    }
    for (precision, tolerance) in precisions {
        let model = built_in(precision);
        let queries: Vec<(&str, &str)> = pairs
            .iter()
            .map(|p| (p.query.as_str(), p.code.as_str()))
            .collect();
        for (pair, (q, c)) in pairs.iter().zip(queries) {
            let got = model.score(q, &[c], &|| true).unwrap()[0];
            eprintln!("{precision:?}: {got:.4} vs PyTorch {:.4}", pair.logit);
            assert!(
                (got - pair.logit).abs() <= tolerance,
                "{precision:?} {q:?}: {got} vs PyTorch {}",
                pair.logit
            );
        }
    }
}

#[test]
fn a_batch_scores_each_pair_as_alone_and_keeps_the_order() {
    let model = built_in(Precision::F32);
    let pairs = reference().pairs;
    let query = &pairs[0].query;
    let codes: Vec<&str> = pairs.iter().map(|p| p.code.as_str()).collect();
    let together = model.score(query, &codes, &|| true).unwrap();
    assert_eq!(together.len(), codes.len());
    for (code, score) in codes.iter().zip(&together) {
        let alone = model.score(query, &[code], &|| true).unwrap()[0];
        assert!((alone - score).abs() < 1e-4, "{alone} vs {score}");
    }
    assert!(model.score(query, &[], &|| true).unwrap().is_empty());
    // The answer of the first pair ranks above the unrelated retry loop.
    assert!(together[0] > together[1], "{together:?}");
}

#[test]
fn stopping_between_batches_is_reported() {
    let model = built_in(Precision::F32);
    let err = model
        .score("anything", &["def f():\n    pass\n"], &|| false)
        .unwrap_err();
    assert!(matches!(err, ModelError::Stopped), "{err:?}");
}

fn copy_built_in(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["rerank.json", "transformer.safetensors", "head.safetensors"] {
        std::fs::write(to.join(name), ModelFiles::BundledRerank.read(name).unwrap()).unwrap();
    }
}

#[test]
fn broken_reranker_files_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("rerank");
    copy_built_in(&dir);
    let load = || {
        CrossEncoder::load(
            &ModelFiles::Bundled,
            &ModelFiles::Dir(dir.clone()),
            Compute::Kernels(Precision::F32),
        )
    };
    load().expect("a copy loads");

    std::fs::write(dir.join("head.safetensors"), b"not safetensors").unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("head.safetensors"), "{err}");

    copy_built_in(&dir);
    std::fs::remove_file(dir.join("transformer.safetensors")).unwrap();
    let err = load().unwrap_err();
    assert!(
        matches!(err, ModelError::MissingModelFile { ref path } if path.ends_with("transformer.safetensors")),
        "{err:?}"
    );

    copy_built_in(&dir);
    let config = std::fs::read_to_string(dir.join("rerank.json")).unwrap();
    std::fs::write(
        dir.join("rerank.json"),
        config.replace("\"mean\"", "\"cls\""),
    )
    .unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("pooling"), "{err}");

    std::fs::write(dir.join("rerank.json"), config.replace("192", "9000")).unwrap();
    let err = load().unwrap_err().to_string();
    assert!(err.contains("positions"), "{err}");
}
