//! Helpers the benchmarks share (`scale_bench`, `near_duplicates`, and the service's
//! `load_bench`, which includes this file by path): flag values, peak memory, copying trees.

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
