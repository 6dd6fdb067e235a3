//! How the embedded index grows with the number of units: one documented, bounded command.
//!
//! ```text
//! cargo run -p gnn-coder-engine --example growth_bench -- \
//!     --corpus DEV/corpus --queries DEV/queries.jsonl,DEV/queries-ml.jsonl \
//!     --work /tmp/gnn-growth --sizes 100000,300000,1000000 [--noise 0.5] [--vector-codes int4]
//! ```
//!
//! **What is built.** The corpus is indexed once through the product path (`copy-000`: walk,
//! parse, embed with the default model, write), which gives the embedding-bound build rate.
//! Its units are then embedded once more (the same vectors) and written again as repositories
//! `copy-001`, `copy-002`, ... straight through the store's writer until each size is reached,
//! with **distinct vectors**: each copy's vector of a unit is the real one plus Gaussian noise
//! (`--noise` σ relative to the vector's norm; 0.5 gives a cosine of about 0.89 to the
//! original), normalized, under a key of its own, so every unit has its own row, the
//! approximate index covers every row, and nothing comes from the embedding cache. Texts are
//! the corpus's own, so the lexical index grows by postings, not by vocabulary. Embedding a
//! million real units would take this 2-core machine about two hours; the write rate of the
//! synthetic copies is the store's, the model's rate is the first row's.
//!
//! **What is measured, per size** (the serving numbers by a child process that opens the index
//! afresh, so its peak RSS is what serving costs):
//! - write rate of the step (units/s, store only) and the approximate index's build time;
//! - peak RSS while writing (this process) and while serving (the child);
//! - disk bytes per unit: lexical index, vector rows (with their keys), approximate index, and
//!   all of it over the source bytes of every copy;
//! - hybrid and lexical p50/p99 in process, one query at a time, each a text not searched
//!   before (so the query-vector cache never answers);
//! - QPS at 1, 4 and 16 threads in process, hybrid, each request a text not searched before
//!   while the query files last (the number that repeated is printed);
//! - ANN recall@10 against the exact scan, without filters and with a language filter;
//! - an edit visible: one file of `copy-000` with a new function sent as its contents, then the
//!   first search that finds it; p50/p99 of 10, once through `update_files` (parse, embed,
//!   durable commit) and once through `update_buffers` (parse, embed the new function, no
//!   commit: the overlay of unsaved buffers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use gnn_coder_engine::{
    CancellationToken, EmbeddedStore, Engine, EngineOptions, FileUpdate, IndexOptions, Mode,
    SearchRequest, Store, VectorCodes, collect_units, embed_units, unit_record,
};
use gnn_coder_store::{FileEntry, FileWrite, RepoInfo, UnitKey, UnitRecord, UnitWrite};

mod bench_util;

