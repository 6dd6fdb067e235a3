//! `gnn-coder train`: fine-tune GNN-Coder on (docstring, code) pairs — ours
//! (`data/train/pairs-*.jsonl` from the `mine` tool) or mined from the user's own repositories
//! (`--corpus DIR`, docstrings as weak labels) — and write weights that `index` and `search`
//! load with `--weights`.
//!
//! The run itself is [`gnn_coder_train::run`]; this module turns the flags into its
//! [`TrainJob`], draws its progress, and stops it at a checkpoint on Ctrl-C.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::Result;
use clap::Args;
use gnn_coder_model::{GraphConfig, HeadConfig};
use gnn_coder_train::{Event, Prepared, Progress, TrainConfig, TrainData, TrainJob};

use crate::train_flags::{ModelArgs, draw_cache_progress};

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

impl TrainArgs {
    /// Where the training pairs come from.
    fn data(&self) -> TrainData {
        TrainData {
            pairs: self.pairs.clone(),
            corpus: self.corpus.clone(),
            valid: self.valid.clone(),
            limit: self.limit,
        }
    }

    /// The trainer's hyper-parameters.
    fn train_config(&self) -> TrainConfig {
        TrainConfig {
            tuned_layers: self.tuned_layers,
            graph: !self.no_graph,
            child_count_score: !self.plain_topk,
            batch_size: self.batch_size,
            epochs: self.epochs,
            max_steps: self.max_steps,
            head_lr: self.head_lr,
            transformer_lr: self.lr,
            temperature: self.temperature,
            seed: self.seed,
            checkpoint_every: self.checkpoint_every,
            eval_every: self.eval_every,
            valid_limit: self.valid_limit,
            child_count_log1p: self.log1p_children,
            identity_reg: self.identity_reg,
            query_distill: self.query_distill,
            code_distill: self.code_distill,
            global_clip: self.global_clip,
            dedup_negatives: self.dedup_negatives,
            micro_batch: self.micro_batch,
            hard_negatives: self.hard_negatives,
            ..TrainConfig::default()
        }
    }

    /// The configuration of a new head (without --init).
    fn new_head(&self) -> HeadConfig {
        let defaults = HeadConfig::default();
        HeadConfig {
            shared_projection: self.shared_projection,
            zero_init_graph: self.zero_init_graph,
            graph: GraphConfig {
                child_count_log1p: self.log1p_children,
                num_layers: self.graph_layers,
                pool_ratio: self.pool_ratio,
                hidden: self.graph_hidden,
                ..defaults.graph.clone()
            },
            ..defaults
        }
    }

    /// The whole run, with the pretrained model in `model_dir`.
    fn job(&self, model_dir: PathBuf) -> TrainJob {
        TrainJob {
            data: self.data(),
            out: self.out.clone(),
            init: self.init.clone(),
            cache_dir: self.cache_dir.clone(),
            split_layer: self.split_layer,
            head: self.new_head(),
            gate_bias: self.gate_bias,
            config: self.train_config(),
            device: self.device.clone(),
            model: self.model.config(model_dir),
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    args.data().check()?;
    let model_dir = gnn_coder_model::find_model_dir(args.model.model_dir.as_deref())
        .map_err(|e| crate::advice::advise(e.into()))?;
    let json = args.json;
    let progress = |p: &Progress<'_>| draw(p, json);
    let prepared = Prepared::prepare(args.job(model_dir), &progress)?;
    install_stop_handler();
    let out = prepared.train(&STOP, &progress)?;
    println!(
        "{}",
        serde_json::to_string(&serde_json::json!({
            "weights": out.weights,
            "steps": out.report.steps,
            "seconds": out.report.seconds,
            "valid": out.report.valid,
            "valid_mam": out.report.valid_mam,
        }))?
    );
    Ok(())
}

/// Draw a run's progress: lines on stderr, or (`--json`) the trainer's events as JSON lines on
/// stdout.
fn draw(p: &Progress<'_>, json: bool) {
    match *p {
        Progress::Train(e) => draw_event(e, json),
        _ if json => {}
        Progress::Mined { dir, pairs } => eprintln!("{}: {pairs} pairs", dir.display()),
        Progress::Pairs {
            train,
            with_graph,
            valid,
        } => eprintln!(
            "{train} training pairs ({with_graph} with an AST graph), {valid} validation pairs"
        ),
        Progress::HardNegatives {
            groups,
            size,
            seconds,
        } => eprintln!(
            "hard negatives: {groups} groups of up to {size} same-package pairs ({seconds:.1} s)"
        ),
        Progress::TrainingDone => eprintln!(),
        _ => draw_cache_progress(p, json),
    }
}

/// One event of the trainer.
fn draw_event(e: &Event, json: bool) {
    if json {
        println!("{}", serde_json::to_string(e).unwrap_or_default());
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
