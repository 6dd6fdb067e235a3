//! Searches embed their query on the light query-only model (the full model is loaded only for
//! indexing and `similar`): the same vectors as the full model, and the same refusal when the
//! index was embedded by another model.

use std::fs;
use std::path::Path;

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, ErrorKind, IndexOptions, ModelChoice, QueryModel,
    SearchRequest,
};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

fn options(model: ModelChoice) -> EngineOptions {
    EngineOptions {
        model,
        threads: 2,
        ..EngineOptions::default()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn searches_use_the_light_query_model() {
    if std::env::var_os("GNN_CODER_WEIGHTS").is_some()
        || std::env::var_os("GNN_CODER_MODEL_DIR").is_some()
        || std::env::var_os("GNN_CODER_COMPUTE").is_some_and(|v| v == "burn")
    {
        eprintln!("SKIPPED: the model is chosen by the environment");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("repo");
    write(
        &root,
        "sizes.py",
        "def parse_size(text):\n    \"\"\"Parse a size like 512K or 2M.\"\"\"\n    return int(text[:-1]) * 1024\n",
    );
    write(
        &root,
        "net/retry.py",
        "def retry_with_backoff(fn, attempts):\n    for i in range(attempts):\n        try:\n            return fn()\n        except IOError:\n            sleep(2 ** i)\n",
    );
    let idx = tmp.path().join("idx");
    {
        let engine =
            Engine::open_or_create(&idx, options(ModelChoice::default()), false).expect("creates");
        let mut opts = IndexOptions::new(&root);
        opts.name = Some("repo".into());
        engine
            .index_repository(&opts, &|_| {}, &CancellationToken::new())
            .expect("indexes");
    }

    let engine = Engine::open(&idx, options(ModelChoice::default())).expect("opens");
    let qs = ["retry a call with backoff", "", "parse 512K"];
    let light = engine.query_model().expect("query model");
    assert!(matches!(light, QueryModel::Light(_)), "no full model yet");
    // The models themselves (the engine's embed_queries would answer from its cache).
    let a = light.embed_queries(&qs).expect("light vectors");
    let hits = engine
        .search(&SearchRequest::new("retry a call with backoff", 5))
        .expect("searches");
    assert!(!hits.is_empty());
    // The search embedded its query once; the same text again comes from the cache.
    assert_eq!(engine.query_cache_counts(), (0, 1));
    let again = engine
        .search(&SearchRequest::new("retry a call with backoff", 5))
        .expect("searches");
    assert_eq!(engine.query_cache_counts(), (1, 1));
    assert_eq!(
        hits.iter().map(|h| &h.unit.symbol).collect::<Vec<_>>(),
        again.iter().map(|h| &h.unit.symbol).collect::<Vec<_>>()
    );
    let cached = engine
        .embed_queries(&["retry a call with backoff"])
        .expect("cached");
    assert!(max_diff(&cached[0], &a[0]) < 1e-6);
    // Once the full model is loaded (indexing, `similar`), queries use it: same vectors.
    let full = engine.model().expect("full model");
    assert_eq!(&full.identity, light.identity());
    assert!(matches!(
        engine.query_model().expect("query model"),
        QueryModel::Full(_)
    ));
    let b = engine
        .query_model()
        .expect("query model")
        .embed_queries(&qs)
        .expect("full vectors");
    for (x, y) in a.iter().zip(&b) {
        assert!(max_diff(x, y) < 1e-5, "{}", max_diff(x, y));
    }

    // Other weights (a head with other bytes): refused, with the full model's error.
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
    let other = tmp.path().join("weights");
    fs::create_dir_all(&other).expect("mkdir");
    for f in [
        "head.json",
        "transformer.safetensors",
        "embeddings.safetensors",
        "config.json",
        "tokenizer.json",
    ] {
        fs::copy(shipped.join(f), other.join(f)).expect("copy");
    }
    let head_path = shipped.join("head.safetensors");
    let mut head =
        gnn_coder_model::quant::RawFile::parse(&fs::read(&head_path).expect("head"), &head_path)
            .expect("parses");
    head.metadata.insert("test.note".into(), "other".into());
    fs::write(other.join("head.safetensors"), head.to_bytes()).expect("write");
    let choice = ModelChoice {
        model_dir: None,
        weights: Some(other),
    };
    let engine = Engine::open(&idx, options(choice)).expect("opens");
    let light_err = engine.embed_queries(&["x"]).expect_err("other weights");
    assert!(matches!(
        engine.query_model().expect_err("again"),
        e if e.kind() == ErrorKind::Incompatible
    ));
    let full_err = engine.model().err().expect("other weights");
    assert_eq!(light_err.kind(), ErrorKind::Incompatible);
    assert_eq!(light_err.to_string(), full_err.to_string());
}

/// Unsaved buffers carry vectors: a keystroke embeds only the units whose text changed (the
/// others come from the committed file or the previous keystroke), and semantic and hybrid
/// search rank buffer units beside committed ones.
#[test]
fn unsaved_buffers_are_embedded_once_per_changed_unit() {
    if std::env::var_os("GNN_CODER_WEIGHTS").is_some()
        || std::env::var_os("GNN_CODER_MODEL_DIR").is_some()
    {
        eprintln!("SKIPPED: the model is chosen by the environment");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("repo");
    let sizes = "def parse_size(text):\n    \"\"\"Parse a size like 512K or 2M.\"\"\"\n    return int(text[:-1]) * 1024\n";
    write(&root, "sizes.py", sizes);
    write(
        &root,
        "net/retry.py",
        "def retry_with_backoff(fn, attempts):\n    for i in range(attempts):\n        try:\n            return fn()\n        except IOError:\n            sleep(2 ** i)\n",
    );
    let idx = tmp.path().join("idx");
    let engine =
        Engine::open_or_create(&idx, options(ModelChoice::default()), false).expect("creates");
    let mut opts = IndexOptions::new(&root);
    opts.name = Some("repo".into());
    engine
        .index_repository(&opts, &|_| {}, &CancellationToken::new())
        .expect("indexes");
    let crc = "\n\ndef crc32_checksum(data):\n    \"\"\"CRC-32 checksum of a byte string.\"\"\"\n    crc = 0xFFFFFFFF\n    for b in data:\n        crc ^= b\n    return crc ^ 0xFFFFFFFF\n";
    let buffer = |text: String| gnn_coder_engine::FileUpdate {
        path: "sizes.py".into(),
        contents: Some(text.into_bytes()),
        deleted: false,
    };
    let s = engine
        .update_buffers(
            "repo",
            &[buffer(format!("{sizes}{crc}"))],
            &CancellationToken::new(),
        )
        .expect("buffer");
    assert_eq!(
        (s.embeddings_computed, s.embeddings_reused),
        (1, 1),
        "{s:?}"
    );
    // The next keystroke changes one function: only it is embedded.
    let s = engine
        .update_buffers(
            "repo",
            &[buffer(format!("{sizes}{crc}\n\ndef zz():\n    return 0\n"))],
            &CancellationToken::new(),
        )
        .expect("buffer");
    assert_eq!(
        (s.embeddings_computed, s.embeddings_reused),
        (1, 2),
        "{s:?}"
    );
    for mode in [
        gnn_coder_engine::Mode::Semantic,
        gnn_coder_engine::Mode::Hybrid,
    ] {
        let mut req = SearchRequest::new("compute a CRC checksum of some bytes", 3);
        req.mode = Some(mode);
        let hits = engine.search(&req).expect("searches");
        assert_eq!(hits[0].unit.symbol, "crc32_checksum", "{mode:?}");
        assert!(
            hits.iter()
                .all(|h| h.unit.path != "net/retry.py" || h.score < hits[0].score)
        );
    }
}
