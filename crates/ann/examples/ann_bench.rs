//! Benchmark of `gnn-coder-ann` against exact brute force.
//!
//! ```text
//! cargo run --release -p gnn-coder-ann --example ann_bench -- [--n=100000] [--dim=384]
//!     [--centres=2000] [--noise=1.0] [--queries=500] [--m=16] [--ef-construction=128]
//!     [--ef=16,32,48,64,96,128,256] [--threads=0] [--seed=42]
//! ```
//!
//! Data: `centres` random unit vectors; each point is a random centre plus gaussian noise of
//! norm about `noise`, normalized (noise 1.0 puts a point at cosine ~0.7 from its centre and
//! ~0.5 from its cluster mates). Queries are fresh points from the same distribution. Latencies
//! are single-threaded, one query at a time.

use std::time::Instant;

use gnn_coder_ann::{AnnIndex, AnnParams};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{Rng, normalize};

/// Flat row-major `n + q` clustered vectors: the first `n` are the corpus, the rest queries.
fn clustered(n: usize, q: usize, dim: usize, centres: usize, noise: f32, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut c = vec![0f32; centres * dim];
    c.iter_mut().for_each(|x| *x = rng.gauss());
    c.chunks_exact_mut(dim).for_each(normalize);
    let s = noise / (dim as f32).sqrt();
    let mut out = vec![0f32; (n + q) * dim];
    for row in out.chunks_exact_mut(dim) {
        let ci = (rng.next_u64() % centres as u64) as usize;
        for (j, x) in row.iter_mut().enumerate() {
            *x = c[ci * dim + j] + s * rng.gauss();
        }
        normalize(row);
    }
    out
}

/// Inner product with 16 independent accumulators so the compiler vectorizes it (a fair
/// brute-force baseline).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn exact(corpus: &[f32], dim: usize, q: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, v) in corpus.chunks_exact(dim).enumerate() {
        if !keep(i as u32) {
            continue;
        }
        let s = dot(q, v);
        if best.len() < k || s > best[best.len() - 1].0 {
            let pos = best.partition_point(|b| b.0 >= s);
            best.insert(pos, (s, i as u32));
            best.truncate(k);
        }
    }
    best.into_iter().map(|b| b.1).collect()
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Stats {
    recall: f64,
    p50: f64,
    p99: f64,
    mean: f64,
}

fn measure(
    qs: &[f32],
    dim: usize,
    truth: &[Vec<u32>],
    k: usize,
    mut run: impl FnMut(&[f32]) -> Vec<u32>,
) -> Stats {
    let mut lat = Vec::new();
    let mut hits = 0;
    for (qi, q) in qs.chunks_exact(dim).enumerate() {
        let t = Instant::now();
        let got = run(q);
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        hits += got.iter().filter(|id| truth[qi].contains(id)).count();
    }
    lat.sort_by(f64::total_cmp);
    let total: usize = truth.iter().map(|t| t.len().min(k)).sum();
    Stats {
        recall: hits as f64 / total.max(1) as f64,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        mean: lat.iter().sum::<f64>() / lat.len() as f64,
    }
}

