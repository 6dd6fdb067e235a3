//! The trainer on a tiny random transformer: the state cache round-trips through disk, a few
//! steps of each stage lower the loss on a fixed batch, the schedule and data order are what the
//! docs say, and mismatched settings are errors. Uses the real tokenizer when the model has been
//! fetched (`scripts/fetch-model.sh`), else skips the model parts.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::prelude::*;
use gnn_coder_model::{BertConfig, GnnCoderModel, GraphConfig, HeadConfig, TextTokenizer};
use gnn_coder_train::cache::{CacheInputs, CacheText};
use gnn_coder_train::trainer::{encode_cache, epoch_order, grouped_order};
use gnn_coder_train::{Event, PairCaches, StateCache, TrainConfig, TrainError, train};

fn tokenizer() -> Option<TextTokenizer> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2/tokenizer.json");
    if !path.is_file() {
        assert!(std::env::var_os("CI").is_none(), "CI must fetch the model");
        eprintln!("skipping: no tokenizer at {}", path.display());
        return None;
    }
    Some(TextTokenizer::from_file(&path, 48).unwrap())
}

fn tiny_bert() -> BertConfig {
    BertConfig {
        vocab_size: 30522,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        max_position_embeddings: 64,
        ..BertConfig::default()
    }
}

fn tiny_head() -> HeadConfig {
    HeadConfig {
        graph: GraphConfig {
            d_model: 16,
            hidden: 8,
            kind_vocab_size: 600,
            ..GraphConfig::default()
        },
        out_dim: 16,
        gate_init_bias: 0.0,
        ..HeadConfig::default()
    }
}

fn examples(n: usize) -> Vec<(String, String, gnn_coder_syntax::AstGraph)> {
    let lang = gnn_coder_syntax::Language::by_name("python").unwrap();
    let words = [
        "alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta",
    ];
    (0..n)
        .map(|i| {
            let w = words[i % words.len()];
            let code = format!("def {w}_{i}(x):\n    y = x * {i}\n    return y + len('{w}')\n");
            let opts = gnn_coder_syntax::ExtractOptions {
                graphs: true,
                max_nodes: 64,
            };
            let parsed =
                gnn_coder_syntax::extract_file(lang, "m.py", code.as_bytes(), &opts).unwrap();
            let graph = parsed.graphs[0].clone();
            (format!("compute {w} number {i}"), code, graph)
        })
        .collect()
}

fn caches(
    tok: &TextTokenizer,
    bert: &GnnCoderModel,
    n: usize,
    split: usize,
) -> (StateCache, StateCache) {
    let ex = examples(n);
    let q: Vec<CacheText> = ex
        .iter()
        .map(|(q, _, _)| CacheText {
            text: q,
            graph: None,
            kind_offset: 0,
        })
        .collect();
    let c: Vec<CacheText> = ex
        .iter()
        .map(|(_, c, g)| CacheText {
            text: c,
            graph: Some(g),
            kind_offset: 0,
        })
        .collect();
    let plain = bert.transformer.valid();
    let qc = StateCache::build(inputs(&plain, tok, &q, split, true), 8).unwrap();
    // As the CLI builds them: codes skip the final layer when every layer is fine-tuned.
    let cc = StateCache::build(inputs(&plain, tok, &c, split, split > 0), 8).unwrap();
    (qc, cc)
}

/// Cache inputs with 2 workers, the "tiny" tag and no progress.
fn inputs<'a>(
    model: &'a gnn_coder_model::BertModel,
    tokenizer: &'a TextTokenizer,
    texts: &'a [CacheText<'a>],
    split: usize,
    top: bool,
) -> CacheInputs<'a> {
    CacheInputs {
        model,
        tokenizer,
        texts,
        split,
        top,
        workers: 2,
        model_tag: "tiny",
        progress: &no_progress,
    }
}

fn no_progress(_done: usize, _total: usize) {}

fn model(device: &Device) -> GnnCoderModel {
    GnnCoderModel::new(&tiny_bert(), &tiny_head(), device).unwrap()
}

fn out_dir(tmp: &Path, name: &str) -> PathBuf {
    tmp.join(name)
}