use bench_util::{arg, copy_dir, peak_rss_mib, recall_at_10, rss_mib};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = if args.first().is_some_and(|a| a == "--measure") {
        measure(&args)
    } else {
        build(&args)
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn read_queries(files: &str) -> Result<Vec<String>, BoxError> {
    let mut out: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in files.split(',') {
        for l in std::fs::read_to_string(f)?.lines() {
            if l.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(l)?;
            if let Some(q) = v.get("query").and_then(|q| q.as_str())
                && !q.trim().is_empty()
                && seen.insert(q.to_string())
            {
                out.push(q.to_string());
            }
        }
    }
    Ok(out)
}

/// A small deterministic generator (xorshift64*), for the noise.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A standard normal sample (Box-Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.next_f64(), self.next_f64());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn perturbed(v: &[f32], sigma: f32, rng: &mut Rng) -> Vec<f32> {
    let scale = sigma / (v.len() as f32).sqrt();
    let mut out: Vec<f32> = v.iter().map(|x| x + scale * rng.normal()).collect();
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    out.iter_mut().for_each(|x| *x /= norm);
    out
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// (lexical, rows and keys, approximate index) bytes of an index directory.
fn disk(index: &Path) -> (u64, u64, u64) {
    let lexical = dir_bytes(&index.join("lexical"));
    let (mut rows, mut ann) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(index.join("vectors")) {
        for e in rd.flatten() {
            let n = e.metadata().map_or(0, |m| m.len());
            if e.file_name().to_string_lossy().starts_with("ann-") {
                ann += n;
            } else {
                rows += n;
            }
        }
    }
    (lexical, rows, ann)
}

fn build(args: &[String]) -> Result<(), BoxError> {
    let usage = "usage: growth_bench --corpus DIR --queries Q.jsonl[,Q2.jsonl] --work DIR [--sizes 100000,1000000] [--noise 0.5] [--vector-codes int8|int4]";
    let corpus = PathBuf::from(arg(args, "--corpus").ok_or(usage)?);
    let queries = arg(args, "--queries").ok_or(usage)?;
    let work = PathBuf::from(arg(args, "--work").ok_or(usage)?);
    let sizes: Vec<u64> = arg(args, "--sizes")
        .unwrap_or_else(|| "100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse::<u64>())
        .collect::<Result<_, _>>()?;
    let sigma: f32 = arg(args, "--noise").map_or(Ok(0.5), |s| s.parse())?;
    let codes = arg(args, "--vector-codes")
        .map(|name| VectorCodes::from_name(&name).ok_or("--vector-codes: int8 or int4"))
        .transpose()?;
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let index = work.join("index");
    let root0 = work.join("copy-000");
    copy_dir(&corpus, &root0)?;
    let cancel = CancellationToken::new();

    // copy-000 through the product path.
    let (units, vectors, corpus_bytes) = {
        let options = EngineOptions {
            vector_codes: codes,
            ..EngineOptions::default()
        };
        let engine = Engine::open_or_create(&index, options, false)?;
        let mut o = IndexOptions::new(&root0);
        o.name = Some("copy-000".into());
        let valid = o.validate()?;
        let s = engine.index_repository(&valid, &|_| {}, &cancel)?;
        println!(
            "copy-000 through the product path: {} units in {:.1} s = {:.0} units/s ({} embedded); peak RSS {:.0} MiB",
            s.units,
            s.seconds,
            s.units as f64 / s.seconds.max(1e-9),
            s.embeddings_computed,
            peak_rss_mib()
        );
        let corpus_bytes: u64 = engine.repositories()?.iter().map(|r| r.bytes).sum();
        let t = Instant::now();
        let units = collect_units(&o, true, 0)?;
        let inputs: Vec<_> = units
            .iter()
            .map(|(u, g)| (u.code.as_str(), g.as_ref(), u.language.as_str()))
            .collect();
        let model = engine.model()?;
        let vectors = embed_units(&model.embedder, &inputs, &cancel, &|_| {})?;
        eprintln!(
            "embedded {} units again for the copies in {:.1} s",
            units.len(),
            t.elapsed().as_secs_f64()
        );
        (units, vectors, corpus_bytes)
    };

    // Files of the corpus: (path, its units' indexes).
    let mut files: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (u, _)) in units.iter().enumerate() {
        files.entry(u.path.clone()).or_default().push(i);
    }
    let records: Vec<UnitRecord> = units.iter().map(|(u, _)| unit_record(u)).collect();
    let file_bytes: BTreeMap<&str, u64> = files
        .keys()
        .map(|p| {
            let n = std::fs::metadata(root0.join(p)).map_or(0, |m| m.len());
            (p.as_str(), n)
        })
        .collect();

    println!(
        "noise σ {sigma}; each copy {} units in {} files",
        units.len(),
        files.len()
    );
    println!(
        "| units | write units/s (step) | ANN build s | peak RSS writing MiB | peak RSS serving MiB | disk B/unit: lexical / rows / ANN | disk / source | hybrid p50 / p99 ms | lexical p50 / p99 ms | QPS 1 / 4 / 16 | ANN recall@10 (none / language filter) | edit visible p50 / p99 ms: committed / unsaved buffer |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let store = EmbeddedStore::open(&index)?;
    let mut copies = 1usize;
    let mut total = units.len() as u64;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for &size in &sizes {
        let started = Instant::now();
        let mut written = 0u64;
        while total < size {
            let name = format!("copy-{copies:03}");
            let mut w = store.writer()?;
            w.put_repository(&RepoInfo {
                name: name.clone(),
                root: root0.to_string_lossy().into_owned(),
                ..RepoInfo::default()
            })?;
            let mut batch = Vec::new();
            for (path, ids) in &files {
                let file_units = ids
                    .iter()
                    .map(|&i| {
                        let mut key = [0u8; 16];
                        key[..8].copy_from_slice(&(copies as u64).to_le_bytes());
                        key[8..].copy_from_slice(&(i as u64).to_le_bytes());
                        UnitWrite {
                            record: records[i].clone(),
                            key: UnitKey(key),
                            vector: Some(perturbed(&vectors[i], sigma, &mut rng)),
                        }
                    })
                    .collect::<Vec<_>>();
                batch.push(FileWrite {
                    file: FileEntry {
                        path: path.clone(),
                        hash: format!("copy{copies}"),
                        units: file_units.len() as u32,
                        bytes: file_bytes.get(path.as_str()).copied().unwrap_or(0),
                    },
                    units: file_units,
                });
                if batch.len() >= 256 {
                    w.upsert_files(&name, std::mem::take(&mut batch))?;
                }
            }
            w.upsert_files(&name, batch)?;
            w.commit(&cancel)?;
            written += units.len() as u64;
            total += units.len() as u64;
            copies += 1;
        }
        let write_s = started.elapsed().as_secs_f64();
        let t = Instant::now();
        {
            let mut w = store.writer()?;
            w.maintain(&cancel)?;
        }
        let ann_s = t.elapsed().as_secs_f64();
        // Commits merge in the background: the serving child measures a settled index.
        store.finish_merges();
        let writing_rss = peak_rss_mib();
        let (lex, rows, ann) = disk(&index);
        let source = corpus_bytes * copies as u64;
        eprintln!(
            "{total} units in {copies} copies: wrote {written} in {write_s:.1} s, ANN {ann_s:.1} s; disk lexical {lex} rows {rows} ann {ann}; source {source}"
        );
        // Serving, in a fresh process.
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["--measure", &index.to_string_lossy(), "--queries", &queries])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("the measuring child failed: {}", out.status).into());
        }
        let m: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let f = |k: &str| m.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let per = |b: u64| b as f64 / total as f64;
        println!(
            "| {total} | {:.0} | {ann_s:.1} | {writing_rss:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.2} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} / {:.0} / {:.0} | {:.3} / {:.3} | {:.0} / {:.0} / {:.0} / {:.0} |",
            written as f64 / write_s.max(1e-9),
            f("serving_peak_rss_mib"),
            per(lex),
            per(rows),
            per(ann),
            (lex + rows + ann) as f64 / source.max(1) as f64,
            f("hybrid_p50"),
            f("hybrid_p99"),
            f("lexical_p50"),
            f("lexical_p99"),
            f("qps_1"),
            f("qps_4"),
            f("qps_16"),
            f("recall"),
            f("recall_filtered"),
            f("edit_p50"),
            f("edit_p99"),
            f("buffer_p50"),
            f("buffer_p99"),
        );
        eprintln!("measured: {m}");
    }
    Ok(())
}

