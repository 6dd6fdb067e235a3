//! A whole training run, from pair files (or source directories) to a weights directory.
//!
//! # Design
//!
//! [`crate::trainer::train`] trains a model on caches; this module does everything around it,
//! in two phases so a caller can act between them (the command line installs its Ctrl-C
//! handler only once the long set-up is over, so an early Ctrl-C still quits at once):
//!
//! 1. [`Prepared::prepare`] — read the pairs of [`TrainData`] (or mine them from source
//!    directories) and take a seeded sample; pick the burn device ([`crate::device`]); load the
//!    base model with `--init` weights or a new head ([`crate::setup`]) and choose the cached
//!    layer; mine hard-negative groups; build or reload the state caches.
//! 2. [`Prepared::train`] — train into the run directory, appending the trainer's events to
//!    `OUT/log.jsonl` (every event but steps, and every tenth step), resuming from its latest
//!    checkpoint; then write `OUT/weights` (with checksums) and `OUT/report.json`.
//!
//! Nothing is printed: every stage reports through a [`ProgressFn`]. A run stopped through
//! its `stop` flag ends with [`TrainError::Stopped`] and leaves its checkpoint to resume from.
//!
//! The run directory's files are the same whoever drives the run: `train.json`, `checkpoints/`
//! (written by the trainer), `log.jsonl`, `weights/` (`head.json` included) and `report.json`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Param;
use burn::prelude::{Device, Tensor};
use gnn_coder_model::{GnnCoderModel, HeadConfig, TRANSFORMER_WEIGHTS_FILE};

use crate::cache::StateCache;
use crate::device::training_device;
use crate::error::{ErrorContext, Result, TrainError};
use crate::example::{Example, example_from_pair, read_pairs};
use crate::mine::{MineOptions, Pair, mine_package, split_packages};
use crate::progress::{Progress, ProgressFn};
use crate::setup::{CacheBuilder, Loaded, MAX_GRAPH_NODES, ModelConfig, load_model, threads};
use crate::trainer::{Event, PairCaches, TrainConfig, TrainReport, epoch_order};

/// Where the training pairs come from.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainData {
    /// Pair files (JSONL from the `mine` tool).
    pub pairs: Vec<PathBuf>,
    /// Or source directories to mine pairs from, one package each (not with `pairs`).
    pub corpus: Vec<PathBuf>,
    /// Validation pairs; with `corpus` and none given, a package-level tenth is held out.
    pub valid: Option<PathBuf>,
    /// Use at most this many training pairs (a seeded sample; 0 = all).
    pub limit: usize,
}

impl TrainData {
    /// Exactly one of `pairs` and `corpus` is given.
    pub fn check(&self) -> Result<()> {
        if self.pairs.is_empty() && self.corpus.is_empty() {
            return Err(TrainError::Input(
                "give training data: --pairs FILE (from the mine tool) or --corpus DIR".into(),
            ));
        }
        if !self.pairs.is_empty() && !self.corpus.is_empty() {
            return Err(TrainError::Input(
                "--pairs and --corpus cannot be combined".into(),
            ));
        }
        Ok(())
    }

    /// The training pairs (sampled with `seed`) and the validation pairs.
    pub fn load(&self, seed: u64, progress: &ProgressFn<'_>) -> Result<(Vec<Pair>, Vec<Pair>)> {
        self.check()?;
        let (train, valid) = if self.corpus.is_empty() {
            self.read()?
        } else {
            self.mine(progress)?
        };
        if train.is_empty() {
            return Err(TrainError::Input("no training pairs found".into()));
        }
        Ok((sample(train, self.limit, seed), valid))
    }

    /// Pairs from the `pairs` and `valid` files.
    fn read(&self) -> Result<(Vec<Pair>, Vec<Pair>)> {
        let read = |p: &Path| {
            read_pairs(p).with_context(|| format!("cannot read pairs from {}", p.display()))
        };
        let mut train = Vec::new();
        for p in &self.pairs {
            train.extend(read(p)?);
        }
        let valid = match &self.valid {
            Some(v) => read(v)?,
            None => Vec::new(),
        };
        Ok((train, valid))
    }

