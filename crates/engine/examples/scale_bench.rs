//! The engine at scale: one index holding the dev corpus copied into many repositories.
//!
//! ```text
//! cargo run -p gnn-coder-engine --example scale_bench -- \
//!     --corpus /tmp/gnn-dev/corpus --queries /tmp/gnn-dev/queries.jsonl \
//!     --work /tmp/gnn-scale --copies 1,8 [--index DIR | --store postgres://…] [--lexical-only]
//! ```
//!
//! `--store URL` builds the copies into a PostgreSQL store instead (e.g. the server of
//! `scripts/postgres.sh`, on a database of its own); the table is the same.
//!
//! Copies the corpus into repositories `copy-000`, `copy-001`, ... (distinct names, the same
//! files) and indexes them one after another into one index with the default model. After the
//! number of copies in each `--copies` step it reports: build time and units/s (the first copy
//! embeds every unit; later copies find every vector in the embedding cache, which is what a
//! monorepo with vendored copies or a fleet of forks sees), peak RSS, index bytes on disk over
//! source bytes, hybrid query latency p50/p99 including the query embedding (200 queries, one at
//! a time), the same for lexical search, recall@10 of the approximate vector search against an
//! exact scan, and the time to refresh one repository after a one-file edit.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, IndexOptions, Mode, SearchRequest, StoreLocation,
};

mod bench_util;

use bench_util::{arg, copy_dir, peak_rss_mib, recall_at_10};

type BoxError = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn latencies(
    engine: &Engine,
    queries: &[String],
    mode: Mode,
    exact: bool,
) -> Result<(f64, f64), BoxError> {
    let mut ms = Vec::with_capacity(queries.len());
    for q in queries {
        let mut req = SearchRequest::new(q.clone(), 10);
        req.mode = Some(mode);
        req.exact = exact;
        let t = Instant::now();
        let hits = engine.search(&req)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(hits);
    }
    ms.sort_by(f64::total_cmp);
    Ok((percentile(&ms, 0.5), percentile(&ms, 0.99)))
}

fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: scale_bench --corpus DIR --queries FILE --work DIR [--copies 1,8] [--index DIR | --store URL] [--lexical-only]";
    let corpus = PathBuf::from(arg(&args, "--corpus").ok_or(usage)?);
    let queries_file = PathBuf::from(arg(&args, "--queries").ok_or(usage)?);
    let work = PathBuf::from(arg(&args, "--work").ok_or(usage)?);
    let steps: Vec<usize> = arg(&args, "--copies")
        .unwrap_or_else(|| "1,8".into())
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<_, _>>()?;
    let lexical_only = args.iter().any(|a| a == "--lexical-only");
    let queries: Vec<String> = std::fs::read_to_string(&queries_file)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("query").and_then(|q| q.as_str()).map(str::to_string))
        .take(200)
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // `--index DIR`: add the copies to an existing index (e.g. one that already holds the
    // corpus, so every vector comes from its embedding cache); default: a new one in WORK.
    let location = match arg(&args, "--store") {
        Some(url) => StoreLocation::postgres(&url)?,
        None => StoreLocation::Dir(
            arg(&args, "--index").map_or_else(|| work.join("index"), PathBuf::from),
        ),
    };
    let options = EngineOptions {
        lexical_only,
        ..EngineOptions::default()
    };
    let engine = Engine::open_or_create_at(&location, options, false)?;
    if let Some(w) = engine.model_warning() {
        eprintln!("warning: {w}");
    }
    let cancel = CancellationToken::new();
    let mut copies = 0usize;
    let mut build_seconds = 0.0;
    println!(
        "| copies | units | build s (this step) | units/s (this step) | peak RSS MiB | disk / source | disk bytes / unit | hybrid p50 / p99 ms | of which query embedding p50 / p99 ms | lexical p50 / p99 ms | ANN recall@10 | one-file refresh s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &target in &steps {
        let started = Instant::now();
        let mut units_step = 0u64;
        while copies < target {
            let root = work.join(format!("copy-{copies:03}"));
            copy_dir(&corpus, &root)?;
            let mut o = IndexOptions::new(&root);
            o.name = Some(format!("copy-{copies:03}"));
            let s = engine.index_repository(&o, &|_| {}, &cancel)?;
            units_step += s.units_written;
            eprintln!(
                "indexed {} ({} units, {} embedded, {:.1}s)",
                s.repository, s.units, s.embeddings_computed, s.seconds
            );
            copies += 1;
        }
        let step_s = started.elapsed().as_secs_f64();
        build_seconds += step_s;
        let stats = engine.stats()?;
        let source: u64 = engine.repositories()?.iter().map(|r| r.bytes).sum();
        let (hp50, hp99) = if lexical_only {
            (0.0, 0.0)
        } else {
            latencies(&engine, &queries, Mode::Hybrid, false)?
        };
        let (lp50, lp99) = latencies(&engine, &queries, Mode::Lexical, false)?;
        let (ep50, ep99) = if lexical_only {
            (0.0, 0.0)
        } else {
            let mut ms = Vec::new();
            for q in &queries {
                let t = Instant::now();
                std::hint::black_box(engine.embed_queries(&[q.as_str()])?);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(f64::total_cmp);
            (percentile(&ms, 0.5), percentile(&ms, 0.99))
        };
        let recall = if lexical_only {
            0.0
        } else {
            recall_at_10(&engine, &queries, &[])?
        };
        // One-file refresh: append a function to one file of the first copy.
        let root0 = work.join("copy-000");
        let file = first_python_file(&root0).ok_or("no Python file in the corpus")?;
        let mut text = std::fs::read_to_string(&file)?;
        text.push_str(&format!(
            "\n\ndef benchmark_added_{copies}(x):\n    return x * {copies}\n"
        ));
        std::fs::write(&file, text)?;
        let t = Instant::now();
        let mut o = IndexOptions::new(&root0);
        o.name = Some("copy-000".into());
        let s = engine.index_repository(&o, &|_| {}, &cancel)?;
        let refresh = t.elapsed().as_secs_f64();
        eprintln!(
            "refresh: {} changed, {} unchanged, {} embedded, {} reused in {refresh:.3}s (embedding {:.3}s)",
            s.files_changed,
            s.files_unchanged,
            s.embeddings_computed,
            s.embeddings_reused,
            s.embed_seconds
        );
        println!(
            "| {copies} | {} | {step_s:.1} | {:.0} | {:.0} | {:.2} | {:.0} | {hp50:.1} / {hp99:.1} | {ep50:.1} / {ep99:.1} | {lp50:.1} / {lp99:.1} | {recall:.3} | {refresh:.2} (embedding {:.2}) |",
            stats.units,
            units_step as f64 / step_s.max(1e-9),
            peak_rss_mib(),
            stats.bytes_on_disk as f64 / source.max(1) as f64,
            stats.bytes_on_disk as f64 / stats.units.max(1) as f64,
            s.embed_seconds,
        );
        eprintln!("stats: {stats:?}; source bytes {source}; total build {build_seconds:.1}s");
    }
    Ok(())
}

fn first_python_file(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    let mut found: Vec<PathBuf> = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "py") {
                found.push(p);
            }
        }
    }
    found.sort();
    found.into_iter().next()
}