/// The child: opens the index as a server would and measures serving.
fn measure(args: &[String]) -> Result<(), BoxError> {
    let index = PathBuf::from(args.get(1).ok_or("--measure DIR")?);
    // An index written or copied just before is still dirty in the page cache: the first
    // update's fsync would write all of it back.
    let _ = std::process::Command::new("sync").status();
    let pool = read_queries(&arg(args, "--queries").ok_or("--queries")?)?;
    let cursor = AtomicUsize::new(0);
    let take = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| pool[cursor.fetch_add(1, Ordering::Relaxed) % pool.len()].clone())
            .collect()
    };
    let t = Instant::now();
    let engine = Arc::new(Engine::open(&index, EngineOptions::default())?);
    // Warm-up: the model, the snapshot and its per-segment columns.
    for q in take(10) {
        engine.search(&SearchRequest::new(q, 10))?;
    }
    eprintln!(
        "opened and warmed in {:.1} s, RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        rss_mib()
    );
    let latency = |mode: Mode, qs: &[String]| -> Result<(f64, f64), BoxError> {
        let mut ms = Vec::new();
        for q in qs {
            let mut req = SearchRequest::new(q.clone(), 10);
            req.mode = Some(mode);
            let t = Instant::now();
            std::hint::black_box(engine.search(&req)?);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(f64::total_cmp);
        Ok((pct(&ms, 0.5), pct(&ms, 0.99)))
    };
    let texts = take(200);
    let (hp50, hp99) = latency(Mode::Hybrid, &texts)?;
    let (lp50, lp99) = latency(Mode::Lexical, &texts)?;

    // Recall of the approximate leg against the exact scan.
    let recall = recall_at_10(&engine, &texts[..100], &[])?;
    let recall_filtered = recall_at_10(&engine, &texts[..100], &["rust".to_string()])?;

    // Throughput: threads sending hybrid searches back to back, fresh texts while they last.
    let mut qps = Vec::new();
    let mut repeated = 0usize;
    for threads in [1usize, 4, 16] {
        let budget = 400usize;
        let done = AtomicUsize::new(0);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while done.fetch_add(1, Ordering::Relaxed) < budget
                        && t.elapsed().as_secs_f64() < 20.0
                    {
                        let i = cursor.fetch_add(1, Ordering::Relaxed);
                        let q = pool[i % pool.len()].clone();
                        let _ = engine.search(&SearchRequest::new(q, 10));
                    }
                });
            }
        });
        let n = done.load(Ordering::Relaxed).min(budget);
        qps.push(n as f64 / t.elapsed().as_secs_f64());
    }
    if cursor.load(Ordering::Relaxed) > pool.len() {
        repeated = cursor.load(Ordering::Relaxed) - pool.len();
    }

    // Edits: a new function in an unsaved buffer of copy-000, until a search finds it.
    let repo = engine
        .repositories()?
        .into_iter()
        .find(|r| r.name == "copy-000")
        .ok_or("no copy-000")?;
    let file = {
        let mut found = None;
        let mut stack = vec![PathBuf::from(&repo.root)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "py") {
                    found = Some(p);
                }
            }
            if found.is_some() {
                break;
            }
        }
        found.ok_or("no Python file in copy-000")?
    };
    let rel = file
        .strip_prefix(&repo.root)?
        .to_string_lossy()
        .replace('\\', "/");
    let original = std::fs::read_to_string(&file)?;
    // Edits, committed (`update_files`) and as unsaved buffers (`update_buffers`, no commit).
    let mut edits = Vec::new();
    for unsaved in [false, true] {
        let (mut edit_ms, mut update_ms) = (Vec::new(), Vec::new());
        // The first update loads the full model (graph network included): not counted.
        for i in 0..11 {
            let name = format!("growth_probe_{i}_{unsaved}_{}", std::process::id());
            let text = format!("{original}\n\ndef {name}(value):\n    return value * {i}\n");
            let t = Instant::now();
            let update = if unsaved {
                Engine::update_buffers
            } else {
                Engine::update_files
            };
            update(
                &engine,
                "copy-000",
                &[FileUpdate {
                    path: rel.clone(),
                    contents: Some(text.into_bytes()),
                    deleted: false,
                }],
                &CancellationToken::new(),
            )?;
            update_ms.push(t.elapsed().as_secs_f64() * 1e3);
            loop {
                let mut req = SearchRequest::new(name.clone(), 5);
                req.mode = Some(Mode::Lexical);
                if engine.search(&req)?.iter().any(|h| h.unit.name == name) {
                    break;
                }
                if t.elapsed().as_secs() > 30 {
                    return Err("an edit was not visible after 30 s".into());
                }
            }
            if i == 0 {
                update_ms.clear();
            } else {
                edit_ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        edit_ms.sort_by(f64::total_cmp);
        update_ms.sort_by(f64::total_cmp);
        edits.push((
            pct(&edit_ms, 0.5),
            pct(&edit_ms, 0.99),
            pct(&update_ms, 0.5),
        ));
    }
    let (hits, misses) = engine.query_cache_counts();
    println!(
        "{}",
        serde_json::json!({
            "hybrid_p50": hp50, "hybrid_p99": hp99,
            "lexical_p50": lp50, "lexical_p99": lp99,
            "recall": recall, "recall_filtered": recall_filtered,
            "qps_1": qps[0], "qps_4": qps[1], "qps_16": qps[2],
            "repeated_texts": repeated,
            "query_cache_hits": hits, "query_cache_misses": misses,
            "edit_p50": edits[0].0, "edit_p99": edits[0].1, "update_p50": edits[0].2,
            "buffer_p50": edits[1].0, "buffer_p99": edits[1].1, "buffer_update_p50": edits[1].2,
            "serving_peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}
