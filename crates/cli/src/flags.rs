//! Flags and values several commands share: the model, sizes, byte counts for people.

use std::path::PathBuf;

use clap::Args;
use gnn_coder_engine::{ModelChoice, VectorCodes};

/// Flags naming the model, shared by the commands that embed.
#[derive(Args, Clone, Default)]
pub struct ModelFlags {
    /// Directory of the pretrained all-MiniLM-L6-v2 (default: $GNN_CODER_MODEL_DIR, else the
    /// model built into this binary; the zero-shot model needs the whole pretrained model, from
    /// scripts/fetch-model.sh: ./models/all-MiniLM-L6-v2 is looked in).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Trained GNN-Coder weights (a `gnn-coder train` OUT/weights directory; default:
    /// $GNN_CODER_WEIGHTS, else the v2.3 weights built into this binary; `none`: zero-shot
    /// MiniLM vectors).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
}

/// How a new index codes its vectors, shared by the commands that create embedded indexes.
#[derive(Args, Clone, Default)]
pub struct CodesFlags {
    /// How a new index codes its vectors: int8 (default), or int4 for half the bytes per vector
    /// (at a million units the index takes about 1.35x its source on disk instead of 1.77x) at
    /// a small cost in semantic ranking. Chosen when the index is created.
    #[arg(long, value_parser = parse_codes, value_name = "int8|int4", conflicts_with = "lexical_only")]
    pub vector_codes: Option<VectorCodes>,
}

fn parse_codes(s: &str) -> Result<VectorCodes, String> {
    VectorCodes::from_name(s).ok_or_else(|| format!("{s:?} is not int8 or int4"))
}

impl ModelFlags {
    pub fn choice(&self) -> ModelChoice {
        ModelChoice {
            model_dir: self.model_dir.clone(),
            weights: self.weights.clone(),
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{s:?} is not a size (examples: 1048576, 512K, 2M)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