fn main() {
    let mut n = 100_000usize;
    let mut dim = 384usize;
    let mut centres = 2000usize;
    let mut noise = 1.0f32;
    let mut nq = 500usize;
    let mut seed = 42u64;
    let mut efs = vec![16usize, 32, 48, 64, 96, 128, 256];
    let mut params = AnnParams::default();
    for arg in std::env::args().skip(1) {
        let (key, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        let num = || {
            value
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("bad value in {arg}"))
        };
        match key {
            "--n" => n = num(),
            "--dim" => dim = num(),
            "--centres" => centres = num(),
            "--noise" => noise = value.parse().expect("--noise=FLOAT"),
            "--queries" => nq = num(),
            "--seed" => seed = num() as u64,
            "--m" => params.m = num(),
            "--ef-construction" => params.ef_construction = num(),
            "--threads" => params.threads = num(),
            "--ef" => {
                efs = value
                    .split(',')
                    .map(|s| s.parse().expect("--ef=A,B,C"))
                    .collect()
            }
            _ => panic!("unknown argument {arg}; see the example's docs"),
        }
    }
    let k = 10;
    println!(
        "n={n} dim={dim} centres={centres} noise={noise} queries={nq} k={k} m={} ef_construction={} threads={}",
        params.m,
        params.ef_construction,
        if params.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            params.threads
        }
    );
    let t = Instant::now();
    let data = clustered(n, nq, dim, centres, noise, seed);
    let (corpus, queries) = data.split_at(n * dim);
    println!("generated in {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .chunks_exact(dim)
        .map(|q| exact(corpus, dim, q, k, &|_| true))
        .collect();
    let bf = t.elapsed().as_secs_f64() * 1e3 / nq as f64;

    let items: Vec<(u32, &[f32])> = corpus
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (i as u32, v))
        .collect();
    let rss0 = rss_mib();
    let t = Instant::now();
    let index = AnnIndex::build(dim, &items, &params, &|| false).expect("build");
    let build_s = t.elapsed().as_secs_f64();
    let rss1 = rss_mib();

    let dir = std::env::temp_dir().join(format!("ann-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bench.ann");
    let t = Instant::now();
    index.save(&path).expect("save");
    let save_s = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let loaded = AnnIndex::load(&path).expect("load");
    let load_s = t.elapsed().as_secs_f64();
    // The same index without its vectors, rebuilt from ours on load (as the embedded store does).
    let graph_path = dir.join("graph.ann");
    let t = Instant::now();
    index
        .save_without_vectors(&graph_path)
        .expect("save without vectors");
    let graph_save_s = t.elapsed().as_secs_f64();
    let graph_size = std::fs::metadata(&graph_path).map(|m| m.len()).unwrap_or(0);
    let t = Instant::now();
    let vector_of = |id: u32| {
        let i = id as usize;
        corpus.get(i * dim..(i + 1) * dim).map(<[f32]>::to_vec)
    };
    let from_graph = AnnIndex::load_with(&graph_path, &vector_of).expect("load with vectors");
    let graph_load_s = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    for q in queries.chunks_exact(dim).take(20) {
        assert_eq!(
            index.search(q, k, 0, &|_| true),
            loaded.search(q, k, 0, &|_| true),
            "reload changed results"
        );
        assert_eq!(
            index.search(q, k, 0, &|_| true),
            from_graph.search(q, k, 0, &|_| true),
            "reload without vectors changed results"
        );
    }
    drop(loaded);
    drop(from_graph);

    println!(
        "build {build_s:.1} s | RSS +{:.0} MiB, engine {:.0} MiB ({:.0} B/vector) | file {:.1} MiB ({:.0} B/vector) | save {save_s:.2} s, load {load_s:.2} s",
        rss1 - rss0,
        index.memory_bytes() as f64 / 1048576.0,
        index.memory_bytes() as f64 / n as f64,
        size as f64 / 1048576.0,
        size as f64 / n as f64,
    );
    println!(
        "without vectors: file {:.1} MiB ({:.0} B/vector) | save {graph_save_s:.2} s, load with the caller's vectors {graph_load_s:.2} s",
        graph_size as f64 / 1048576.0,
        graph_size as f64 / n as f64,
    );
    println!(
        "USearch {} distance kernel: {}",
        usearch::version(),
        index.kernel().unwrap_or_default()
    );
    println!("exact brute force (f32, 1 thread): {bf:.2} ms/query");
    println!();
    println!("| ef | recall@10 | p50 ms | p99 ms | mean ms |");
    println!("|---:|---:|---:|---:|---:|");
    for &ef in &efs {
        let s = measure(queries, dim, &truth, k, |q| {
            index
                .search(q, k, ef, &|_| true)
                .iter()
                .map(|x| x.0)
                .collect()
        });
        println!(
            "| {ef} | {:.4} | {:.3} | {:.3} | {:.3} |",
            s.recall, s.p50, s.p99, s.mean
        );
    }
    println!();
    println!("filtered (`keep(id)` true for 1 id in `kept`):");
    println!("| kept | ef | recall@10 | p50 ms | p99 ms | mean ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let ef0 = index.params().ef_search;
    for (modulo, efs) in [(10u32, vec![ef0, 2 * ef0, 4 * ef0]), (100, vec![ef0])] {
        let keep = move |id: u32| id % modulo == 3;
        let ftruth: Vec<Vec<u32>> = queries
            .chunks_exact(dim)
            .map(|q| exact(corpus, dim, q, k, &keep))
            .collect();
        for ef in efs {
            let s = measure(queries, dim, &ftruth, k, |q| {
                index.search(q, k, ef, &keep).iter().map(|x| x.0).collect()
            });
            println!(
                "| 1/{modulo} | {ef} | {:.4} | {:.3} | {:.3} | {:.3} |",
                s.recall, s.p50, s.p99, s.mean
            );
        }
    }
}
