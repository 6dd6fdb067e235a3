//! Helpers the benchmarks share (`scale_bench`, `growth_bench`, `near_duplicates`, and the
//! service's `load_bench`, which includes this file by path): flag values, peak memory, copying
//! trees, the approximate index's recall.

#![allow(dead_code)]

use std::path::Path;

/// The value after `name` in `args`, if any.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A memory field of `/proc/self/status` (`VmHWM:`, `VmRSS:`), in MiB (Linux; 0 elsewhere).
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Peak resident set size of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resident set size of this process now, in MiB.
pub fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// Copies a tree's directories and regular files (links and an index's `writer.lock` are left
/// behind).
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != "writer.lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Recall@10 of semantic search through the approximate index against the exact scan, over
/// `queries`, with a language filter when `languages` is not empty (NaN when the exact scan
/// finds nothing).
pub fn recall_at_10(
    engine: &gnn_coder_engine::Engine,
    queries: &[String],
    languages: &[String],
) -> Result<f64, gnn_coder_engine::EngineError> {
    use gnn_coder_engine::{Mode, SearchHit, SearchRequest};
    let vectors = engine.embed_queries(&queries.iter().map(String::as_str).collect::<Vec<_>>())?;
    let (mut hit, mut total) = (0usize, 0usize);
    for (q, v) in queries.iter().zip(&vectors) {
        let mut req = SearchRequest::new(q.clone(), 10);
        req.mode = Some(Mode::Semantic);
        req.demote_tests = false;
        req.languages = languages.to_vec();
        req.exact = true;
        let exact = engine.search_with_vector(&req, Some(v))?;
        req.exact = false;
        let approx = engine.search_with_vector(&req, Some(v))?;
        let key = |h: &SearchHit| (h.repository.clone(), h.unit.path.clone(), h.unit.start_byte);
        let want: std::collections::HashSet<_> = exact.iter().map(key).collect();
        hit += approx.iter().filter(|h| want.contains(&key(h))).count();
        total += want.len();
    }
    Ok(if total == 0 {
        f64::NAN
    } else {
        hit as f64 / total as f64
    })
}
