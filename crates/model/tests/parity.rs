//! Tests with the real pretrained model. They skip (pass, printing why) when
//! `models/all-MiniLM-L6-v2` is absent; run `scripts/fetch-model.sh` first.

use std::path::PathBuf;

use gnn_coder_model::cpu::{Precision, int8_supported};
use gnn_coder_model::{Compute, Embedder, EmbedderOptions, GraphUse, UnitInput, check_model_dir};
use gnn_coder_syntax::AstGraph;
use serde::Deserialize;

fn model_dir() -> PathBuf {
    std::env::var_os("GNN_CODER_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2")
        })
}

/// The embedder, or `None` (after printing why) when the model files are absent.
fn embedder(graph: GraphUse) -> Option<Embedder> {
    embedder_with(graph, Compute::Auto, None)
}

fn embedder_with(graph: GraphUse, compute: Compute, weights: Option<PathBuf>) -> Option<Embedder> {
    let dir = model_dir();
    if let Err(e) = check_model_dir(&dir) {
        eprintln!("SKIPPED: {e}");
        return None;
    }
    let mut opts = EmbedderOptions::new(dir);
    opts.graph = graph;
    opts.compute = compute;
    opts.weights = weights.map(Into::into);
    Some(Embedder::load(&opts).expect("load model"))
}

/// Every inference path this CPU can run: burn, the f32 kernels, and bf16 and int8 where
/// supported.
fn computes() -> Vec<Compute> {
    let mut all = vec![Compute::Burn, Compute::Kernels(Precision::F32)];
    for p in [Precision::Bf16, Precision::Int8] {
        if p.supported() {
            all.push(Compute::Kernels(p));
        } else {
            eprintln!(
                "{} kernels not tested: this CPU lacks their instructions",
                p.as_str()
            );
        }
    }
    all
}

/// The documented tolerance of each path against sentence-transformers' f32 vectors: worst
/// cosine per text, and the mean over the reference texts.
fn tolerance(compute: Compute) -> (f32, f32) {
    match compute {
        Compute::Kernels(Precision::Bf16) => (0.999, 0.9998),
        Compute::Kernels(Precision::Int8) => (0.99, 0.998),
        _ => (0.9999, 0.99999),
    }
}

#[derive(Deserialize)]
struct Reference {
    max_seq_length: usize,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    text: String,
    num_tokens: usize,
    embedding: Vec<f32>,
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn loads_all_encoder_tensors() {
    let Some(emb) = embedder(GraphUse::IfTrained) else {
        return;
    };
    let report = emb.load_report();
    assert_eq!(report.applied, 101);
    assert!(report.missing.is_empty());
    let mut unused = report.unused.clone();
    unused.sort();
    assert_eq!(
        unused,
        vec![
            "embeddings.position_ids",
            "pooler.dense.bias",
            "pooler.dense.weight"
        ]
    );
    assert!(!emb.is_trained());
    assert_eq!(emb.dim(), 384);
}

#[test]
fn parity_with_sentence_transformers() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference_embeddings.json");
    let text = std::fs::read_to_string(&path).expect("reference JSON is committed");
    let reference: Reference = serde_json::from_str(&text).expect("valid reference JSON");
    for compute in computes() {
        let Some(emb) = embedder_with(GraphUse::IfTrained, compute, None) else {
            return;
        };
        let (worst_allowed, mean_allowed) = tolerance(compute);
        assert_eq!(reference.max_seq_length, emb.max_tokens());
        let texts: Vec<&str> = reference.items.iter().map(|i| i.text.as_str()).collect();
        let ours = emb.embed_sentences(&texts).unwrap();
        let mut worst = f32::MAX;
        let mut total = 0.0;
        for (item, v) in reference.items.iter().zip(&ours) {
            let tokens = emb.tokenizer().encode(&item.text).unwrap();
            assert_eq!(
                tokens.len(),
                item.num_tokens,
                "token count of {:?}",
                item.text
            );
            let c = cos(v, &item.embedding);
            worst = worst.min(c);
            total += c;
            assert!(
                c >= worst_allowed,
                "{compute:?}: cosine {c} < {worst_allowed} for {:?}",
                item.text
            );
        }
        let mean = total / ours.len() as f32;
        eprintln!(
            "parity {compute:?} ({}): worst cosine {worst:.7}, mean {mean:.7} over {} texts",
            emb.compute_name(),
            ours.len()
        );
        assert!(mean >= mean_allowed, "{compute:?}: mean cosine {mean}");

        // Batching must not change results (padding is masked / absent): one text at a time.
        for (t, v) in texts.iter().zip(&ours) {
            let single = emb.embed_sentences(&[t]).unwrap();
            assert!(cos(&single[0], v) > 0.99999, "{compute:?}: batch vs single");
        }
    }
}

