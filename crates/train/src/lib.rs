//! # gnn-coder-train
//!
//! Training data, training and evaluation of the GNN-Coder model. The `gnn-coder train` and
//! `gnn-coder eval` commands are thin layers over [`run`] and [`eval`]: they turn flags into
//! the config structs of those modules, call them, and print what they report.
//!
//! * [`mine`] — CodeSearchNet-style (query, code) pairs mined from the pinned packages of the
//!   training manifest (`../shared/bench/train/manifest.json`, fetched by
//!   `training/fetch_train_sources.sh`): the query is the first sentence of a function's
//!   docstring / doc comment, the code is the function with its documentation removed. The
//!   `mine` binary writes `pairs-train.jsonl`, `pairs-valid.jsonl` and `stats.json`.
//! * [`example`] — a pair as the model reads it (code re-parsed on its own for its AST graph).
//! * [`cache`] — the pretrained transformer run once per text; token states kept on disk (f16)
//!   after a middle layer and after the last layer, so training steps skip the frozen layers.
//! * [`negatives`] — hard negatives: BM25-mined groups of same-package pairs, kept together in
//!   a batch.
//! * [`trainer`] — symmetric InfoNCE with AdamW, warm-up + cosine schedule, clipping, fixed
//!   seed, checkpoints and exact resume; stage 1 (frozen transformer) or stage 2 (top layers
//!   fine-tuned with the graph network).
//! * [`metrics`] — MRR@10 / R@1 / R@10 over a pool and the Mean Angular Margin (MAM).
//! * [`setup`] — what training and evaluation share: the base model loaded with trained
//!   weights or a new head, and the state caches built with it.
//! * [`device`] — the burn backend that trains, by name (`flex`; `tch`, `tch-cuda`, `cuda`,
//!   `ndarray` with the cargo features of those names).
//! * [`run`] — a whole training run: pairs (read or mined from source directories), model,
//!   caches, training with checkpoints and resume, then `OUT/weights` and `OUT/report.json`.
//! * [`eval`] — retrieval quality of weights on validation pairs and on benchmark corpora,
//!   with score.py's hit rule and its results format.
//! * [`progress`] — the events a run reports instead of printing.
//! * [`error`] — [`TrainError`], the error of every fallible function but the miner's.

pub mod cache;
pub mod device;
pub mod doc;
pub mod error;
pub mod eval;
pub mod example;
pub mod metrics;
pub mod mine;
pub mod negatives;
pub mod progress;
pub mod run;
pub mod setup;
pub mod trainer;

pub use cache::{CacheText, StateCache};
pub use device::training_device;
pub use error::{Result, TrainError};
pub use eval::{EvalConfig, Evaluator};
pub use example::{Example, example_from_pair, read_pairs};
pub use metrics::{Retrieval, mean_angular_margin, retrieval};
pub use progress::{Progress, ProgressFn};
pub use run::{Prepared, TrainData, TrainJob, TrainOutput};
pub use setup::{Loaded, ModelConfig, load_model};
pub use trainer::{Event, PairCaches, TrainConfig, TrainReport, latest_checkpoint, train};

pub use mine::{
    Alone, DEV_COPIES, Drop, EXTRA_EXCLUDED_DIRS, LangRules, MineOptions, MineOutput, MineStats,
    PackageDir, PackageMined, PackageStats, Pair, Split, Stripped, discover_packages,
    first_sentence, is_test_path, lang_rules, manifest_packages, mine_package, mine_sources,
    normalize_package, package_name, parse_alone, query_filter, split_packages, strip_docs,
};
