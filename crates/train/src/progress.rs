//! Progress of a training or evaluation run, as events for the caller to draw.
//!
//! The library never prints: [`crate::run`] and [`crate::eval`] tell what they are doing through
//! a [`ProgressFn`], and the caller (the `gnn-coder` command line) decides what a person sees
//! (progress lines on stderr, or JSON lines). The callback must be `Sync`: state caches are
//! built by several worker threads, and each reports its progress.
//!
//! Events carry counts and elapsed seconds, not formatted text, so a caller can compute rates
//! and choose its own wording.

use std::path::Path;

use crate::trainer::Event;

/// The callback that receives a run's [`Progress`].
pub type ProgressFn<'a> = dyn Fn(&Progress<'_>) + Sync + 'a;

/// One step of a training or evaluation run.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Pairs were mined from a `--corpus` source directory.
    Mined { dir: &'a Path, pairs: usize },
    /// The training data is ready: `train` examples (`with_graph` of them with an AST graph)
    /// and `valid` validation pairs.
    Pairs {
        train: usize,
        with_graph: usize,
        valid: usize,
    },
    /// Hard-negative groups were mined: `groups` groups of up to `size` same-package pairs.
    HardNegatives {
        groups: usize,
        size: usize,
        seconds: f64,
    },
    /// A state cache (`what`: "train queries", "dev-corpus code", ...) is being built: `done`
    /// of `total` texts after `seconds`.
    Caching {
        what: &'a str,
        done: usize,
        total: usize,
        seconds: f64,
    },
    /// A state cache is ready (loaded or built): `texts` texts, `tokens` tokens.
    Cached {
        what: &'a str,
        texts: usize,
        tokens: usize,
        seconds: f64,
    },
    /// What the trainer reports (also written to the run's `log.jsonl`).
    Train(&'a Event),
    /// The trainer has returned, finished or stopped (the end of the step lines).
    TrainingDone,
}
