//! Dumps the learned fusion's training data: for every query of a benchmark, the hybrid first
//! stage's top candidates with their features (`gnn_coder_engine::rerank`).
//!
//! ```text
//! cargo run -p gnn-coder-engine --example fusion_features -- \
//!     --index INDEX --queries QUERIES.jsonl --out FEATURES.jsonl [--weights DIR]
//! ```
//!
//! One line per query: `{"id", "candidates": [{"path", "start_line", "end_line", "features"}]}`
//! in the weighted fusion's order; `training/fusion/fit.py` labels them with the benchmark's
//! gold answers (score.py's rule) and fits the weights. Only ever run it on benchmarks built
//! from the *training* manifests' packages.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use gnn_coder_engine::{
    Engine, EngineOptions, FEATURES, KindFilter, Mode, ModelChoice, SearchRequest, StoreLocation,
};

mod bench_util;

use bench_util::arg;

type BoxError = Box<dyn std::error::Error>;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(index), Some(queries), Some(out)) = (
        arg(&args, "--index"),
        arg(&args, "--queries"),
        arg(&args, "--out"),
    ) else {
        return Err(
            "usage: fusion_features --index DIR --queries Q.jsonl --out OUT.jsonl \
                    [--weights DIR] [--model-dir DIR]"
                .into(),
        );
    };
    let options = EngineOptions {
        model: ModelChoice {
            model_dir: arg(&args, "--model-dir").map(PathBuf::from),
            weights: arg(&args, "--weights").map(PathBuf::from),
        },
        ..EngineOptions::default()
    };
    let engine = Engine::open_at(&StoreLocation::Dir(PathBuf::from(index)), options)?;
    let mut texts: Vec<(String, String)> = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(&queries)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let id = v["id"].as_str().ok_or("a query without an id")?.to_string();
        let q = v["query"]
            .as_str()
            .ok_or("a query without text")?
            .to_string();
        texts.push((id, q));
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(&out)?);
    writeln!(w, "{}", serde_json::json!({ "features": FEATURES }))?;
    let started = std::time::Instant::now();
    for (k, (id, q)) in texts.iter().enumerate() {
        let mut req = SearchRequest::new(q.clone(), 10);
        req.mode = Some(Mode::Hybrid);
        // The CLI's default: functions and methods.
        req.kinds = KindFilter::parse(&["callable"], KindFilter::Callables)?;
        let prepared = engine.prepare(&req)?;
        let vector = engine
            .embed_queries(&[q.as_str()])?
            .pop()
            .ok_or("no query vector")?;
        let pool = engine.fusion_features(&prepared, &vector)?;
        let candidates: Vec<serde_json::Value> = pool
            .iter()
            .map(|(hit, f)| {
                serde_json::json!({
                    "path": hit.unit.path,
                    "start_line": hit.unit.start_line,
                    "end_line": hit.unit.end_line,
                    "features": f.to_vec(),
                })
            })
            .collect();
        writeln!(
            w,
            "{}",
            serde_json::json!({ "id": id, "candidates": candidates })
        )?;
        if (k + 1) % 200 == 0 {
            eprintln!(
                "{}/{} queries, {:.1} s",
                k + 1,
                texts.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    w.flush()?;
    Ok(())
}
