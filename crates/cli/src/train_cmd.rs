//! `gnn-coder train`: fine-tune GNN-Coder on (docstring, code) pairs — ours
//! (`data/train/pairs-*.jsonl` from the `mine` tool) or mined from the user's own repositories
//! (`--corpus DIR`, docstrings as weak labels) — and write weights that `index` and `search`
//! load with `--weights`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::Args;
use gnn_coder_model::{
    BertConfig, BertModel, GnnCoderModel, HeadConfig, MODEL_CONFIG_FILE, MODEL_WEIGHTS_FILE,
    TOKENIZER_FILE, TRANSFORMER_WEIGHTS_FILE, TextTokenizer, load_bert_weights, read_head_config,
};
use gnn_coder_train::cache::CacheText;
use gnn_coder_train::{
    Event, Example, PairCaches, StateCache, TrainConfig, example_from_pair, read_pairs,
};

#[derive(Args)]
pub struct TrainArgs {
    /// Training pairs (JSONL from the `mine` tool); repeatable.
    #[arg(long, value_name = "FILE")]
    pairs: Vec<PathBuf>,
    /// Mine training pairs from these source directories instead (functions with a
    /// docstring/doc comment; the first sentence is the query); repeatable.
    #[arg(long, value_name = "DIR")]
    corpus: Vec<PathBuf>,
    /// Validation pairs (JSONL). With --corpus, a package-level split is held out by default.
    #[arg(long, value_name = "FILE")]
    valid: Option<PathBuf>,
    /// Run directory: checkpoints, logs and the final weights (OUT/weights). Running the same
    /// command again resumes from the latest checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Start from these trained weights instead of an untrained head.
    #[arg(long, value_name = "WEIGHTS")]
    init: Option<PathBuf>,
    /// Where cached transformer states are kept (shared between runs; default OUT/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Use at most this many training pairs (a seeded sample; 0 = all).
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// Fine-tune the transformer's top N layers too (0 = frozen transformer).
    #[arg(long, default_value_t = 0)]
    tuned_layers: usize,
    /// Layer whose output the cache keeps for fine-tuning (default: layers - tuned_layers, or 4).
    #[arg(long)]
    split_layer: Option<usize>,
    /// Train without the AST graph network (sequence vector + projections only).
    #[arg(long)]
    no_graph: bool,
    /// Plain top-k pooling (no child-count term in ASTGPool's scores).
    #[arg(long)]
    plain_topk: bool,
    /// Initial bias of the fusion gate of a new head: sigmoid(bias) of each dimension comes
    /// from the sequence vector, the rest from the graph network (4 = 98%, which leaves the
    /// graph network almost unused by training; 0 = an even mix).
    #[arg(long, default_value_t = 0.0)]
    gate_bias: f64,
    /// A new head gives queries and codes one projection (W = I + delta), kept near the
    /// identity by --identity-reg (false: two separate projections, as v1).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    shared_projection: bool,
    /// A new head's graph branch starts at zero (code vectors start as the transformer's).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    zero_init_graph: bool,
    /// Number of FAConv + ASTGPool layers of a new head's graph network (with --init, the
    /// loaded head.json decides).
    #[arg(long, default_value_t = 3, value_name = "N")]
    graph_layers: usize,
    /// Fraction of nodes each ASTGPool layer of a new head keeps, per graph (0 < R <= 1).
    #[arg(long, default_value_t = 0.5, value_name = "R")]
    pool_ratio: f64,
    /// Width of the node states inside a new head's graph network.
    #[arg(long, default_value_t = 256, value_name = "H")]
    graph_hidden: usize,
    /// ASTGPool scores with ln(1 + children) instead of the raw child count.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    log1p_children: bool,
    /// Weight of ||W - I||^2 of the output projections in the loss.
    #[arg(long, default_value_t = 0.01)]
    identity_reg: f64,
    /// Weight of the query-distillation term mean(1 - cos(q, zero-shot q)).
    #[arg(long, default_value_t = 0.5)]
    query_distill: f64,
    /// Weight of the code-distillation term mean(1 - cos(c, zero-shot c)): keeps code vectors
    /// near the pretrained transformer's (the codes' cache then keeps final-layer states too).
    #[arg(long, default_value_t = 0.0)]
    code_distill: f64,
    /// Clip gradients by their global norm (false: per tensor, as v1).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    global_clip: bool,
    /// Do not use a batch's copies of the positive (same code or query text) as negatives.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    dedup_negatives: bool,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// With --tuned-layers: run a batch's codes through the transformer in length-sorted groups
    /// of this many, each padded only to its own longest code (0 = the whole batch at once).
    /// Every code of the batch is still a negative; only padding work is saved.
    #[arg(long, default_value_t = 8)]
    micro_batch: usize,
    /// Hard negatives: build batches from groups of N pairs of one package whose codes BM25
    /// ranks highest for the group's first query (0 = random batches). With a batch of 32 and
    /// N = 8, a query meets 7 close functions of its own package and 24 random ones.
    #[arg(long, default_value_t = 0)]
    hard_negatives: usize,
    #[arg(long, default_value_t = 1.0)]
    epochs: f64,
    /// Stop after this many steps (overrides --epochs).
    #[arg(long, default_value_t = 0)]
    max_steps: usize,
    #[arg(long, default_value_t = 3e-4)]
    head_lr: f64,
    /// Learning rate of the fine-tuned transformer layers.
    #[arg(long, default_value_t = 2e-5)]
    lr: f64,
    #[arg(long, default_value_t = 0.05)]
    temperature: f64,
    #[arg(long, default_value_t = 17)]
    seed: u64,
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Validate every N steps (0: at the end only).
    #[arg(long, default_value_t = 0)]
    eval_every: usize,
    /// Validation pairs used (their codes are the pool).
    #[arg(long, default_value_t = 1000)]
    valid_limit: usize,
    /// Backend that trains: flex (pure Rust, default), tch (LibTorch CPU), tch-cuda, cuda
    /// (burn's CUDA backend) or ndarray; all but flex need the build feature of that name.
    /// The weights it writes are the same files whatever trained them.
    #[arg(long, default_value = "flex")]
    device: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Print progress as JSON lines.
    #[arg(long)]
    json: bool,
}

