//! Model tests that need no pretrained files: a tiny random transformer of the same architecture.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use gnn_coder_model::{
    BertConfig, Encoded, GnnCoderModel, GraphBatch, GraphConfig, GraphInput, HeadConfig,
    read_safetensors_metadata,
};
use gnn_coder_syntax::AstGraph;

const VOCAB: usize = 64;

fn tiny_bert() -> BertConfig {
    BertConfig {
        vocab_size: VOCAB,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 300,
        ..BertConfig::default()
    }
}

fn tiny_head() -> HeadConfig {
    HeadConfig {
        graph: GraphConfig {
            d_model: 16,
            hidden: 8,
            kind_vocab_size: 40,
            ..GraphConfig::default()
        },
        out_dim: 16,
        ..HeadConfig::default()
    }
}

/// A deterministic pseudo-random generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A unit of `n_tokens` tokens of 4 bytes each (`"tok "` repeated) plus [CLS]/[SEP].
fn fake_tokens(n_tokens: usize, seed: u64) -> Encoded {
    let mut rng = Lcg(seed);
    let mut ids = vec![1u32];
    let mut offsets = vec![(0, 0)];
    let mut special = vec![true];
    for i in 0..n_tokens {
        ids.push(3 + rng.below(VOCAB as u64 - 3) as u32);
        offsets.push((4 * i, 4 * i + 3));
        special.push(false);
    }
    ids.push(2);
    offsets.push((0, 0));
    special.push(true);
    Encoded {
        ids,
        offsets,
        special,
    }
}

/// A random tree of `n` nodes over `text_len` bytes: node 0 spans everything, each other node
/// has a random parent and a span inside its parent's span.
fn random_tree(n: usize, text_len: u32, seed: u64) -> AstGraph {
    let mut rng = Lcg(seed);
    let mut g = AstGraph::default();
    for i in 0..n {
        let (span, kind) = if i == 0 {
            ((0, text_len), 1)
        } else {
            let parent = rng.below(i as u64) as usize;
            let (ps, pe) = g.spans[parent];
            let len = pe - ps;
            let a = ps + rng.below(len as u64 + 1) as u32;
            let b = a + rng.below((pe - a) as u64 + 1) as u32;
            g.edges.push((parent as u32, i as u32));
            g.child_counts[parent] += 1;
            ((a, b), 1 + rng.below(30) as u16)
        };
        g.kinds.push(kind);
        g.spans.push(span);
        g.child_counts.push(0);
    }
    g
}

fn batch_tensors(encs: &[&Encoded], device: &Device) -> (Tensor<2, Int>, Tensor<2>) {
    let l = encs.iter().map(|e| e.len()).max().unwrap_or(1);
    let b = encs.len();
    let mut ids = vec![0i64; b * l];
    let mut mask = vec![0f32; b * l];
    for (r, e) in encs.iter().enumerate() {
        for (j, &id) in e.ids.iter().enumerate() {
            ids[r * l + j] = id as i64;
            mask[r * l + j] = 1.0;
        }
    }
    (
        Tensor::from_data(TensorData::new(ids, [b, l]), device),
        Tensor::from_data(TensorData::new(mask, [b, l]), device),
    )
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.try_into_vec_as::<f32>().expect("f32 tensor")
}

fn graph_batch(items: &[(&AstGraph, &Encoded)], seq_len: usize, vocab: usize) -> GraphBatch {
    let inputs: Vec<GraphInput<'_>> = items
        .iter()
        .enumerate()
        .map(|(row, (graph, tokens))| GraphInput {
            row,
            graph,
            tokens,
            kind_offset: 0,
        })
        .collect();
    GraphBatch::build(&inputs, seq_len, vocab).expect("valid graphs")
}