/// The packed kernels against burn with the shipped (trained) weights: fine-tuned layers,
/// graph network, fusion and both projections.
#[test]
fn kernels_match_burn_with_trained_weights() {
    let weights = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
    let Some(burn) = embedder_with(GraphUse::IfTrained, Compute::Burn, Some(weights.clone()))
    else {
        return;
    };
    assert!(burn.is_trained() && burn.graphs_enabled());
    let code = "def read_lines(path):\n    with open(path) as f:\n        return f.readlines()\n";
    let graph = toy_graph(code);
    let rust = "fn add(a: i32, b: i32) -> i32 {\n    let s = a + b;\n    s\n}\n";
    let rgraph = toy_graph(rust);
    let units = [
        UnitInput::new(code, Some(&graph), "python"),
        UnitInput::new(rust, Some(&rgraph), "rust"),
        UnitInput::new(rust, None, "rust"),
    ];
    let queries = ["read a file line by line", "add two numbers"];
    let want_units = burn.embed_units(&units).unwrap();
    let want_queries = burn.embed_queries(&queries).unwrap();
    for compute in computes().into_iter().skip(1) {
        let emb = embedder_with(GraphUse::IfTrained, compute, Some(weights.clone())).unwrap();
        let min = match compute {
            Compute::Kernels(Precision::Bf16) => 0.999,
            Compute::Kernels(Precision::Int8) => 0.99,
            _ => 0.99999,
        };
        for threads in [1, 2] {
            let got = emb.embed_units_with(&units, threads).unwrap();
            for (g, w) in got.iter().zip(&want_units) {
                let c = cos(g, w);
                assert!(c >= min, "{compute:?} unit cosine {c}");
            }
        }
        for (g, w) in emb
            .embed_queries(&queries)
            .unwrap()
            .iter()
            .zip(&want_queries)
        {
            let c = cos(g, w);
            assert!(c >= min, "{compute:?} query cosine {c}");
        }
    }
}

#[test]
fn compute_names_parse() {
    assert_eq!("auto".parse::<Compute>(), Ok(Compute::Auto));
    assert_eq!(
        "BF16".parse::<Compute>(),
        Ok(Compute::Kernels(Precision::Bf16))
    );
    assert_eq!(
        "f32".parse::<Compute>(),
        Ok(Compute::Kernels(Precision::F32))
    );
    assert_eq!("burn".parse::<Compute>(), Ok(Compute::Burn));
    assert_eq!(
        "int8".parse::<Compute>(),
        Ok(Compute::Kernels(Precision::Int8))
    );
    // auto: int8 exactly where the CPU has VNNI, f32 elsewhere; never bf16 or a timing.
    let want = if int8_supported() { "int8" } else { "f32" };
    assert_eq!(Compute::Auto.precision().map(Precision::as_str), Some(want));
    if let Some(emb) = embedder_with(GraphUse::IfTrained, Compute::Auto, None) {
        assert_eq!(emb.compute_name(), want);
    }
    let err = "int4".parse::<Compute>().unwrap_err();
    assert!(err.contains("auto, f32, bf16, int8 or burn"), "{err}");
}

#[test]
fn untrained_model_is_minilm_zero_shot() {
    let Some(emb) = embedder(GraphUse::IfTrained) else {
        return;
    };
    let q = emb.embed_queries(&["read a file line by line"]).unwrap();
    let s = emb.embed_sentences(&["read a file line by line"]).unwrap();
    assert!(cos(&q[0], &s[0]) > 0.99999);
    let code = "def read_lines(path):\n    with open(path) as f:\n        return f.readlines()\n";
    let graph = toy_graph(code);
    let u = emb
        .embed_units(&[UnitInput::new(code, Some(&graph), "python")])
        .unwrap();
    let s = emb.embed_sentences(&[code]).unwrap();
    assert!(cos(&u[0], &s[0]) > 0.99999, "graph skipped while untrained");
}

/// A small hand-made graph: root, one child per line.
fn toy_graph(code: &str) -> AstGraph {
    let mut g = AstGraph {
        kinds: vec![1],
        spans: vec![(0, code.len() as u32)],
        child_counts: vec![0],
        edges: vec![],
    };
    let mut start = 0u32;
    for line in code.split_inclusive('\n') {
        let end = start + line.len() as u32;
        g.edges.push((0, g.kinds.len() as u32));
        g.kinds.push(2);
        g.spans.push((start, end));
        g.child_counts.push(0);
        g.child_counts[0] += 1;
        start = end;
    }
    g
}

#[test]
fn graph_path_on_real_model() {
    let Some(emb) = embedder(GraphUse::Always) else {
        return;
    };
    let code = "def read_lines(path):\n    with open(path) as f:\n        return f.readlines()\n";
    let graph = toy_graph(code);
    // A 5,000-node graph over a long unit (truncated to 256 tokens) and an empty function.
    let long: String = (0..800).map(|i| format!("x{i} = y{i} + {i}\n")).collect();
    let mut big = AstGraph {
        kinds: vec![1],
        spans: vec![(0, long.len() as u32)],
        child_counts: vec![0],
        edges: vec![],
    };
    let mut pos = 0u32;
    while big.kinds.len() < 5000 {
        let i = big.kinds.len() as u32;
        let parent = (i - 1) / 4;
        let (ps, pe) = big.spans[parent as usize];
        let s = (ps + pos % 7).min(pe);
        big.edges.push((parent, i));
        big.child_counts[parent as usize] += 1;
        big.kinds.push((i % 200) as u16);
        big.spans.push((s, pe));
        big.child_counts.push(0);
        pos += 1;
    }
    let empty = AstGraph::default();
    let units = [
        UnitInput::new(code, Some(&graph), "python"),
        UnitInput::new(&long, Some(&big), "python"),
        UnitInput::new("", Some(&empty), "rust"),
        UnitInput::new("", None, "rust"),
    ];
    let a = emb.embed_units(&units).unwrap();
    let b = emb.embed_units(&units).unwrap();
    assert_eq!(a, b, "deterministic");
    assert_eq!(a.len(), 4);
    for v in &a {
        assert_eq!(v.len(), 384);
        assert!(v.iter().all(|x| x.is_finite()));
    }
    // Untrained fusion stays close to the plain transformer vector.
    let s = emb.embed_sentences(&[code]).unwrap();
    let c = cos(&a[0], &s[0]);
    assert!(c > 0.99, "untrained fused vs MiniLM: {c}");
    // Empty unit with an empty graph == without a graph.
    assert_eq!(a[2], a[3]);
}