    /// Mine pairs from `corpus` directories: every directory is one package; with no `valid`,
    /// a package-level tenth is held out for validation (all packages train if there is just
    /// one).
    fn mine(&self, progress: &ProgressFn<'_>) -> Result<(Vec<Pair>, Vec<Pair>)> {
        let opts = MineOptions::default();
        let mut all = Vec::new();
        for dir in &self.corpus {
            let name = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "corpus".to_string());
            let mined = mine_package(dir, &name, "", &[], &[], &opts)
                .with_context(|| format!("cannot mine {}", dir.display()))?;
            progress(&Progress::Mined {
                dir,
                pairs: mined.pairs.len(),
            });
            all.push((name, mined.pairs));
        }
        let valid_from_file = match &self.valid {
            Some(v) => Some(read_pairs(v)?),
            None => None,
        };
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        let held: BTreeSet<String> = if valid_from_file.is_some() || names.len() < 2 {
            BTreeSet::new()
        } else {
            split_packages(&names, 0.1)
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
}

/// A seeded sample of `limit` items (all when `limit` is 0 or larger than the input), in input
/// order.
pub fn sample<T: Clone>(items: Vec<T>, limit: usize, seed: u64) -> Vec<T> {
    if limit == 0 || limit >= items.len() {
        return items;
    }
    let mut keep = epoch_order(items.len(), seed, usize::MAX - 1);
    keep.truncate(limit);
    keep.sort_unstable();
    keep.into_iter().map(|i| items[i].clone()).collect()
}

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    pub data: TrainData,
    /// Run directory: checkpoints, log, `weights/` and `report.json`.
    pub out: PathBuf,
    /// Start from these trained weights instead of a new head.
    pub init: Option<PathBuf>,
    /// Where state caches are kept (default `out/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Layer whose output the caches keep (default: layers - tuned layers, or 4).
    pub split_layer: Option<usize>,
    /// Configuration of a new head (unused with `init`: the weights' `head.json` decides).
    pub head: HeadConfig,
    /// Initial bias of a new head's fusion gate (every dimension).
    pub gate_bias: f64,
    pub config: TrainConfig,
    /// Name of the training backend ([`training_device`]).
    pub device: String,
    pub model: ModelConfig,
}

/// What a finished run wrote.
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// The weights directory (`out/weights`).
    pub weights: PathBuf,
    pub report: TrainReport,
}

/// A run ready to train: data, model and caches in memory (see the module docs).
pub struct Prepared {
    job: TrainJob,
    /// `job.config` adjusted to the loaded weights.
    config: TrainConfig,
    loaded: Loaded,
    split: usize,
    train_pairs: usize,
    valid_pairs: usize,
    train: (StateCache, StateCache),
    valid: Option<(StateCache, StateCache)>,
    groups: Option<Vec<Vec<usize>>>,
}

/// The model loaded for training and the layer its caches keep.
struct ModelStage {
    config: TrainConfig,
    loaded: Loaded,
    split: usize,
}

/// Training and validation examples, and the hard-negative groups of the training ones.
struct DataStage {
    examples: Vec<Example>,
    valid_examples: Vec<Example>,
    groups: Option<Vec<Vec<usize>>>,
}

impl Prepared {
    /// Phase 1: read (or mine) the pairs, load the model, build the caches.
    pub fn prepare(job: TrainJob, progress: &ProgressFn<'_>) -> Result<Self> {
        let (train_pairs, valid_pairs) = job.data.load(job.config.seed, progress)?;
        let ModelStage {
            config,
            loaded,
            split,
        } = load_for_training(&job)?;
        let data = examples(&config, &train_pairs, &valid_pairs, progress);
        let cache_dir = job
            .cache_dir
            .clone()
            .unwrap_or_else(|| job.out.join("cache"));
        let caches = CacheBuilder::new(&loaded, split, threads(job.model.threads), progress);
        let train = caches.pairs(
            "train",
            &cache_dir,
            &data.examples,
            config.code_distill > 0.0,
        )?;
        let valid = if data.valid_examples.is_empty() {
            None
        } else {
            Some(caches.pairs("valid", &cache_dir, &data.valid_examples, false)?)
        };
        Ok(Self {
            job,
            config,
            loaded,
            split,
            train_pairs: data.examples.len(),
            valid_pairs: data.valid_examples.len(),
            train,
            valid,
            groups: data.groups,
        })
    }