#[test]
fn shapes_and_normalization() {
    let device = Device::flex();
    let head = tiny_head();
    let model = GnnCoderModel::new(&tiny_bert(), &head, &device).unwrap();
    let e1 = fake_tokens(20, 1);
    let e2 = fake_tokens(7, 2);
    let g1 = random_tree(40, 80, 3);
    let g2 = random_tree(5, 28, 4);
    let (ids, mask) = batch_tensors(&[&e1, &e2], &device);
    let gb = graph_batch(&[(&g1, &e1), (&g2, &e2)], ids.dims()[1], 40);
    assert_eq!(gb.num_nodes(), 45);
    assert!(!gb.pair_node.is_empty());

    let states = model.transformer.forward(ids.clone(), mask.clone());
    assert_eq!(states.dims(), [2, 22, 16]);
    let readouts = model.head.graph.forward(states, &gb).unwrap();
    assert_eq!(readouts.dims(), [2, head.graph.readout_dim()]);
    assert_eq!(head.graph.readout_dim(), 3 * 2 * 8);

    let code = model
        .forward_code(ids.clone(), mask.clone(), Some(&gb))
        .unwrap();
    assert_eq!(code.dims(), [2, 16]);
    let query = model.forward_query(ids, mask);
    assert_eq!(query.dims(), [2, 16]);
    for v in to_vec(code).chunks(16).chain(to_vec(query).chunks(16)) {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        assert!(v.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn untrained_head_follows_the_transformer() {
    let device = Device::flex();
    let model = GnnCoderModel::new(&tiny_bert(), &tiny_head(), &device).unwrap();
    let e = fake_tokens(30, 5);
    let g = random_tree(60, 120, 6);
    let (ids, mask) = batch_tensors(&[&e], &device);
    let gb = graph_batch(&[(&g, &e)], ids.dims()[1], 40);
    let fused = to_vec(
        model
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    let plain = to_vec(model.forward_code(ids.clone(), mask.clone(), None).unwrap());
    let query = to_vec(model.forward_query(ids, mask));
    let cos: f32 = fused.iter().zip(&plain).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99, "untrained fused vs sequence vector: cos {cos}");
    // Identity projections: query and graph-less code vectors are the same vector.
    let cos_q: f32 = query.iter().zip(&plain).map(|(a, b)| a * b).sum();
    assert!((cos_q - 1.0).abs() < 1e-5, "cos {cos_q}");
}

#[test]
fn astgpool_keeps_high_child_count_nodes_when_features_are_equal() {
    let device = Device::flex();
    let enc = tiny_head().graph.init(&device);
    let pool = &enc.pools[0];
    let x: Tensor<2> = Tensor::ones([10, 8], &device);
    // Graph A: 6 nodes, graph B: 4 nodes.
    let child: Tensor<2> = Tensor::from_floats(
        [
            [0.0],
            [5.0],
            [0.0],
            [3.0],
            [0.0],
            [1.0],
            [2.0],
            [0.0],
            [0.0],
            [7.0],
        ],
        &device,
    );
    let pooled = pool.forward(x, child, &[6, 4], 0.5, 3).unwrap();
    // A keeps max(ceil(3), 3) = 3: the nodes with 5, 3 and 1 children; B keeps min(3, 4) = 3
    // (ceil(0.5 * 4) = 2 < 3): 7, 2 and the first of the zero-child ties.
    assert_eq!(pooled.kept, vec![1, 3, 5, 6, 7, 9]);
    assert_eq!(pooled.sizes, vec![3, 3]);
    assert_eq!(pooled.x.dims(), [6, 8]);
}

/// Collects, for each float parameter, its path and whether it received a non-zero gradient.
struct GradCheck<'a> {
    grads: &'a burn::tensor::Gradients,
    path: Vec<String>,
    result: BTreeMap<String, bool>,
}

impl ModuleVisitor for GradCheck<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let nonzero = param
            .val()
            .grad(self.grads)
            .map(|g| g.abs().sum().into_scalar::<f32>() > 0.0)
            .unwrap_or(false);
        let name = format!("{}#{}", self.path.join("."), self.result.len());
        self.result.insert(name, nonzero);
    }
}