#[test]
fn cache_round_trips_through_disk() {
    let Some(tok) = tokenizer() else { return };
    let m = model(&Device::flex());
    let (_, cc) = caches(&tok, &m, 10, 1);
    assert_eq!(cc.len(), 10);
    assert_eq!(cc.lower(3).len(), cc.items[3].len * 16);
    // Layer 1 of 2 is not the last layer: the two kinds of states differ.
    assert_ne!(cc.lower(3), cc.top(3));
    let tmp = tempfile::tempdir().unwrap();
    cc.save(tmp.path()).unwrap();
    let back = StateCache::load(tmp.path()).unwrap();
    assert_eq!(back.meta, cc.meta);
    assert_eq!(back.items, cc.items);
    for i in 0..cc.len() {
        assert_eq!(back.lower(i), cc.lower(i));
        assert_eq!(back.top(i), cc.top(i));
    }
    // A truncated states file is an error, not a panic.
    let f = tmp.path().join("top.f16");
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    assert!(StateCache::load(tmp.path()).is_err());
}

fn run(stage_layers: usize, graph: bool) {
    run_with(stage_layers, graph, tiny_head(), |_| {});
}

fn run_with(stage_layers: usize, graph: bool, head: HeadConfig, tweak: impl Fn(&mut TrainConfig)) {
    let Some(tok) = tokenizer() else { return };
    let device = Device::flex().autodiff();
    let m = GnnCoderModel::new(&tiny_bert(), &head, &device).unwrap();
    let split = if stage_layers > 0 {
        2 - stage_layers
    } else {
        1
    };
    let (qc, cc) = caches(&tok, &m, 24, split);
    let mut cfg = TrainConfig {
        tuned_layers: stage_layers,
        graph,
        batch_size: 8,
        max_steps: 12,
        head_lr: 5e-3,
        transformer_lr: 1e-3,
        checkpoint_every: 5,
        valid_limit: 24,
        ..TrainConfig::default()
    };
    tweak(&mut cfg);
    let tmp = tempfile::tempdir().unwrap();
    // Hard-negative groups, when asked for: consecutive pairs in groups of the configured size.
    let groups: Vec<Vec<usize>> = (0..24)
        .collect::<Vec<_>>()
        .chunks(cfg.hard_negatives.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let pairs = PairCaches {
        queries: &qc,
        codes: &cc,
        groups: (cfg.hard_negatives > 0).then_some(&groups[..]),
    };
    // Loss on the whole set before and after, with the model's own encoders.
    let before = {
        let plain = m.valid();
        let c = encode_cache(&plain, stage_layers, Some(graph), &cc, usize::MAX).unwrap();
        let q = encode_cache(&plain, stage_layers, None, &qc, usize::MAX).unwrap();
        gnn_coder_train::retrieval(&q, &c, &(0..24).collect::<Vec<_>>()).mrr10
    };
    let mut losses = Vec::new();
    let mut checkpoints = 0;
    let (trained, report) = train(
        m,
        &head,
        &cfg,
        pairs,
        Some(pairs),
        &out_dir(tmp.path(), "run"),
        &AtomicBool::new(false),
        &mut |e| match e {
            Event::Step { loss, .. } => losses.push(*loss),
            Event::Checkpoint { .. } => checkpoints += 1,
            _ => {}
        },
    )
    .unwrap();
    assert!(report.completed);
    assert_eq!(report.steps, 12);
    assert_eq!(checkpoints, 3); // steps 5, 10 and the last
    assert!(losses.iter().all(|l| l.is_finite()));
    let first: f64 = losses[..3].iter().sum();
    let last: f64 = losses[9..].iter().sum();
    assert!(last < first, "loss did not fall: {losses:?}");
    let after = report.valid.unwrap().mrr10;
    assert!(
        after > before,
        "training on the validation pairs did not help: {before} -> {after}"
    );
    if head.shared_projection {
        // Queries and codes go through one projection, and it moved.
        let w = trained.head.out_proj.weight.val();
        let eye: Tensor<2> = Tensor::eye(16, &w.device());
        let moved: f32 = (w - eye).abs().sum().try_into_vec_as::<f32>().unwrap()[0];
        assert!(moved > 0.0, "the shared projection did not train");
        let q: f32 = trained
            .head
            .query_proj
            .weight
            .val()
            .sub(Tensor::eye(16, &device))
            .abs()
            .sum()
            .try_into_vec_as::<f32>()
            .unwrap()[0];
        assert_eq!(q, 0.0, "query_proj is unused with a shared projection");
        // Saved, query_proj is out_proj's copy, so any reader gets the same query vectors.
        let dir = tmp.path().join("saved");
        let mut cfg_saved = head.clone();
        cfg_saved.tuned_layers = stage_layers;
        trained.save(&dir, &cfg_saved, true, false).unwrap();
        let mut back = GnnCoderModel::new(&tiny_bert(), &cfg_saved, &Device::flex()).unwrap();
        back.load_saved(&dir, &cfg_saved).unwrap();
        let a: Vec<f32> = back
            .head
            .query_proj
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = trained
            .head
            .out_proj
            .weight
            .val()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_eq!(a, b);
    }
}

/// The v2 recipe: one shared projection kept near I, a zero-started graph branch, log1p child
/// counts, query distillation, global-norm clipping and duplicate pairs masked as negatives.
#[test]
fn v2_recipe_learns() {
    let mut head = tiny_head();
    head.shared_projection = true;
    head.zero_init_graph = true;
    head.graph.child_count_log1p = true;
    run_with(0, true, head.clone(), |c| {
        c.child_count_log1p = true;
        c.identity_reg = 0.01;
        c.query_distill = 0.5;
        c.global_clip = true;
        c.dedup_negatives = true;
    });
    run_with(1, true, head, |c| {
        c.child_count_log1p = true;
        c.query_distill = 0.5;
        c.global_clip = true;
        c.clip_norm = 0.5;
    });
}

/// The cache's states come from the forward-only kernels; they match burn's forward pass, and
/// equal texts get equal, non-zero hashes.
#[test]
fn cache_states_match_burn_and_hash_texts() {
    let Some(tok) = tokenizer() else { return };
    let m = model(&Device::flex());
    let texts = [
        "def f(x):\n    return x",
        "compute the sum",
        "def f(x):\n    return x",
    ];
    let items: Vec<CacheText> = texts
        .iter()
        .map(|t| CacheText {
            text: t,
            graph: None,
            kind_offset: 0,
        })
        .collect();
    let cache = StateCache::build(inputs(&m.transformer, &tok, &items, 1, true), 2).unwrap();
    assert_ne!(cache.items[0].hash, 0);
    assert_eq!(cache.items[0].hash, cache.items[2].hash);
    assert_ne!(cache.items[0].hash, cache.items[1].hash);
    // Split 0 without final-layer states: the embeddings' output alone.
    let embeddings = StateCache::build(inputs(&m.transformer, &tok, &items, 0, false), 2).unwrap();
    assert!(!embeddings.meta.has_top);
    assert!(embeddings.top(0).is_empty());
    let device = Device::flex();
    for (i, t) in texts.iter().enumerate() {
        let enc = tok.encode(t).unwrap();
        let (ids, mask) = gnn_coder_model::pad_batch(std::slice::from_ref(&enc), &[0], &device);
        let bias = gnn_coder_model::BertModel::attention_bias(mask);
        let x = m.transformer.embed(ids);
        let lower = m.transformer.forward_layers(x, bias.clone(), 0..1);
        let top = m.transformer.forward_layers(lower.clone(), bias, 1..2);
        let embedded = m
            .transformer
            .embed(gnn_coder_model::pad_batch(std::slice::from_ref(&enc), &[0], &device).0);
        for (burn_states, cached) in [
            (lower, cache.lower(i)),
            (top, cache.top(i)),
            (embedded, embeddings.lower(i)),
        ] {
            let want: Vec<f32> = burn_states.try_into_vec_as::<f32>().unwrap();
            assert_eq!(want.len(), cached.len());
            for (w, c) in want.iter().zip(cached) {
                // f16 storage: relative error ~5e-4.
                assert!(
                    (w - c.to_f32()).abs() <= 2e-3 * w.abs().max(1.0),
                    "{w} vs {c}"
                );
            }
        }
    }
}

/// Every layer fine-tuned from a cache of the embeddings' output (codes cached without their
/// final-layer states), with the batch's codes run in length-sorted micro-batches.
#[test]
fn every_layer_fine_tunes_from_embeddings_in_micro_batches() {
    let mut head = tiny_head();
    head.shared_projection = true;
    head.zero_init_graph = true;
    run_with(2, true, head, |c| {
        c.micro_batch = 3;
        c.query_distill = 0.5;
        c.global_clip = true;
    });
}

/// Batches of hard-negative groups (whole groups shuffled) train as random batches do.
#[test]
fn hard_negative_groups_learn() {
    let mut head = tiny_head();
    head.shared_projection = true;
    run_with(1, true, head, |c| c.hard_negatives = 4);
}

/// Code distillation holds code vectors near the zero-shot transformer's: after the same
/// steps, with a heavy weight they end closer to them than without it.
#[test]
fn code_distillation_keeps_codes_near_zero_shot() {
    let Some(tok) = tokenizer() else { return };
    let device = Device::flex().autodiff();
    let mut head = tiny_head();
    head.shared_projection = true;
    let m = GnnCoderModel::new(&tiny_bert(), &head, &device).unwrap();
    let (qc, cc) = caches(&tok, &m, 24, 1);
    let plain_device = Device::flex();
    let c0 = gnn_coder_train::trainer::zero_shot_vectors(&cc, &plain_device).unwrap();
    let closeness = |code_distill: f64| {
        let cfg = TrainConfig {
            tuned_layers: 1,
            batch_size: 8,
            max_steps: 12,
            head_lr: 5e-3,
            transformer_lr: 1e-3,
            code_distill,
            ..TrainConfig::default()
        };
        let tmp = tempfile::tempdir().unwrap();
        let pairs = PairCaches {
            queries: &qc,
            codes: &cc,
            groups: None,
        };
        let (trained, _) = train(
            m.clone(),
            &head,
            &cfg,
            pairs,
            None,
            tmp.path(),
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap();
        let c = encode_cache(&trained.valid(), 1, Some(true), &cc, usize::MAX).unwrap();
        c.iter()
            .zip(&c0)
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
            .sum::<f32>()
            / c.len() as f32
    };
    let (free, held) = (closeness(0.0), closeness(5.0));
    assert!(
        held > free,
        "mean cos to zero-shot: {held} with, {free} without"
    );
}

/// One run of `train` on `qc`/`cc` in a fresh directory, without validation pairs.
fn train_on(
    m: &GnnCoderModel,
    cfg: &TrainConfig,
    qc: &StateCache,
    cc: &StateCache,
    report: &mut dyn FnMut(&Event),
) -> Result<(), TrainError> {
    train_groups(m, cfg, qc, cc, None, report)
}

/// [`train_on`] with hard-negative groups.
fn train_groups(
    m: &GnnCoderModel,
    cfg: &TrainConfig,
    qc: &StateCache,
    cc: &StateCache,
    groups: Option<&[Vec<usize>]>,
    report: &mut dyn FnMut(&Event),
) -> Result<(), TrainError> {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = PairCaches {
        queries: qc,
        codes: cc,
        groups,
    };
    let stop = AtomicBool::new(false);
    train(
        m.clone(),
        &tiny_head(),
        cfg,
        pairs,
        None,
        tmp.path(),
        &stop,
        report,
    )
    .map(|_| ())
}

/// Micro-batches change only how the codes are padded: the first step's loss is the one of the
/// whole batch at once (a misaligned query/code order would change it).
#[test]
fn micro_batches_give_the_same_loss() {
    let Some(tok) = tokenizer() else { return };
    let device = Device::flex().autodiff();
    let m = model(&device);
    let (qc, cc) = caches(&tok, &m, 16, 1);
    let first_loss = |micro: usize| {
        let cfg = TrainConfig {
            tuned_layers: 1,
            batch_size: 16,
            max_steps: 1,
            micro_batch: micro,
            ..TrainConfig::default()
        };
        let mut loss = f64::NAN;
        train_on(&m, &cfg, &qc, &cc, &mut |e| {
            if let Event::Step { loss: l, .. } = e {
                loss = *l;
            }
        })
        .unwrap();
        loss
    };
    let whole = first_loss(0);
    for micro in [1, 3, 5] {
        let l = first_loss(micro);
        assert!(
            (l - whole).abs() < 1e-4 * whole.abs().max(1.0),
            "micro-batch {micro}: loss {l} vs {whole}"
        );
    }
}

#[test]
fn stage_one_frozen_transformer_with_graph_learns() {
    run(0, true);
}

#[test]
fn stage_two_tuned_top_layer_learns() {
    run(1, false);
}

#[test]
fn mismatched_cache_split_is_a_config_error() {
    let Some(tok) = tokenizer() else { return };
    let device = Device::flex().autodiff();
    let m = model(&device);
    let config_error = |split: usize, tuned_layers: usize| {
        let (qc, cc) = caches(&tok, &m, 16, split);
        let cfg = TrainConfig {
            tuned_layers,
            batch_size: 8,
            max_steps: 2,
            ..TrainConfig::default()
        };
        let err = train_on(&m, &cfg, &qc, &cc, &mut |_| {}).unwrap_err();
        assert!(matches!(err, TrainError::Config(_)), "{err}");
        (qc.meta.has_top, cc.meta.has_top)
    };
    // Cache after layer 1; fine-tuning 2 of 2 layers needs the embeddings' output (layer 0).
    config_error(1, 2);
    // Codes cached without final-layer states (split 0) cannot train a frozen transformer.
    assert_eq!(config_error(0, 0), (true, false));
    // Nor distill codes toward the zero-shot transformer's vectors.
    let (qc, cc) = caches(&tok, &m, 16, 0);
    let cfg = TrainConfig {
        tuned_layers: 2,
        batch_size: 8,
        max_steps: 2,
        code_distill: 0.5,
        ..TrainConfig::default()
    };
    let err = train_on(&m, &cfg, &qc, &cc, &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, TrainError::Config(m) if m.contains("code distillation")),
        "{err}"
    );

    // Hard negatives: a group size of 1 is refused, and so are missing groups.
    let (qc, cc) = caches(&tok, &m, 16, 1);
    let hard = |size: usize| TrainConfig {
        batch_size: 8,
        max_steps: 2,
        hard_negatives: size,
        ..TrainConfig::default()
    };
    let halves = [(0..8).collect::<Vec<_>>(), (8..16).collect()];
    let err = train_groups(&m, &hard(1), &qc, &cc, Some(&halves), &mut |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
    let err = train_groups(&m, &hard(4), &qc, &cc, None, &mut |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Config(_)), "{err}");
    // Groups must cover every pair exactly once.
    let bad_groups = [
        vec![(0..8).collect(), (8..15).collect()],
        vec![(0..8).collect(), (8..16).collect(), vec![3]],
        vec![(0..8).collect(), (9..17).collect()],
    ];
    for g in bad_groups {
        let err = train_groups(&m, &hard(4), &qc, &cc, Some(&g), &mut |_| {}).unwrap_err();
        assert!(matches!(err, TrainError::Input(_)), "{err}");
    }
    train_groups(&m, &hard(4), &qc, &cc, Some(&halves), &mut |_| {}).unwrap();
}

#[test]
fn schedule_and_data_order() {
    let cfg = TrainConfig {
        warmup: 0.1,
        ..TrainConfig::default()
    };
    // 100 steps: 10 warm-up steps rising to 1, then cosine down to ~0.
    assert!((cfg.lr_factor(0, 100) - 0.1).abs() < 1e-9);
    assert!((cfg.lr_factor(9, 100) - 1.0).abs() < 1e-9);
    assert!((cfg.lr_factor(10, 100) - 1.0).abs() < 1e-9);
    assert!((cfg.lr_factor(55, 100) - 0.5).abs() < 1e-9);
    assert!(cfg.lr_factor(99, 100) < 0.001);
    let a = epoch_order(50, 17, 0);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(a, epoch_order(50, 17, 0));
    assert_ne!(a, epoch_order(50, 17, 1));
    assert_ne!(a, epoch_order(50, 18, 0));
    // Hard-negative groups stay whole and every pair comes once per epoch.
    let groups: Vec<Vec<usize>> = vec![vec![4, 0, 2], vec![1], vec![3, 5], vec![6, 9, 8, 7]];
    let g0 = grouped_order(&groups, 17, 0);
    let mut sorted = g0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    let mut at = 0;
    while at < g0.len() {
        let g = groups.iter().find(|g| g[0] == g0[at]).unwrap();
        assert_eq!(&g0[at..at + g.len()], &g[..]);
        at += g.len();
    }
    assert!((1..6).any(|e| grouped_order(&groups, 17, e) != g0));
    assert_eq!(
        TrainConfig {
            epochs: 2.5,
            batch_size: 10,
            ..cfg.clone()
        }
        .total_steps(100),
        25
    );
    assert!(
        TrainConfig {
            batch_size: 1,
            ..cfg
        }
        .validate()
        .is_err()
    );
}
