//! The model built into the binary: it loads with nothing on disk, gives the vectors of the
//! shipped weights over the full pretrained model, and never stands in for a zero-shot model.

use std::path::PathBuf;

use gnn_coder_model::{
    Embedder, EmbedderOptions, ModelChoice, ModelFiles, UnitInput, check_model_dir, load_embedder,
    resolve_model,
};

fn checkout(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

const CODE: &str =
    "def parse_config(path):\n    with open(path) as f:\n        return json.load(f)\n";

#[test]
fn the_built_in_model_needs_no_files() {
    // No flags, no environment: the built-in weights and transformer.
    let resolved = resolve_model(&ModelChoice::default()).expect("resolves");
    if std::env::var_os("GNN_CODER_WEIGHTS").is_none()
        && std::env::var_os("GNN_CODER_MODEL_DIR").is_none()
    {
        assert_eq!(resolved.model, ModelFiles::Bundled);
        assert_eq!(resolved.weights, Some(ModelFiles::Bundled));
    }
    let mut opts = EmbedderOptions::new(ModelFiles::Bundled);
    opts.weights = Some(ModelFiles::Bundled);
    let e = Embedder::load(&opts).expect("the built-in model loads");
    assert!(e.is_trained());
    assert_eq!(e.dim(), 384);
    let q = e
        .embed_queries(&["read a json config file"])
        .expect("embeds");
    assert_eq!(q[0].len(), 384);
    assert!((q[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-3);
}

#[test]
fn built_in_vectors_match_the_full_pretrained_model() {
    let dir = std::env::var_os("GNN_CODER_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| checkout("models/all-MiniLM-L6-v2"));
    if let Err(e) = check_model_dir(&dir) {
        eprintln!("SKIPPED: {e}");
        return;
    }
    let mut full = EmbedderOptions::new(dir);
    full.weights = Some(ModelFiles::Dir(checkout("weights/gnn-coder")));
    let full = Embedder::load(&full).expect("loads");
    let mut built_in = EmbedderOptions::new(ModelFiles::Bundled);
    built_in.weights = Some(ModelFiles::Bundled);
    let built_in = Embedder::load(&built_in).expect("loads");
    let queries = [
        "read a json config file",
        "levenshtein distance between strings",
    ];
    let (a, b) = (
        full.embed_queries(&queries).expect("embeds"),
        built_in.embed_queries(&queries).expect("embeds"),
    );
    for (x, y) in a.iter().zip(&b) {
        // The built-in word table is int8 (0.7% relative RMS): close, not equal.
        let c = cosine(x, y);
        assert!(c > 0.998, "query cosine {c}");
    }
    let unit = [UnitInput::new(CODE, None, "python")];
    let c = cosine(
        &full.embed_units(&unit).expect("embeds")[0],
        &built_in.embed_units(&unit).expect("embeds")[0],
    );
    assert!(c > 0.998, "code cosine {c}");
    // Both name the same model, so an index built either way is searched by the other.
    let name = |w| {
        gnn_coder_model::weights::identity_of(&full, Some(&w))
            .expect("names")
            .model
    };
    assert_eq!(
        name(ModelFiles::Bundled),
        name(ModelFiles::Dir(checkout("weights/gnn-coder")))
    );
}

#[test]
fn no_untrained_model_without_asking() {
    // The built-in files carry MiniLM's embeddings only: enough under weights that replace
    // every layer, never a zero-shot transformer in disguise.
    let err = Embedder::load(&EmbedderOptions::new(ModelFiles::Bundled)).unwrap_err();
    assert!(
        err.to_string().contains("model.safetensors"),
        "an untrained head needs the whole pretrained model: {err}"
    );
    // Asking for the zero-shot model with a directory lacking it is an error, not a fall-back.
    let empty = tempfile::tempdir().expect("tmp");
    let choice = ModelChoice {
        model_dir: Some(empty.path().to_path_buf()),
        weights: Some(PathBuf::from("none")),
    };
    let err = load_embedder(&choice).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    // Weights that are not weights are refused by name.
    let choice = ModelChoice {
        model_dir: None,
        weights: Some(empty.path().to_path_buf()),
    };
    let err = resolve_model(&choice).unwrap_err();
    assert!(err.to_string().contains("no trained weights"), "{err}");
}
