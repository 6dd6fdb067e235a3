//! Throughput of parsing and extraction over a directory.
//!
//! `cargo run --release -p gnn-coder-syntax --example throughput -- DIR [--threads N]`
//!
//! Reports, on one thread over files already in memory: raw tree-sitter parse MB/s and full
//! extraction (units + AST graphs) MB/s and units/s; then the full parallel walk (discovery,
//! reading, extraction on all cores).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use gnn_coder_syntax::{ExtractOptions, Language, WalkOptions, extract_file, walk_repo};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(dir) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: throughput DIR [--threads N]");
        std::process::exit(2);
    };
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let extract = ExtractOptions {
        graphs: true,
        max_nodes: 512,
    };

    // Files to measure: what the walker would parse.
    let paths = Mutex::new(Vec::new());
    walk_repo(&dir, &WalkOptions::default(), &|_| {}, &|f| {
        paths.lock().unwrap_or_else(|p| p.into_inner()).push(f.path)
    })?;
    let mut files = Vec::new();
    for p in paths.into_inner().unwrap_or_else(|p| p.into_inner()) {
        let full = if dir.is_file() {
            dir.clone()
        } else {
            dir.join(&p)
        };
        if let Some(lang) = Language::for_path(&full) {
            files.push((lang, p, std::fs::read(&full)?));
        }
    }
    files.sort_by(|a, b| a.1.cmp(&b.1));
    let bytes: usize = files.iter().map(|f| f.2.len()).sum();
    let mb = bytes as f64 / 1e6;
    println!("{} files, {:.2} MB", files.len(), mb);

    // Warm up (thread-local parser, lazy registry, page cache).
    for (lang, _, src) in files.iter().take(20) {
        lang.parse(src)?;
    }

    let t = Instant::now();
    for (lang, _, src) in &files {
        let tree = lang.parse(src)?;
        std::hint::black_box(tree.root_node().child_count());
    }
    let parse_s = t.elapsed().as_secs_f64();
    println!(
        "raw tree-sitter parse (1 thread):          {:>8.2} MB/s  ({parse_s:.2} s)",
        mb / parse_s
    );

    let t = Instant::now();
    let mut units = 0usize;
    let mut nodes = 0usize;
    for (lang, path, src) in &files {
        let p = extract_file(lang, path, src, &ExtractOptions::default())?;
        units += p.units.len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "extraction, units only (1 thread):        {:>8.2} MB/s  {:>9.0} units/s",
        mb / s,
        units as f64 / s
    );

    let t = Instant::now();
    for (lang, path, src) in &files {
        let p = extract_file(lang, path, src, &extract)?;
        nodes += p.graphs.iter().map(|g| g.len()).sum::<usize>();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "extraction, units + graphs (1 thread):     {:>8.2} MB/s  {:>9.0} units/s  ({units} units, {:.0} nodes/unit)",
        mb / s,
        units as f64 / s,
        nodes as f64 / units.max(1) as f64
    );

    let opts = WalkOptions {
        extract,
        threads,
        ..WalkOptions::default()
    };
    let t = Instant::now();
    let summary = walk_repo(&dir, &opts, &|_| {}, &|f| {
        std::hint::black_box(f);
    })?;
    let s = t.elapsed().as_secs_f64();
    let n = if threads == 0 {
        rayon_threads()
    } else {
        threads
    };
    println!(
        "full walk, units + graphs ({n} threads):    {:>8.2} MB/s  {:>9.0} units/s  ({} files, {} skipped)",
        summary.bytes_parsed as f64 / 1e6 / s,
        summary.units as f64 / s,
        summary.files_parsed,
        summary.skipped.len()
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