/// The burn device `name` (see `--device`), or why this build cannot give it.
pub fn training_device(name: &str) -> Result<burn::prelude::Device> {
    use burn::prelude::Device;
    let missing = |feature: &str| {
        anyhow::anyhow!(
            "--device {name}: this gnn-coder was built without that backend; rebuild with \
             `cargo build --release -p gnn-coder-cli --features {feature}`"
        )
    };
    Ok(match name {
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch" => Device::libtorch(),
        #[cfg(feature = "tch")]
        #[allow(deprecated)]
        "tch-cuda" => Device::libtorch_cuda(0),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        "ndarray" => Device::ndarray(),
        "tch" | "tch-cuda" => return Err(missing("tch")),
        "cuda" | "ndarray" => return Err(missing(name)),
        other => bail!("--device {other}: use flex, tch, tch-cuda, cuda or ndarray"),
    })
}

/// Where the pretrained model is and how `train`/`eval` run it.
#[derive(Args)]
pub struct ModelArgs {
    /// Token limit of code and queries (including [CLS]/[SEP]).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Directory of the pretrained model (default: as `gnn-coder index`).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Threads for building the state cache (default: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// The pretrained transformer (+ tokenizer) with optional trained weights applied.
pub struct Loaded {
    pub model: GnnCoderModel,
    /// The transformer state caches are built with: the pretrained one (no trained layers), so
    /// a cache fingerprinted by `tag` (the base model) holds the same states whatever weights
    /// were loaded beside it. `train` swaps in the loaded layers, and adds their checksum to
    /// `tag`, only when its frozen layers include tuned ones.
    pub base: BertModel,
    pub head: HeadConfig,
    pub tokenizer: TextTokenizer,
    pub tag: String,
}

/// Load the base model from `model_dir` onto `device`, then `weights` (if any; else a new head
/// configured by `fresh`, or the default one).
pub fn load_model(
    model_dir: &Path,
    weights: Option<&Path>,
    max_tokens: usize,
    device: &burn::prelude::Device,
    fresh: Option<HeadConfig>,
) -> Result<Loaded> {
    gnn_coder_model::check_model_dir(model_dir)?;
    let bert = BertConfig::from_file(&model_dir.join(MODEL_CONFIG_FILE))?;
    let mut head = match weights {
        Some(w) => read_head_config(w)
            .with_context(|| format!("cannot read the weights in {}", w.display()))?,
        None => fresh.unwrap_or_default(),
    };
    head.graph.d_model = bert.hidden_size;
    let tokenizer = TextTokenizer::from_file(
        &model_dir.join(TOKENIZER_FILE),
        max_tokens.min(bert.max_position_embeddings),
    )?;
    let mut model = GnnCoderModel::new(&bert, &head, device)?;
    load_bert_weights(&mut model.transformer, &model_dir.join(MODEL_WEIGHTS_FILE))?;
    let base = model.transformer.clone();
    if let Some(w) = weights {
        model
            .load_saved(w, &head)
            .with_context(|| format!("cannot load the weights in {}", w.display()))?;
    }
    // Identifies the base model in cache fingerprints.
    let size = std::fs::metadata(model_dir.join(MODEL_WEIGHTS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let tag = format!("{}:{size}", bert.num_hidden_layers);
    Ok(Loaded {
        model,
        base,
        head,
        tokenizer,
        tag,
    })
}

/// Cache `texts` in `dir` (reused when built from the same inputs), with a progress line.
pub fn cached(
    what: &str,
    dir: &Path,
    loaded: &Loaded,
    texts: &[CacheText<'_>],
    split: usize,
    top: bool,
    threads: usize,
    quiet: bool,
) -> Result<StateCache> {
    let started = std::time::Instant::now();
    let progress = |done: usize, total: usize| {
        if !quiet {
            let s = started.elapsed().as_secs_f64();
            eprint!(
                "\rcaching {what}: {done}/{total} ({:.1}/s)   ",
                done as f64 / s.max(1e-9)
            );
        }
    };
    // `Loaded::base` as a plain-device copy: on an autodiff device every op would be recorded
    // for a backward pass.
    let plain = loaded.base.valid();
    let cache = StateCache::load_or_build(
        dir,
        &plain,
        &loaded.tokenizer,
        texts,
        split,
        top,
        threads,
        &loaded.tag,
        &progress,
    )
    .with_context(|| format!("cannot cache the {what} states in {}", dir.display()))?;
    if !quiet {
        eprintln!(
            "\rcached {what}: {} texts, {} tokens ({:.0} s)            ",
            cache.len(),
            cache.meta.tokens,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(cache)
}

/// Query and code caches of `examples` under `dir/{name}-queries` and `dir/{name}-codes`.
pub fn pair_caches(
    name: &str,
    dir: &Path,
    loaded: &Loaded,
    examples: &[Example],
    split: usize,
    code_top: bool,
    threads: usize,
    quiet: bool,
) -> Result<(StateCache, StateCache)> {
    let queries: Vec<CacheText> = examples
        .iter()
        .map(|e| CacheText {
            text: &e.query,
            graph: None,
            kind_offset: 0,
        })
        .collect();
    let codes: Vec<CacheText> = examples
        .iter()
        .map(|e| CacheText {
            text: &e.code,
            graph: e.graph.as_ref(),
            kind_offset: gnn_coder_model::kind_offset(&e.language),
        })
        .collect();
    // Queries always keep their final-layer states (stage 1, query distillation); codes need
    // them except when every layer is fine-tuned (split 0), where the embeddings suffice, unless
    // `code_top` (code distillation) asks for them.
    let q = cached(
        &format!("{name} queries"),
        &dir.join(format!("{name}-queries")),
        loaded,
        &queries,
        split,
        true,
        threads,
        quiet,
    )?;
    let c = cached(
        &format!("{name} code"),
        &dir.join(format!("{name}-codes")),
        loaded,
        &codes,
        split,
        split > 0 || code_top,
        threads,
        quiet,
    )?;
    Ok((q, c))
}

/// `n` worker threads, 0 meaning one per core.
pub fn threads(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    }
}

/// A seeded sample of `limit` items (all when `limit` is 0 or larger than the input), in input
/// order.
fn sample<T: Clone>(items: Vec<T>, limit: usize, seed: u64) -> Vec<T> {
    if limit == 0 || limit >= items.len() {
        return items;
    }
    let mut keep = gnn_coder_train::trainer::epoch_order(items.len(), seed, usize::MAX - 1);
    keep.truncate(limit);
    keep.sort_unstable();
    keep.into_iter().map(|i| items[i].clone()).collect()
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.pairs.is_empty() && args.corpus.is_empty() {
        bail!("give training data: --pairs FILE (from the mine tool) or --corpus DIR");
    }
    if !args.pairs.is_empty() && !args.corpus.is_empty() {
        bail!("--pairs and --corpus cannot be combined");
    }
    let model_dir = gnn_coder_model::find_model_dir(args.model.model_dir.as_deref())
        .map_err(|e| crate::advise(e.into()))?;
    let (train_pairs, valid_pairs) = if args.corpus.is_empty() {
        let mut train = Vec::new();
        for p in &args.pairs {
            train.extend(
                read_pairs(p).with_context(|| format!("cannot read pairs from {}", p.display()))?,
            );
        }
        let valid = match &args.valid {
            Some(v) => {
                read_pairs(v).with_context(|| format!("cannot read pairs from {}", v.display()))?
            }
            None => Vec::new(),
        };
        (train, valid)
    } else {
        mine_corpora(&args)?
    };
    if train_pairs.is_empty() {
        bail!("no training pairs found");
    }
    let train_pairs = sample(train_pairs, args.limit, args.seed);
    let mut cfg = TrainConfig {
        tuned_layers: args.tuned_layers,
        graph: !args.no_graph,
        child_count_score: !args.plain_topk,
        batch_size: args.batch_size,
        epochs: args.epochs,
        max_steps: args.max_steps,
        head_lr: args.head_lr,
        transformer_lr: args.lr,
        temperature: args.temperature,
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        eval_every: args.eval_every,
        valid_limit: args.valid_limit,
        child_count_log1p: args.log1p_children,
        identity_reg: args.identity_reg,
        query_distill: args.query_distill,
        code_distill: args.code_distill,
        global_clip: args.global_clip,
        dedup_negatives: args.dedup_negatives,
        micro_batch: args.micro_batch,
        hard_negatives: args.hard_negatives,
        ..TrainConfig::default()
    };
    cfg.validate()?;

    let device = training_device(&args.device)?.autodiff();
    let mut fresh = HeadConfig::default();
    fresh.shared_projection = args.shared_projection;
    fresh.zero_init_graph = args.zero_init_graph;
    fresh.graph.child_count_log1p = args.log1p_children;
    fresh.graph.num_layers = args.graph_layers;
    fresh.graph.pool_ratio = args.pool_ratio;
    fresh.graph.hidden = args.graph_hidden;
    fresh.validate()?;
    let mut loaded = load_model(
        &model_dir,
        args.init.as_deref(),
        args.model.max_tokens,
        &device,
        Some(fresh),
    )?;
    if args.init.is_some() {
        // Trained weights keep the child-count scale they were trained with.
        cfg.child_count_log1p = loaded.head.graph.child_count_log1p;
    } else {
        let d = loaded.head.graph.d_model;
        loaded.model.head.gate.bias = Some(burn::module::Param::from_tensor(
            burn::prelude::Tensor::full([d], args.gate_bias, &device),
        ));
        loaded.head.gate_init_bias = args.gate_bias;
    }
    let num_layers = loaded.model.transformer.num_layers();
    if args.tuned_layers > num_layers {
        bail!(
            "--tuned-layers {} but the transformer has {num_layers} layers",
            args.tuned_layers
        );
    }
    let split = match args.split_layer {
        Some(s) => s,
        None if args.tuned_layers > 0 => num_layers - args.tuned_layers,
        None => num_layers.min(4),
    };
    // Which transformer builds the caches (`Loaded::base`): the pretrained one when this run
    // fine-tunes again every layer the --init weights tuned (the states below the split are
    // then MiniLM's, and the queries' final states are zero-shot MiniLM's, the distillation
    // target); otherwise the loaded one, whose frozen layers include tuned ones, with the
    // checksum of those layers in the caches' fingerprint.
    if let Some(init) = args.init.as_deref()
        && loaded.head.tuned_layers > args.tuned_layers
    {
        let sum = gnn_coder_model::sha256_hex(&init.join(TRANSFORMER_WEIGHTS_FILE))?;
        loaded.base = loaded.model.transformer.clone();
        loaded.tag = format!("{}+{}", loaded.tag, &sum[..16.min(sum.len())]);
    }
    let quiet = args.json;
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| args.out.join("cache"));
    let max_nodes = 512;
    let examples: Vec<Example> = train_pairs
        .iter()
        .map(|p| example_from_pair(p, max_nodes))
        .collect();
    let with_graph = examples.iter().filter(|e| e.graph.is_some()).count();
    if !quiet {
        eprintln!(
            "{} training pairs ({} with an AST graph), {} validation pairs",
            examples.len(),
            with_graph,
            valid_pairs.len().min(args.valid_limit)
        );
    }
    let groups = (args.hard_negatives > 0).then(|| {
        let started = std::time::Instant::now();
        let queries: Vec<&str> = examples.iter().map(|e| e.query.as_str()).collect();
        let codes: Vec<&str> = examples.iter().map(|e| e.code.as_str()).collect();
        let packages: Vec<&str> = train_pairs.iter().map(|p| p.package.as_str()).collect();
        let groups = gnn_coder_train::negatives::bm25_groups(
            &queries,
            &codes,
            &packages,
            args.hard_negatives,
            args.seed,
        );
        if !quiet {
            eprintln!(
                "hard negatives: {} groups of up to {} same-package pairs ({:.1} s)",
                groups.len(),
                args.hard_negatives,
                started.elapsed().as_secs_f64()
            );
        }
        groups
    });
    let nthreads = threads(args.model.threads);
    let (tq, tc) = pair_caches(
        "train",
        &cache_dir,
        &loaded,
        &examples,
        split,
        cfg.code_distill > 0.0,
        nthreads,
        quiet,
    )?;
    let valid_examples: Vec<Example> = valid_pairs
        .iter()
        .take(args.valid_limit)
        .map(|p| example_from_pair(p, max_nodes))
        .collect();
    let valid = if valid_examples.is_empty() {
        None
    } else {
        Some(pair_caches(
            "valid",
            &cache_dir,
            &loaded,
            &valid_examples,
            split,
            false,
            nthreads,
            quiet,
        )?)
    };

    let stop: &'static AtomicBool = &STOP;
    install_stop_handler();
    let log_path = args.out.join("log.jsonl");
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let json = args.json;
    let mut report = |e: &Event| {
        use std::io::Write;
        let line = serde_json::to_string(e).unwrap_or_default();
        let is_step = matches!(e, Event::Step { .. });
        if !is_step || matches!(e, Event::Step { step, .. } if step % 10 == 0) {
            let _ = writeln!(log, "{line}");
        }
        if json {
            println!("{line}");
            return;
        }
        match e {
            Event::Start {
                step,
                total,
                pairs,
                resumed,
            } => eprintln!(
                "{} at step {step}/{total} over {pairs} pairs",
                if *resumed { "resuming" } else { "training" }
            ),
            Event::Step {
                step,
                total,
                epoch,
                loss,
                lr,
                pairs_per_s,
            } => eprint!(
                "\rstep {step}/{total}  epoch {epoch:.2}  loss {loss:.4}  lr x{lr:.3}  {pairs_per_s:.1} pairs/s   "
            ),
            Event::Valid { step, metrics, mam } => eprintln!(
                "\nvalid @ {step}: MRR@10 {:.4}  R@1 {:.4}  R@10 {:.4}  MAM {mam:.4}  (n={})",
                metrics.mrr10, metrics.r1, metrics.r10, metrics.n
            ),
            Event::Checkpoint { .. } => {}
        }
    };
    let valid_refs = valid.as_ref().map(|(q, c)| PairCaches {
        queries: q,
        codes: c,
        groups: None,
    });
    let (model, report_out) = gnn_coder_train::train(
        loaded.model,
        &loaded.head,
        &cfg,
        PairCaches {
            queries: &tq,
            codes: &tc,
            groups: groups.as_deref(),
        },
        valid_refs,
        &args.out,
        stop,
        &mut report,
    )?;
    if !json {
        eprintln!();
    }
    if !report_out.completed {
        bail!(
            "training stopped at step {} of {}; its checkpoint is in {}; run the same command \
             again to resume (no weights were written)",
            report_out.steps,
            report_out.total_steps,
            args.out.join("checkpoints").display()
        );
    }
    let mut head = loaded.head.clone();
    head.tuned_layers = cfg.tuned_layers;
    head.graph.child_count_score = cfg.child_count_score;
    head.graph.child_count_log1p = cfg.child_count_log1p;
    head.max_tokens = args.model.max_tokens;
    head.use_graph = cfg.graph;
    let weights = args.out.join("weights");
    model
        .save(&weights, &head, true, true)
        .with_context(|| format!("cannot write the weights to {}", weights.display()))?;
    gnn_coder_model::write_checksums(&weights)?;
    let summary = serde_json::json!({
        "report": report_out,
        "config": cfg,
        "train_pairs": examples.len(),
        "valid_pairs": valid_examples.len(),
        "pairs": args.pairs,
        "corpus": args.corpus,
        "init": args.init,
        "split_layer": split,
    });
    let summary_path = args.out.join("report.json");
    std::fs::write(&summary_path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({
            "weights": weights,
            "steps": report_out.steps,
            "seconds": report_out.seconds,
            "valid": report_out.valid,
            "valid_mam": report_out.valid_mam,
        }))?
    );
    Ok(())
}

/// Set by Ctrl-C or SIGTERM: the trainer writes a checkpoint after the step it is in and stops.
static STOP: AtomicBool = AtomicBool::new(false);

/// The first Ctrl-C (or SIGTERM) stops training at a checkpoint; a second one quits at once.
fn install_stop_handler() {
    let spawned = std::thread::Builder::new()
        .name("gnn-coder-signals".into())
        .spawn(|| {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                loop {
                    #[cfg(unix)]
                    {
                        let sigterm = async {
                            match term.as_mut() {
                                Some(t) => {
                                    t.recv().await;
                                }
                                None => std::future::pending::<()>().await,
                            }
                        };
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = sigterm => {}
                        }
                    }
                    #[cfg(not(unix))]
                    let _ = tokio::signal::ctrl_c().await;
                    if STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        eprintln!("\nstopping now (the last checkpoint is kept)");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "\nstopping: a checkpoint is written after this step (press Ctrl-C again to quit at once)"
                    );
                }
            });
        });
    if let Err(e) = spawned {
        eprintln!(
            "warning: no Ctrl-C handler ({e}); an interrupt loses the steps since the last checkpoint"
        );
    }
}

