//! What `gnn-coder train` and `gnn-coder eval` share: the model flags and the drawing of
//! state-cache progress.

use std::path::PathBuf;

use clap::Args;
use gnn_coder_train::{ModelConfig, Progress};

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

impl ModelArgs {
    /// The library's model configuration, with the model directory already found.
    pub fn config(&self, dir: PathBuf) -> ModelConfig {
        ModelConfig {
            dir,
            max_tokens: self.max_tokens,
            threads: self.threads,
        }
    }
}

/// Draw a state cache's progress on stderr (nothing when `quiet`); other events are ignored.
pub fn draw_cache_progress(p: &Progress<'_>, quiet: bool) {
    if quiet {
        return;
    }
    match *p {
        Progress::Caching {
            what,
            done,
            total,
            seconds,
        } => eprint!(
            "\rcaching {what}: {done}/{total} ({:.1}/s)   ",
            done as f64 / seconds.max(1e-9)
        ),
        Progress::Cached {
            what,
            texts,
            tokens,
            seconds,
        } => eprintln!(
            "\rcached {what}: {texts} texts, {tokens} tokens ({seconds:.0} s)            "
        ),
        _ => {}
    }
}