    /// Phase 2: train (resuming from the run directory's latest checkpoint) until done or
    /// `stop` is set, then write the weights and `report.json`.
    pub fn train(self, stop: &AtomicBool, progress: &ProgressFn<'_>) -> Result<TrainOutput> {
        let Prepared {
            job,
            config,
            loaded,
            split,
            train_pairs,
            valid_pairs,
            train,
            valid,
            groups,
        } = self;
        let out = &job.out;
        let mut log = open_log(out)?;
        let mut report = |e: &Event| {
            let is_step = matches!(e, Event::Step { .. });
            if !is_step || matches!(e, Event::Step { step, .. } if step % 10 == 0) {
                let line = serde_json::to_string(e).unwrap_or_default();
                let _ = writeln!(log, "{line}");
            }
            progress(&Progress::Train(e));
        };
        let valid = valid.as_ref().map(|(q, c)| PairCaches {
            queries: q,
            codes: c,
            groups: None,
        });
        let (model, report_out) = crate::trainer::train(
            loaded.model,
            &loaded.head,
            &config,
            PairCaches {
                queries: &train.0,
                codes: &train.1,
                groups: groups.as_deref(),
            },
            valid,
            out,
            stop,
            &mut report,
        )?;
        progress(&Progress::TrainingDone);
        if !report_out.completed {
            return Err(TrainError::Stopped {
                steps: report_out.steps,
                total_steps: report_out.total_steps,
                checkpoints: out.join("checkpoints"),
            });
        }
        let weights = write_weights(&model, &loaded.head, &config, &job)?;
        let pairs = (train_pairs, valid_pairs);
        write_report(&job, &config, &report_out, split, pairs)?;
        Ok(TrainOutput {
            weights,
            report: report_out,
        })
    }
}

/// `out/weights`: the trained model, its `head.json` (the loaded `head` as `config` trained
/// it) and checksums.
fn write_weights(
    model: &GnnCoderModel,
    head: &HeadConfig,
    config: &TrainConfig,
    job: &TrainJob,
) -> Result<PathBuf> {
    let mut head = head.clone();
    head.tuned_layers = config.tuned_layers;
    head.graph.child_count_score = config.child_count_score;
    head.graph.child_count_log1p = config.child_count_log1p;
    head.max_tokens = job.model.max_tokens;
    head.use_graph = config.graph;
    let weights = job.out.join("weights");
    model
        .save(&weights, &head, true, true)
        .with_context(|| format!("cannot write the weights to {}", weights.display()))?;
    gnn_coder_model::write_checksums(&weights)?;
    Ok(weights)
}