fn gradient_map(freeze: bool) -> BTreeMap<String, bool> {
    let device = Device::flex().autodiff();
    let mut model = GnnCoderModel::new(&tiny_bert(), &tiny_head(), &device).unwrap();
    if freeze {
        model = model.freeze_transformer();
    }
    let e1 = fake_tokens(25, 11);
    let e2 = fake_tokens(12, 12);
    let g1 = random_tree(50, 100, 13);
    let g2 = random_tree(9, 48, 14);
    let (ids, mask) = batch_tensors(&[&e1, &e2], &device);
    let gb = graph_batch(&[(&g1, &e1), (&g2, &e2)], ids.dims()[1], 40);
    let code = model
        .forward_code(ids.clone(), mask.clone(), Some(&gb))
        .unwrap();
    let query = model.forward_query(ids, mask);
    // A contrastive-style loss: similarity matrix against fixed targets.
    let sim = code.matmul(query.transpose());
    let target: Tensor<2> = Tensor::from_floats([[1.0, 0.0], [0.0, 1.0]], &device);
    let loss = (sim - target).square().sum();
    let grads = loss.backward();
    let mut check = GradCheck {
        grads: &grads,
        path: Vec::new(),
        result: BTreeMap::new(),
    };
    model.visit(&mut check);
    check.result
}

#[test]
fn gradients_reach_every_trainable_parameter() {
    let all = gradient_map(false);
    let missing: Vec<_> = all.iter().filter(|(_, ok)| !**ok).map(|(p, _)| p).collect();
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    // 5 + 16 * 2 transformer tensors, head: kind emb, input (2), 3 * (att_dst 2 + att_src 1),
    // 3 * (p, beta), graph_proj 2, gate 2, out_proj 2, query_proj 2.
    assert_eq!(all.len(), 37 + 1 + 2 + 9 + 6 + 8, "{all:?}");

    let frozen = gradient_map(true);
    for (path, ok) in &frozen {
        if path.starts_with("transformer") {
            assert!(!ok, "frozen transformer parameter {path} got a gradient");
        } else {
            assert!(
                ok,
                "head parameter {path} got no gradient with a frozen transformer"
            );
        }
    }
}

