//! The query-only loader ([`QueryEmbedder`]) against the full [`Embedder`]: the same vectors
//! (so no tensor is mis-mapped, transposed wrongly or left at its initial value) and the same
//! identity, for the built-in model, the checkout's directories, and a weights directory that
//! fine-tunes only the top layers (the lower ones then come from the Hugging Face file).

use std::path::{Path, PathBuf};

use gnn_coder_model::weights::identity_of;
use gnn_coder_model::{
    Compute, Embedder, EmbedderOptions, HeadConfig, ModelFiles, QueryEmbedder, check_model_dir,
};

fn checkout(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn queries() -> Vec<String> {
    let long = "how do I parse a configuration file and validate every field ".repeat(60);
    vec![
        String::new(),
        "parse a config file".into(),
        "read json".into(),
        "HTTP client with retries and exponential backoff".into(),
        "fn main() { println!(\"hi\"); }".into(),
        "Größe der Datei ermitteln — ファイルサイズ 🚀".into(),
        "   leading and trailing spaces   ".into(),
        "sort a list of dictionaries by key in python".into(),
        "a".into(),
        long,
        "tokenize source code into identifiers, then build an inverted index".into(),
    ]
}

/// Loads both with the same files and compute, and compares vectors and identities.
fn compare(model: ModelFiles, weights: ModelFiles, compute: Compute) {
    let mut opts = EmbedderOptions::new(model.clone());
    opts.weights = Some(weights.clone());
    opts.compute = compute;
    let full = Embedder::load(&opts).expect("the full embedder loads");
    let light = QueryEmbedder::load(&model, Some(&weights), compute, opts.max_tokens)
        .expect("the query embedder loads")
        .expect("it serves the kernels");
    assert_eq!(light.max_tokens(), full.max_tokens());
    assert_eq!(light.dim(), full.dim());
    assert_eq!(light.compute_name(), full.compute_name());
    let qs = queries();
    let qs: Vec<&str> = qs.iter().map(String::as_str).collect();
    let a = full.embed_queries(&qs).expect("full embeds");
    let b = light.embed_queries(&qs).expect("light embeds");
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.len(), y.len());
        let diff = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "query {i} ({:?}): max |diff| {diff}", qs[i]);
    }
    // One at a time too (batches of different composition).
    let one = light.embed_queries(&[qs[1]]).expect("embeds");
    let diff = one[0]
        .iter()
        .zip(&a[1])
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-5, "alone: {diff}");
    let id = identity_of(&full, Some(&weights)).expect("identity");
    assert_eq!(light.identity(), &id);
    assert!(id.trained);
}

#[test]
fn built_in_query_vectors_equal_the_full_embedder() {
    for compute in [
        Compute::Auto,
        Compute::Kernels(gnn_coder_model::cpu::Precision::F32),
    ] {
        compare(ModelFiles::Bundled, ModelFiles::Bundled, compute);
    }
}

fn model_dir() -> Option<PathBuf> {
    let dir = checkout("models/all-MiniLM-L6-v2");
    match check_model_dir(&dir) {
        Ok(()) => Some(dir),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

#[test]
fn directory_query_vectors_equal_the_full_embedder() {
    let Some(dir) = model_dir() else { return };
    compare(
        ModelFiles::Dir(dir),
        ModelFiles::Dir(checkout("weights/gnn-coder")),
        Compute::Auto,
    );
}

fn copy(from: &Path, to: &Path, name: &str) {
    std::fs::copy(from.join(name), to.join(name)).expect("copies");
}

#[test]
fn lower_layers_come_from_the_pretrained_model() {
    let Some(dir) = model_dir() else { return };
    // The shipped weights with only the top two layers fine-tuned: layers 0-3 are MiniLM's,
    // read from the Hugging Face file (names mapped, linear weights transposed).
    let shipped = checkout("weights/gnn-coder");
    let tmp = std::env::temp_dir().join(format!("gnn-coder-query-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    copy(&shipped, &tmp, "head.safetensors");
    copy(&shipped, &tmp, "transformer.safetensors");
    let mut head: HeadConfig =
        serde_json::from_slice(&std::fs::read(shipped.join("head.json")).expect("head.json"))
            .expect("parses");
    head.tuned_layers = 2;
    std::fs::write(
        tmp.join("head.json"),
        serde_json::to_string(&head).expect("json"),
    )
    .expect("writes");
    compare(
        ModelFiles::Dir(dir),
        ModelFiles::Dir(tmp.clone()),
        Compute::Auto,
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn no_trained_weights_or_burn_means_the_full_embedder() {
    let none = QueryEmbedder::load(&ModelFiles::Bundled, None, Compute::Auto, 256).expect("ok");
    assert!(none.is_none());
    let burn = QueryEmbedder::load(
        &ModelFiles::Bundled,
        Some(&ModelFiles::Bundled),
        Compute::Burn,
        256,
    )
    .expect("ok");
    assert!(burn.is_none());
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let tmp = std::env::temp_dir().join(format!("gnn-coder-query-miss-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    std::fs::copy(
        checkout("weights/gnn-coder/head.json"),
        tmp.join("head.json"),
    )
    .expect("copy");
    let err = QueryEmbedder::load(
        &ModelFiles::Bundled,
        Some(&ModelFiles::Dir(tmp.clone())),
        Compute::Auto,
        256,
    )
    .expect_err("no head weights");
    assert!(err.to_string().contains("safetensors"), "{err}");
    let _ = std::fs::remove_dir_all(&tmp);
}
