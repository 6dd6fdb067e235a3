//! Throughput and latency benchmark of the lexical engine on a real corpus.
//!
//! ```text
//! cargo run --release -p gnn-coder-cli --example bench -- CORPUS_DIR [QUERIES.jsonl]
//! ```
//!
//! Reports, for the files of CORPUS_DIR that gnn-coder would index:
//! 1. raw tree-sitter parsing, one thread (MB/s);
//! 2. our extraction (units + AST graphs), one thread (MB/s, units/s);
//! 3. the parallel walk + extraction + graphs on all cores (MB/s, units/s);
//! 4. lexical indexing: walk + extraction + tantivy build and commit on all cores (MB/s, units/s);
//! 5. search latency over the queries (`{"query": ...}` per line; default: 500 questions made of
//!    the corpus's own unit names split into words), single thread, p50 / p99 / mean.
//!
//! Each timing is the best of three runs, except indexing and search (one run each).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gnn_coder_index::{BuildStats, IndexBuilder, SearchIndex, SearchRequest};
use gnn_coder_syntax::{
    ExtractOptions, Language, WalkOptions, extract_file, extract_repo, walk_repo,
};

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type BoxError = Box<dyn std::error::Error>;

fn run() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let corpus = PathBuf::from(
        args.next()
            .ok_or("usage: bench CORPUS_DIR [QUERIES.jsonl]")?,
    );
    let queries_file = args.next().map(PathBuf::from);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // The files gnn-coder would index, read once into memory.
    let (parsed, _) = extract_repo(&corpus, &WalkOptions::default())?;
    let mut files: Vec<(&'static Language, String, Vec<u8>)> = Vec::new();
    for f in &parsed {
        let lang = Language::by_name(&f.language)?;
        files.push((lang, f.path.clone(), std::fs::read(corpus.join(&f.path))?));
    }
    let bytes: usize = files.iter().map(|f| f.2.len()).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "corpus: {} ({} files, {:.1} MB), {threads} threads available",
        corpus.display(),
        files.len(),
        mb
    );

    let parse = best_of(3, || {
        for (lang, _, src) in &files {
            let _ = lang.parse(src);
        }
        0
    });
    println!(
        "raw tree-sitter parse, 1 thread:      {:>6.2} MB/s",
        mb / parse.0.as_secs_f64()
    );

    let graphs = ExtractOptions {
        graphs: true,
        ..ExtractOptions::default()
    };
    for (label, opts) in [
        ("units only", ExtractOptions::default()),
        ("units + graphs", graphs.clone()),
    ] {
        let (t, units) = best_of(3, || {
            files
                .iter()
                .filter_map(|(lang, path, src)| extract_file(lang, path, src, &opts).ok())
                .map(|f| f.units.len())
                .sum()
        });
        println!(
            "extraction ({label}), 1 thread: {:>6.2} MB/s {:>8.0} units/s ({units} units)",
            mb / t.as_secs_f64(),
            units as f64 / t.as_secs_f64()
        );
    }

    let walk_opts = WalkOptions {
        extract: graphs,
        threads,
        ..WalkOptions::default()
    };
    let (t, units) = best_of(3, || {
        walk_repo(&corpus, &walk_opts, &|_| {}, &|_| {})
            .map(|s| s.units)
            .unwrap_or(0)
    });
    println!(
        "walk + units + graphs, {threads} threads:  {:>6.2} MB/s {:>8.0} units/s",
        mb / t.as_secs_f64(),
        units as f64 / t.as_secs_f64()
    );

    let dir = tempdir()?;
    let started = Instant::now();
    let builder = IndexBuilder::create(&dir, threads)?;
    let summary = walk_repo(
        &corpus,
        &WalkOptions {
            threads,
            ..WalkOptions::default()
        },
        &|_| {},
        &|file| {
            for u in &file.units {
                let _ = builder.add(u);
            }
        },
    )?;
    let manifest = builder.finish(&corpus, BuildStats::default())?;
    let t = started.elapsed().as_secs_f64();
    println!(
        "lexical indexing (walk+parse+tantivy), {threads} threads: {:.2} MB/s {:.0} units/s ({} units, {:.2}s)",
        summary.bytes_parsed as f64 / 1e6 / t,
        manifest.stats.units as f64 / t,
        manifest.stats.units,
        t
    );

    let index = SearchIndex::open(&dir)?;
    let queries = match queries_file {
        Some(f) => read_queries(&f)?,
        None => parsed
            .iter()
            .flat_map(|f| f.units.iter())
            .step_by(7)
            .take(500)
            .map(|u| split_words(&u.name))
            .collect(),
    };
    let mut lat = Vec::with_capacity(queries.len());
    for q in &queries {
        let started = Instant::now();
        let _ = index.search(&SearchRequest::new(q.clone(), 10))?;
        lat.push(started.elapsed());
    }
    lat.sort();
    if !lat.is_empty() {
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
        println!(
            "search latency, top-10, 1 thread, {} queries over {} units: p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms",
            lat.len(),
            index.num_units(),
            ms(pct(0.5)),
            ms(pct(0.99)),
            ms(mean)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn best_of(n: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..n {
        let started = Instant::now();
        out = f();
        best = best.min(started.elapsed());
    }
    (best, out)
}

fn tempdir() -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("gnn-coder-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(dir)
}

fn read_queries(path: &Path) -> Result<Vec<String>, BoxError> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        if let Some(q) = v.get("query").and_then(|q| q.as_str()) {
            out.push(q.to_string());
        }
    }
    Ok(out)
}

/// `parse_http_header` / `parseHttpHeader` -> "parse http header".
fn split_words(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' {
            out.push(' ');
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            out.push(' ');
        }
        prev_lower = c.is_lowercase();
        out.extend(c.to_lowercase());
    }
    out
}