#[test]
fn deterministic() {
    let device = Device::flex();
    let model = GnnCoderModel::new(&tiny_bert(), &tiny_head(), &device).unwrap();
    let e1 = fake_tokens(40, 21);
    let e2 = fake_tokens(3, 22);
    let g1 = random_tree(120, 160, 23);
    let g2 = random_tree(4, 12, 24);
    let (ids, mask) = batch_tensors(&[&e1, &e2], &device);
    let gb = graph_batch(&[(&g1, &e1), (&g2, &e2)], ids.dims()[1], 40);
    let a = to_vec(
        model
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    let b = to_vec(model.forward_code(ids, mask, Some(&gb)).unwrap());
    assert_eq!(a, b);
}

#[test]
fn large_and_empty_graphs() {
    let device = Device::flex();
    let model = GnnCoderModel::new(&tiny_bert(), &tiny_head(), &device).unwrap();
    // 5,000-node AST over a 254-token unit; an empty unit (0 tokens besides [CLS]/[SEP], 0 nodes).
    let big_e = fake_tokens(254, 31);
    let big_g = random_tree(5000, 254 * 4, 32);
    let empty_e = fake_tokens(0, 33);
    let empty_g = AstGraph::default();
    let (ids, mask) = batch_tensors(&[&big_e, &empty_e], &device);
    let gb = graph_batch(&[(&big_g, &big_e), (&empty_g, &empty_e)], ids.dims()[1], 40);
    assert_eq!(gb.rows, vec![0], "the empty graph is skipped");
    let out = to_vec(model.forward_code(ids, mask, Some(&gb)).unwrap());
    assert_eq!(out.len(), 32);
    assert!(out.iter().all(|x| x.is_finite()));

    // A batch of empty graphs only.
    let (ids, mask) = batch_tensors(&[&empty_e], &device);
    let gb = graph_batch(&[(&empty_g, &empty_e)], ids.dims()[1], 40);
    assert!(gb.is_empty());
    let out = to_vec(model.forward_code(ids, mask, Some(&gb)).unwrap());
    assert!(out.iter().all(|x| x.is_finite()));
}

#[test]
fn malformed_graph_is_an_error() {
    let e = fake_tokens(3, 41);
    let g = AstGraph {
        kinds: vec![1, 2],
        spans: vec![(0, 8), (0, 3)],
        child_counts: vec![1, 0],
        edges: vec![(0, 5)],
    };
    let inputs = [GraphInput {
        row: 0,
        graph: &g,
        tokens: &e,
        kind_offset: 0,
    }];
    assert!(GraphBatch::build(&inputs, 5, 40).is_err());
}

#[test]
fn save_and_load_roundtrip() {
    let device = Device::flex();
    let mut head = tiny_head();
    head.tuned_layers = 1;
    let model = GnnCoderModel::new(&tiny_bert(), &head, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path(), &head, true, false).unwrap();
    let meta = read_safetensors_metadata(&dir.path().join("head.safetensors")).unwrap();
    assert_eq!(
        meta.get("gnn_coder.trained").map(String::as_str),
        Some("true")
    );
    let cfg = gnn_coder_model::read_head_config(dir.path()).unwrap();
    assert_eq!(cfg, head);
    // Only the tuned top layer is stored with the head.
    let t = read_safetensors_metadata(&dir.path().join("transformer.safetensors")).unwrap();
    assert_eq!(t.get("gnn_coder.dtype").map(String::as_str), Some("f32"));

    // A model with other weights everywhere except the shared pretrained base (embeddings and
    // the lower layer) becomes the saved one.
    let fresh_with_base = |model: &GnnCoderModel| {
        let other = HeadConfig {
            seed: 99,
            ..cfg.clone()
        };
        let mut fresh = GnnCoderModel::new(&tiny_bert(), &other, &device).unwrap();
        fresh.transformer.embeddings = model.transformer.embeddings.clone();
        fresh.transformer.encoder.layer[0] = model.transformer.encoder.layer[0].clone();
        fresh
    };
    let e = fake_tokens(10, 51);
    let g = random_tree(20, 40, 52);
    let (ids, mask) = batch_tensors(&[&e], &device);
    let gb = graph_batch(&[(&g, &e)], ids.dims()[1], 40);
    let a = to_vec(
        model
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    let mut fresh = fresh_with_base(&model);
    let before = to_vec(
        fresh
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    assert_ne!(a, before);
    assert!(fresh.load_saved(dir.path(), &cfg).unwrap());
    let b = to_vec(
        fresh
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    assert_eq!(a, b);

    // Half precision (what we ship): about half the bytes, the same vectors up to rounding.
    let half_dir = tempfile::tempdir().unwrap();
    model.save(half_dir.path(), &head, true, true).unwrap();
    let size = |d: &std::path::Path| std::fs::metadata(d.join("head.safetensors")).unwrap().len();
    assert!(size(half_dir.path()) * 10 < size(dir.path()) * 6);
    let mut fresh = fresh_with_base(&model);
    fresh.load_saved(half_dir.path(), &cfg).unwrap();
    let c = to_vec(
        fresh
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    let max_diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let diff = max_diff(&a, &c);
    assert!(diff < 1e-2, "f16 weights moved a vector by {diff}");

    // Int8 matrices with scales (what ships): each file shrinks, every matrix is stored as I8,
    // and the loaded model gives the same vectors up to int8 rounding.
    let int8_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        half_dir.path().join("head.json"),
        int8_dir.path().join("head.json"),
    )
    .unwrap();
    for file in ["head.safetensors", "transformer.safetensors"] {
        let rep = gnn_coder_model::quant::quantize_file(
            &half_dir.path().join(file),
            &int8_dir.path().join(file),
            1,
            1.0,
        )
        .unwrap();
        assert!(
            rep.quantized > 0 && rep.bytes_after < rep.bytes_before,
            "{rep:?}"
        );
        let dtypes = gnn_coder_model::read_safetensors_dtypes(&int8_dir.path().join(file)).unwrap();
        assert!(dtypes.iter().any(|(_, d)| d == "I8"), "{dtypes:?}");
    }
    let mut fresh = fresh_with_base(&model);
    assert!(fresh.load_saved(int8_dir.path(), &cfg).unwrap());
    let q = to_vec(
        fresh
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    let diff = max_diff(&a, &q);
    assert!(
        diff > 0.0 && diff < 5e-2,
        "int8 weights moved a vector by {diff}"
    );
    // Dropping a scale is refused with the tensor's name.
    let head_file = int8_dir.path().join("head.safetensors");
    let mut raw = gnn_coder_model::quant::read_raw(&head_file).unwrap();
    let scale = raw
        .tensors
        .keys()
        .find(|k| k.ends_with(".scale"))
        .cloned()
        .unwrap();
    raw.tensors.remove(&scale);
    std::fs::write(&head_file, raw.to_bytes()).unwrap();
    let err = fresh_with_base(&model)
        .load_saved(int8_dir.path(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&scale), "{err}");

    // The same f16 files rewritten by another tool, without our metadata: each tensor loads
    // by its own dtype (before, f16 tensors went into the f32 model and burn's matmul panicked).
    for file in ["head.safetensors", "transformer.safetensors"] {
        rewrite_header(&half_dir.path().join(file), |h| {
            h.as_object_mut().unwrap().remove("__metadata__");
        });
    }
    assert!(
        read_safetensors_metadata(&half_dir.path().join("head.safetensors"))
            .unwrap()
            .is_empty()
    );
    let mut fresh = fresh_with_base(&model);
    fresh.load_saved(half_dir.path(), &cfg).unwrap();
    let d = to_vec(
        fresh
            .forward_code(ids.clone(), mask.clone(), Some(&gb))
            .unwrap(),
    );
    assert_eq!(c, d, "the metadata does not decide how tensors load");
    // A tensor that is not floating point is refused with its name, not a panic.
    rewrite_header(&half_dir.path().join("head.safetensors"), |h| {
        let (name, t) = h
            .as_object_mut()
            .unwrap()
            .iter_mut()
            .find(|(_, v)| v["dtype"] == "F16")
            .unwrap();
        let _ = name;
        t["dtype"] = serde_json::json!("I16");
    });
    let err = fresh_with_base(&model)
        .load_saved(half_dir.path(), &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is I16") && err.contains("floating point"),
        "{err}"
    );

    // A directory without weights is an error, not a panic.
    let empty = tempfile::tempdir().unwrap();
    assert!(fresh.load_saved(empty.path(), &cfg).is_err());
}

/// Rewrites the JSON header of a safetensors file in place (the data stays as it is).
fn rewrite_header(path: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_vec(&header).unwrap();
    while (8 + text.len()) % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// The kind-table slots are fixed for trained weights (new languages are appended), but every
/// registered language must have its own slot rather than sharing the fallback one.
#[test]
fn every_registered_language_has_a_kind_slot() {
    let languages = gnn_coder_syntax::Language::all().expect("language data");
    let mut offsets: Vec<u32> = languages
        .iter()
        .map(|l| {
            assert!(
                gnn_coder_model::KIND_LANGUAGES.contains(&l.name()),
                "{} has no kind slot",
                l.name()
            );
            assert!(l.vocab_size() as u32 <= gnn_coder_model::KIND_SLOT_SIZE);
            gnn_coder_model::kind_offset(l.name())
        })
        .collect();
    offsets.sort();
    offsets.dedup();
    assert_eq!(offsets.len(), languages.len());
}
