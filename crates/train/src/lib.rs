//! # gnn-coder-train
//!
//! Training data for the GNN-Coder model.
//!
//! * [`mine`] — CodeSearchNet-style (query, code) pairs mined from the pinned packages of the
//!   training manifest (`../shared/bench/train/manifest.json`, fetched by
//!   `training/fetch_train_sources.sh`): the query is the first sentence of a function's
//!   docstring / doc comment, the code is the function with its documentation removed. The
//!   `mine` binary writes `pairs-train.jsonl`, `pairs-valid.jsonl` and `stats.json`.

pub mod mine;

pub use mine::{
    DEV_COPIES, Drop, EXTRA_EXCLUDED_DIRS, LangRules, MineOptions, MineOutput, MineStats,
    PackageDir, PackageMined, PackageStats, Pair, Split, Stripped, discover_packages,
    first_sentence, is_test_path, lang_rules, manifest_packages, mine_package, mine_sources,
    normalize_package, package_name, query_filter, split_packages, strip_docs,
};