/// Mine pairs from `--corpus` directories: every directory is one package; with no --valid,
/// a package-level tenth is held out for validation (all packages train if there is just one).
fn mine_corpora(
    args: &TrainArgs,
) -> Result<(Vec<gnn_coder_train::Pair>, Vec<gnn_coder_train::Pair>)> {
    let opts = gnn_coder_train::MineOptions::default();
    let mut all = Vec::new();
    for dir in &args.corpus {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "corpus".to_string());
        let mined = gnn_coder_train::mine_package(dir, &name, "", &[], &[], &opts)
            .with_context(|| format!("cannot mine {}", dir.display()))?;
        if !args.json {
            eprintln!("{}: {} pairs", dir.display(), mined.pairs.len());
        }
        all.push((name, mined.pairs));
    }
    let valid_from_file = match &args.valid {
        Some(v) => Some(read_pairs(v)?),
        None => None,
    };
    let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
    let held: std::collections::BTreeSet<String> = if valid_from_file.is_some() || names.len() < 2 {
        Default::default()
    } else {
        gnn_coder_train::split_packages(&names, 0.1)
    };
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    for (name, pairs) in all {
        if held.contains(&name) {
            valid.extend(pairs);
        } else {
            train.extend(pairs);
        }
    }
    Ok((train, valid_from_file.unwrap_or(valid)))
}