/// `out/report.json`: the trainer's report, the configuration, how many (training,
/// validation) `pairs` there were and where they came from.
fn write_report(
    job: &TrainJob,
    config: &TrainConfig,
    report: &TrainReport,
    split: usize,
    pairs: (usize, usize),
) -> Result<()> {
    let summary = serde_json::json!({
        "report": report,
        "config": config,
        "train_pairs": pairs.0,
        "valid_pairs": pairs.1,
        "pairs": job.data.pairs,
        "corpus": job.data.corpus,
        "init": job.init,
        "split_layer": split,
    });
    let path = job.out.join("report.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Validate the configuration, pick the device and load the model (with `init` weights or a
/// new head); choose the cached layer and the transformer the caches are built with.
fn load_for_training(job: &TrainJob) -> Result<ModelStage> {
    let mut config = job.config.clone();
    config.validate()?;
    let device = training_device(&job.device)?.autodiff();
    job.head.validate()?;
    let mut loaded = load_model(
        &job.model.dir,
        job.init.as_deref(),
        job.model.max_tokens,
        &device,
        Some(job.head.clone()),
    )?;
    if job.init.is_some() {
        // Trained weights keep the child-count scale they were trained with.
        config.child_count_log1p = loaded.head.graph.child_count_log1p;
    } else {
        set_gate_bias(&mut loaded, job.gate_bias, &device);
    }
    let split = split_layer(&loaded, config.tuned_layers, job.split_layer)?;
    // Which transformer builds the caches (`Loaded::base`): the pretrained one when this run
    // fine-tunes again every layer the init weights tuned (the states below the split are
    // then MiniLM's, and the queries' final states are zero-shot MiniLM's, the distillation
    // target); otherwise the loaded one, whose frozen layers include tuned ones, with the
    // checksum of those layers in the caches' fingerprint.
    if let Some(init) = job.init.as_deref()
        && loaded.head.tuned_layers > config.tuned_layers
    {
        let sum = gnn_coder_model::sha256_hex(&init.join(TRANSFORMER_WEIGHTS_FILE))?;
        loaded.base = loaded.model.transformer.clone();
        loaded.tag = format!("{}+{}", loaded.tag, &sum[..16.min(sum.len())]);
    }
    Ok(ModelStage {
        config,
        loaded,
        split,
    })
}

/// Every dimension of a new head's fusion gate starts at `bias`.
fn set_gate_bias(loaded: &mut Loaded, bias: f64, device: &Device) {
    let d = loaded.head.graph.d_model;
    loaded.model.head.gate.bias = Some(Param::from_tensor(Tensor::full([d], bias, device)));
    loaded.head.gate_init_bias = bias;
}

/// The layer whose output the caches keep: `explicit`, else the first tuned layer's input, else
/// layer 4 (or the last).
fn split_layer(loaded: &Loaded, tuned_layers: usize, explicit: Option<usize>) -> Result<usize> {
    let num_layers = loaded.model.transformer.num_layers();
    if tuned_layers > num_layers {
        return Err(TrainError::Input(format!(
            "--tuned-layers {tuned_layers} but the transformer has {num_layers} layers"
        )));
    }
    Ok(match explicit {
        Some(s) => s,
        None if tuned_layers > 0 => num_layers - tuned_layers,
        None => num_layers.min(4),
    })
}

/// The examples of the training and validation pairs, and the hard-negative groups.
fn examples(
    config: &TrainConfig,
    train_pairs: &[Pair],
    valid_pairs: &[Pair],
    progress: &ProgressFn<'_>,
) -> DataStage {
    let examples: Vec<Example> = train_pairs
        .iter()
        .map(|p| example_from_pair(p, MAX_GRAPH_NODES))
        .collect();
    progress(&Progress::Pairs {
        train: examples.len(),
        with_graph: examples.iter().filter(|e| e.graph.is_some()).count(),
        valid: valid_pairs.len().min(config.valid_limit),
    });
    let groups = (config.hard_negatives > 0)
        .then(|| hard_negative_groups(&examples, train_pairs, config, progress));
    let valid_examples: Vec<Example> = valid_pairs
        .iter()
        .take(config.valid_limit)
        .map(|p| example_from_pair(p, MAX_GRAPH_NODES))
        .collect();
    DataStage {
        examples,
        valid_examples,
        groups,
    }
}

/// BM25-mined groups of `config.hard_negatives` same-package training pairs.
fn hard_negative_groups(
    examples: &[Example],
    pairs: &[Pair],
    config: &TrainConfig,
    progress: &ProgressFn<'_>,
) -> Vec<Vec<usize>> {
    let started = Instant::now();
    let queries: Vec<&str> = examples.iter().map(|e| e.query.as_str()).collect();
    let codes: Vec<&str> = examples.iter().map(|e| e.code.as_str()).collect();
    let packages: Vec<&str> = pairs.iter().map(|p| p.package.as_str()).collect();
    let groups = crate::negatives::bm25_groups(
        &queries,
        &codes,
        &packages,
        config.hard_negatives,
        config.seed,
    );
    progress(&Progress::HardNegatives {
        groups: groups.len(),
        size: config.hard_negatives,
        seconds: started.elapsed().as_secs_f64(),
    });
    groups
}

/// `out/log.jsonl`, opened for appending (`out` is created if needed).
fn open_log(out: &Path) -> Result<File> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("log.jsonl");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_keeps_input_order_and_is_seeded() {
        let items: Vec<usize> = (0..100).collect();
        let a = sample(items.clone(), 10, 7);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(a, sample(items.clone(), 10, 7));
        assert_eq!(sample(items.clone(), 0, 7), items);
        assert_eq!(sample(items.clone(), 500, 7), items);
    }

    #[test]
    fn training_data_needs_pairs_or_a_corpus_not_both() {
        let none = TrainData::default();
        assert!(
            none.check()
                .unwrap_err()
                .to_string()
                .contains("--pairs FILE")
        );
        let both = TrainData {
            pairs: vec!["a.jsonl".into()],
            corpus: vec!["src".into()],
            ..TrainData::default()
        };
        assert!(
            both.check()
                .unwrap_err()
                .to_string()
                .contains("cannot be combined")
        );
    }

    #[test]
    fn a_missing_pair_file_names_it() {
        let data = TrainData {
            pairs: vec!["/nonexistent/pairs.jsonl".into()],
            ..TrainData::default()
        };
        let err = data.load(17, &|_: &Progress<'_>| {}).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read pairs from /nonexistent/pairs.jsonl"),
            "{err}"
        );
    }
}
