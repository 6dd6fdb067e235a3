//! Embedding and indexing speed, side by side with the PyTorch reference, in one run.
//!
//! ```text
//! cargo build --release --workspace --examples --bins
//! target/release/examples/speed_bench --corpus DEV/corpus [--limit 0] [--rounds 3]
//!     [--computes bf16,f32,burn] [--queries DEV/queries.jsonl] [--index-bin target/release/gnn-coder]
//!     [--no-table] [--python python3] [--reference crates/model/benches/reference_embed.py]
//! ```
//!
//! The texts are the corpus's code units exactly as `gnn-coder index` extracts them
//! (`collect_units`: the same walk, parser and graphs), embedded at the index's batch (32) and
//! token limit (256). `--limit N` keeps the first N units (0: all). The PyTorch side
//! (`crates/model/benches/reference_embed.py --serve`, sentence-transformers, 2 threads) loads once
//! and is driven over a pipe, so each round runs every row back to back:
//!
//! * `units` - [`gnn_coder_engine::embed_units`], what an index run does: one worker per core,
//!   transformer + graph network + fusion + projection (shipped weights);
//! * `units, no graph` - the same with the graphs withheld (the graph network's share is the
//!   difference);
//! * `transformer` - `embed_sentences`, MiniLM mean-pooled, what PyTorch computes;
//! * PyTorch f32 and PyTorch under bf16 autocast.
//!
//! Rates are medians over the rounds; ratios are to PyTorch f32's median. It also reports the
//! cosine of each compute's transformer vectors to PyTorch f32's, query latency (one query per
//! call, as search does), and with `--index-bin` the end-to-end `gnn-coder index --rebuild` of
//! the corpus (walk, parse, graphs, embed, store; wall time including model load, and peak RSS
//! from `/usr/bin/time`), alternating with PyTorch f32 rounds over the same units (use
//! `--limit 0`, the default, so they are the corpus's; `--no-table` skips the per-path rows).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use gnn_coder_engine::{CancellationToken, IndexOptions, collect_units, embed_units};
use gnn_coder_model::{Compute, Embedder, EmbedderOptions, find_model_dir, resolve_weights};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    corpus: PathBuf,
    limit: usize,
    rounds: usize,
    computes: Vec<Compute>,
    queries: Option<PathBuf>,
    index_bin: Option<PathBuf>,
    no_table: bool,
    python: String,
    reference: PathBuf,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        corpus: PathBuf::from("/work/dev/corpus"),
        limit: 0,
        rounds: 3,
        computes: vec!["bf16".parse()?, "f32".parse()?],
        queries: None,
        index_bin: None,
        no_table: false,
        python: "python3".into(),
        reference: PathBuf::from("crates/model/benches/reference_embed.py"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--corpus" => a.corpus = PathBuf::from(val()?),
            "--limit" => a.limit = val()?.parse()?,
            "--rounds" => a.rounds = val()?.parse::<usize>()?.max(1),
            "--computes" => {
                a.computes = val()?
                    .split(',')
                    .map(|c| c.parse::<Compute>())
                    .collect::<Result<_, _>>()?
            }
            "--queries" => a.queries = Some(PathBuf::from(val()?)),
            "--index-bin" => a.index_bin = Some(PathBuf::from(val()?)),
            "--no-table" => a.no_table = true,
            "--python" => a.python = val()?,
            "--reference" => a.reference = PathBuf::from(val()?),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// The PyTorch side, served over a pipe.
struct Reference {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Reference {
    fn start(args: &Args, texts: &Path, model_dir: &Path) -> Res<Reference> {
        let mut child = Command::new(&args.python)
            .arg(&args.reference)
            .arg("--serve")
            .arg(texts)
            .arg(model_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut r = Reference { child, out };
        let ready = r.read()?;
        eprintln!("reference: {ready}");
        Ok(r)
    }

    fn read(&mut self) -> Res<serde_json::Value> {
        let mut line = String::new();
        if self.out.read_line(&mut line)? == 0 {
            return Err("the PyTorch reference exited".into());
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(e) = v.get("error") {
            return Err(format!("reference: {e}").into());
        }
        Ok(v)
    }

    fn ask(&mut self, cmd: &str) -> Res<serde_json::Value> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{cmd}")?;
        stdin.flush()?;
        self.read()
    }

    /// Seconds for one pass over the texts.
    fn run(&mut self, mode: &str) -> Res<f64> {
        let v = self.ask(mode)?;
        v["secs"].as_f64().ok_or_else(|| "no secs".into())
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn cos(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(x * x)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-12)
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let units = collect_units(&IndexOptions::new(&args.corpus), true, 0)?;
    let mut units = units;
    if args.limit > 0 {
        units.truncate(args.limit);
    }
    if units.is_empty() {
        return Err(format!("no code units under {}", args.corpus.display()).into());
    }
    eprintln!(
        "{} units from {} in {:.1}s",
        units.len(),
        args.corpus.display(),
        started.elapsed().as_secs_f64()
    );
    let texts: Vec<&str> = units.iter().map(|(u, _)| u.code.as_str()).collect();
    let with_graphs: Vec<(&str, Option<&gnn_coder_syntax::AstGraph>, &str)> = units
        .iter()
        .map(|(u, g)| (u.code.as_str(), g.as_ref(), u.language.as_str()))
        .collect();
    let no_graphs: Vec<_> = with_graphs.iter().map(|(c, _, l)| (*c, None, *l)).collect();

    let tmp = tempfile::tempdir()?;
    let texts_path = tmp.path().join("texts.json");
    std::fs::write(&texts_path, serde_json::to_vec(&texts)?)?;
    if let Ok(p) = std::env::var("SPEED_BENCH_DUMP") {
        std::fs::copy(&texts_path, p)?;
    }
    let model_dir = find_model_dir(None)?;
    let weights = resolve_weights(None)?;
    let mut reference = Reference::start(&args, &texts_path, &model_dir)?;
    let untrained: Vec<Embedder> = args
        .computes
        .iter()
        .map(|&compute| {
            let mut opts = EmbedderOptions::new(model_dir.as_path());
            opts.compute = compute;
            Embedder::load(&opts)
        })
        .collect::<Result<_, _>>()?;

    let mut embedders = Vec::new();
    for &compute in &args.computes {
        let mut opts = EmbedderOptions::new(model_dir.as_path());
        opts.weights = weights.clone().map(Into::into);
        opts.compute = compute;
        let e = Embedder::load(&opts)?;
        e.embed_sentences(&texts[..texts.len().min(32)])?; // warm-up
        embedders.push(e);
    }
    let tokens: usize = texts
        .iter()
        .map(|t| embedders[0].tokenizer().encode(t).map_or(0, |e| e.len()))
        .sum();
    eprintln!(
        "mean {:.1} tokens per unit (limit 256); {} rounds",
        tokens as f64 / texts.len() as f64,
        args.rounds
    );

    let cancel = CancellationToken::new();
    let n = texts.len() as f64;
    // rows: (name, seconds per round)
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    let mut row = |name: String, secs: f64| match rows.iter_mut().find(|r| r.0 == name) {
        Some(r) => r.1.push(secs),
        None => rows.push((name, vec![secs])),
    };
    let table_rounds = if args.no_table { 0 } else { args.rounds };
    for round in 0..table_rounds {
        for e in &embedders {
            let c = e.compute_name();
            let t = Instant::now();
            embed_units(e, &with_graphs, &cancel, &|_| {})?;
            row(
                format!("ours {c}: units (index path)"),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            embed_units(e, &no_graphs, &cancel, &|_| {})?;
            row(
                format!("ours {c}: units, no graph"),
                t.elapsed().as_secs_f64(),
            );
            let t = Instant::now();
            e.embed_sentences(&texts)?;
            row(format!("ours {c}: transformer"), t.elapsed().as_secs_f64());
        }
        for mode in ["f32", "bf16"] {
            let s = reference.run(mode)?;
            row(format!("pytorch {mode}"), s);
        }
        eprintln!("round {} done", round + 1);
    }
    if !args.no_table {
        let pt = rows
            .iter()
            .find(|r| r.0 == "pytorch f32")
            .map(|r| median(&mut r.1.clone()))
            .ok_or("no PyTorch row")?;
        println!(
            "| path | units/s (median of {}) | × PyTorch f32 |",
            args.rounds
        );
        println!("|---|---|---|");
        for (name, secs) in &rows {
            let s = median(&mut secs.clone());
            println!("| {name} | {:.1} | {:.2} |", n / s, pt / s);
        }
        for e in &embedders {
            let c = e.compute_name();
            let units_s = rows
                .iter()
                .find(|r| r.0 == format!("ours {c}: units (index path)"))
                .map(|r| median(&mut r.1.clone()));
            let plain_s = rows
                .iter()
                .find(|r| r.0 == format!("ours {c}: units, no graph"))
                .map(|r| median(&mut r.1.clone()));
            if let (Some(a), Some(b)) = (units_s, plain_s) {
                println!(
                    "graph network share ({c}): {:.1}% of the index path's embedding time",
                    100.0 * (a - b).max(0.0) / a
                );
            }
        }

        // Cosine of each compute's MiniLM vectors (pretrained weights only) to PyTorch f32's.
        let vec_path = tmp.path().join("pytorch_f32.json");
        reference.ask(&format!("vectors f32 {}", vec_path.display()))?;
        let want: Vec<Vec<f32>> = serde_json::from_slice(&std::fs::read(&vec_path)?)?;
        for e in &untrained {
            let got = e.embed_sentences(&texts)?;
            let cs: Vec<f64> = got.iter().zip(&want).map(|(a, b)| cos(a, b)).collect();
            let min = cs.iter().cloned().fold(f64::MAX, f64::min);
            let mean = cs.iter().sum::<f64>() / cs.len() as f64;
            let mut worst: Vec<usize> = (0..cs.len()).collect();
            worst.sort_by(|&a, &b| cs[a].total_cmp(&cs[b]));
            for &i in worst.iter().take(3) {
                eprintln!(
                    "  low cosine {:.4}: unit {i}, {} tokens, {} bytes",
                    cs[i],
                    e.tokenizer().encode(texts[i]).map_or(0, |t| t.len()),
                    texts[i].len()
                );
            }
            println!(
                "cosine to PyTorch f32 ({}): mean {mean:.6}, min {min:.6}",
                e.compute_name()
            );
        }
    }

    if let Some(q) = &args.queries {
        let text = std::fs::read_to_string(q)?;
        let queries: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["query"].as_str().map(str::to_string))
            .take(300)
            .collect();
        for e in &embedders {
            let mut ms = Vec::new();
            for q in &queries {
                let t = Instant::now();
                e.embed_queries(&[q.as_str()])?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            println!(
                "query embedding ({}, {} queries, one per call): p50 {:.2} ms, p99 {:.2} ms",
                e.compute_name(),
                ms.len(),
                percentile(&mut ms, 0.5),
                percentile(&mut ms, 0.99)
            );
        }
    }

    if let Some(bin) = &args.index_bin {
        drop(embedders);
        drop(untrained);
        let mut idx_secs = Vec::new();
        let mut pt_secs = Vec::new();
        let mut rss = Vec::new();
        let mut written = 0u64;
        for _ in 0..args.rounds {
            pt_secs.push(reference.run("f32")?);
            let dir = tmp.path().join("index");
            let t = Instant::now();
            let out = Command::new("/usr/bin/time")
                .args(["-f", "peak_rss_kb=%M"])
                .arg(bin)
                .arg("index")
                .arg(&args.corpus)
                .arg("--index")
                .arg(&dir)
                .args(["--rebuild", "--json", "--quiet"])
                .output()?;
            let secs = t.elapsed().as_secs_f64();
            if !out.status.success() {
                return Err(format!(
                    "gnn-coder index failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
                .into());
            }
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            written = summary["units_written"].as_u64().unwrap_or(0);
            let err = String::from_utf8_lossy(&out.stderr);
            if let Some(kb) = err
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("peak_rss_kb="))
                .and_then(|v| v.trim().parse::<f64>().ok())
            {
                rss.push(kb / 1024.0);
            }
            idx_secs.push(secs);
            eprintln!(
                "index: {written} units in {secs:.1}s (embedding {:.1}s)",
                summary["embed_seconds"].as_f64().unwrap_or(0.0)
            );
        }
        let idx = median(&mut idx_secs);
        let pt = median(&mut pt_secs);
        let units_rate = written as f64 / idx;
        println!(
            "gnn-coder index end to end: {written} units in {idx:.1}s = {units_rate:.1} units/s, \
             peak RSS {:.0} MiB; PyTorch f32 embedding only: {:.1} units/s; ratio {:.2}",
            rss.iter().cloned().fold(0.0, f64::max),
            n / pt,
            units_rate / (n / pt)
        );
    }
    Ok(())
}
