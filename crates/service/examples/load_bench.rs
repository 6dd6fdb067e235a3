//! Load benchmark of the gRPC service, on loopback, bounded in requests and time.
//!
//! ```text
//! cargo run --release -p gnn-coder-service --example load_bench -- \
//!     --index DIR --queries Q.jsonl[,Q2.jsonl] [--clients 1,4,8] [--requests 2000] [--seconds 60] \
//!     [--limit 16] [--mode hybrid|lexical|semantic] [--edits 20]
//!     [--store postgres://… --replicas 1,2]
//! ```
//!
//! With `--store URL` the servers serve a PostgreSQL store instead of `--index DIR`, and
//! `--replicas 1,2` repeats the client rows with that many servers on the one store (the
//! clients spread over them round-robin; all in this process, so on the same cores).
//!
//! Starts `serve` in this process on 127.0.0.1:0 (its own runtime and threads; the clients run
//! on another runtime, one HTTP/2 connection each) over an existing index, then:
//! 1. for each client count: clients send searches back to back (query `i` of the file for the
//!    `i`-th request, counted across all rows, so no text is sent twice while the file lasts:
//!    the engine caches query vectors by text, and a repeated text would measure the cache),
//!    until `--requests` answers or `--seconds`; prints QPS and p50/p99 latency of the answers,
//!    how many were refused, and how many repeated an earlier text (`--queries A,B` pools
//!    several files);
//! 2. overload: 4 x `--limit` clients against a server whose concurrency limit is `--limit`:
//!    counts OK and RESOURCE_EXHAUSTED answers and other errors, peak RSS before and after,
//!    and checks the server still answers afterwards;
//! 3. `--edits` times: an edited file (a new function in a file of the first repository, sent
//!    with its contents) until a search finds it: p50/p99 of the round trip, once committed
//!    (`UpdateFiles`) and once as an unsaved buffer (`UpdateFiles` with `unsaved`: no commit).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gnn_coder_engine::EngineOptions;
use gnn_coder_service::client::{self, ClientOptions};
use gnn_coder_service::proto as pb;
use gnn_coder_service::{Limits, ServeConfig};

#[path = "../../engine/examples/bench_util/mod.rs"]
mod bench_util;

use bench_util::{arg, peak_rss_mib, rss_mib};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Outcome {
    latencies_ms: Vec<f64>,
    exhausted: usize,
    other_errors: usize,
    wall: f64,
    /// Requests whose text an earlier request sent already.
    repeated: usize,
}

impl Outcome {
    /// Answers, answers per second, p50 and p99 latency in ms (latencies sorted).
    fn summary(&self) -> (usize, f64, f64, f64) {
        let n = self.latencies_ms.len();
        (
            n,
            n as f64 / self.wall,
            pct(&self.latencies_ms, 0.5),
            pct(&self.latencies_ms, 0.99),
        )
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_load(
    urls: &[String],
    queries: Arc<Vec<String>>,
    cursor: Arc<AtomicUsize>,
    clients: usize,
    requests: usize,
    seconds: f64,
    mode: pb::Mode,
) -> Result<Outcome, BoxError> {
    let next = cursor;
    let first = next.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut c = client::connect(&urls[k % urls.len()], &ClientOptions::default()).await?;
        let queries = queries.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i - first >= requests || Instant::now() > deadline {
                    break;
                }
                if i >= queries.len() {
                    out.repeated += 1;
                }
                let req = pb::SearchRequest {
                    query: queries[i % queries.len()].clone(),
                    top_k: 10,
                    mode: mode as i32,
                    ..Default::default()
                };
                let t = Instant::now();
                match c.search(req).await {
                    Ok(_) => out.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        out.exhausted += 1;
                        // A refused client backs off a little, as a real one would.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(_) => out.other_errors += 1,
                }
            }
            out
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        let o = t.await?;
        all.latencies_ms.extend(o.latencies_ms);
        all.exhausted += o.exhausted;
        all.other_errors += o.other_errors;
        all.repeated += o.repeated;
    }
    all.wall = started.elapsed().as_secs_f64();
    all.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(all)
}

type ServerThread = std::thread::JoinHandle<Result<(), String>>;

/// `serve` over `location` on 127.0.0.1:0 on its own runtime: its URL and how to stop it.
fn start_server(
    location: gnn_coder_engine::StoreLocation,
    limit: usize,
) -> Result<(String, (tokio::sync::oneshot::Sender<()>, ServerThread)), BoxError> {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig {
        location,
        engine: EngineOptions::default(),
        listen: "127.0.0.1:0".parse()?,
        allow_roots: Vec::new(),
        tls: None,
        tokens: Default::default(),
        limits: Limits {
            max_concurrent_requests: limit,
            ..Limits::default()
        },
        metrics_listen: None,
        watch: false,
        allow_unauthenticated_remote: false,
    };
    let server = std::thread::spawn(move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(gnn_coder_service::serve(
            config,
            move |a| {
                let _ = addr_tx.send(a);
            },
            async move {
                let _ = stop_rx.await;
            },
        ))
        .map_err(|e| e.to_string())
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(300))
        .map_err(|_| "the server did not start")?;
    Ok((format!("http://{addr}"), (stop_tx, server)))
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: load_bench --index DIR --queries Q.jsonl[,Q2.jsonl] [--clients 1,4,8] [--requests N] [--seconds S] [--limit L] [--mode M] [--edits N]";
    let index = arg(&args, "--index").map(PathBuf::from);
    let replicas: Vec<usize> = arg(&args, "--replicas")
        .unwrap_or_else(|| "1".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let queries_files: Vec<PathBuf> = arg(&args, "--queries")
        .ok_or(usage)?
        .split(',')
        .map(PathBuf::from)
        .collect();
    let clients: Vec<usize> = arg(&args, "--clients")
        .unwrap_or_else(|| "1,4,8".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let requests: usize = arg(&args, "--requests").map_or(Ok(2000), |s| s.parse())?;
    let seconds: f64 = arg(&args, "--seconds").map_or(Ok(60.0), |s| s.parse())?;
    let limit: usize = arg(&args, "--limit").map_or(Ok(16), |s| s.parse())?;
    let edits: usize = arg(&args, "--edits").map_or(Ok(20), |s| s.parse())?;
    let mode = match arg(&args, "--mode").as_deref().unwrap_or("hybrid") {
        "hybrid" => pb::Mode::Hybrid,
        "lexical" => pb::Mode::Lexical,
        "semantic" => pb::Mode::Semantic,
        other => return Err(format!("unknown mode {other}").into()),
    };
    let mut queries: Vec<String> = Vec::new();
    for f in &queries_files {
        for l in std::fs::read_to_string(f)?.lines() {
            if l.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str::<serde_json::Value>(l)?;
            let q = v.get("query").and_then(|q| q.as_str()).unwrap_or("");
            if !q.trim().is_empty() && !queries.iter().any(|x| x == q) {
                queries.push(q.to_string());
            }
        }
    }
    let queries = Arc::new(queries);

    // An index copied just before the run is still dirty in the page cache: the first
    // update's fsync would write all of it back (157 ms of a million-unit first edit).
    let _ = std::process::Command::new("sync").status();
    // The servers, each on its own runtime.
    let location = match arg(&args, "--store") {
        Some(url) => gnn_coder_engine::StoreLocation::postgres(&url)?,
        None => gnn_coder_engine::StoreLocation::Dir(index.clone().ok_or(usage)?),
    };
    let mut urls = Vec::new();
    let mut stops = Vec::new();
    for _ in 0..replicas.iter().copied().max().unwrap_or(1).max(1) {
        let (url, stop) = start_server(location.clone(), limit)?;
        urls.push(url);
        stops.push(stop);
    }
    let url = urls[0].clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut c = client::connect(&url, &ClientOptions::default()).await?;
        let stats = c.get_stats(pb::GetStatsRequest {}).await?.into_inner();
        println!(
            "index {}: {} repositories, {} units, {} vectors ({} in the ANN), model {:?}",
            location,
            stats.repositories,
            stats.units,
            stats.vectors,
            stats.ann_vectors,
            stats.model
        );
        println!("server concurrency limit {limit}; mode {mode:?}; {requests} requests or {seconds} s per row; RSS {:.0} MiB", rss_mib());
        // Warm-up.
        let cursor = Arc::new(AtomicUsize::new(0));
        run_load(&urls, queries.clone(), cursor.clone(), 2, 40, 30.0, mode).await?;
        println!("{} distinct query texts", queries.len());
        println!("| replicas | clients | answers | QPS | p50 ms | p99 ms | refused | errors | repeated texts |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for &r in &replicas {
            for &n in &clients {
                let o =
                    run_load(&urls[..r.max(1)], queries.clone(), cursor.clone(), n, requests, seconds, mode)
                        .await?;
                let (answers, qps, p50, p99) = o.summary();
                println!(
                    "| {r} | {n} | {answers} | {qps:.0} | {p50:.1} | {p99:.1} | {} | {} | {} |",
                    o.exhausted, o.other_errors, o.repeated
                );
            }
        }
        let before = peak_rss_mib();
        let n = limit * 4;
        let o = run_load(&urls[..1], queries.clone(), cursor.clone(), n, requests * 2, seconds, mode).await?;
        let alive = c.get_stats(pb::GetStatsRequest {}).await.is_ok();
        let (answers, qps, p50, p99) = o.summary();
        println!(
            "overload: {n} clients against a limit of {limit}: {answers} OK ({qps:.0}/s, p50 {p50:.1} ms, p99 {p99:.1} ms), {} RESOURCE_EXHAUSTED, {} other errors in {:.1} s; peak RSS {:.0} -> {:.0} MiB; server answers afterwards: {alive}",
            o.exhausted,
            o.other_errors,
            o.wall,
            before,
            peak_rss_mib()
        );

        // Edits: a new function in an unsaved buffer, until a search finds it.
        if edits > 0 {
            let repos = c.list_repositories(pb::ListRepositoriesRequest {}).await?.into_inner();
            let repo = repos.repositories.first().ok_or("the index has no repository")?;
            let hit = c
                .search(pb::SearchRequest {
                    query: "def".into(),
                    top_k: 1,
                    mode: pb::Mode::Lexical as i32,
                    filters: Some(pb::Filters {
                        repositories: vec![repo.name.clone()],
                        languages: vec!["python".into()],
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let path = hit.hits.first().ok_or("no python file to edit")?.path.clone();
            let original = std::fs::read(std::path::Path::new(&repo.root).join(&path))?;
            // Committed (a durable commit per edit), then as unsaved buffers (no commit).
            for unsaved in [false, true] {
                let mut times = Vec::new();
                let mut server_side = Vec::new();
                let mut search_ms = Vec::new();
                for i in 0..edits {
                    let name = format!("load_bench_probe_{i}_{unsaved}_{}", std::process::id());
                    let mut buf = original.clone();
                    buf.extend_from_slice(format!("\n\ndef {name}(x):\n    return x + {i}\n").as_bytes());
                    let t = Instant::now();
                    let up = c
                        .update_files(pb::UpdateFilesRequest {
                            repository: repo.name.clone(),
                            changes: vec![pb::FileChange {
                                path: path.clone(),
                                contents: Some(buf),
                                deleted: false,
                            }],
                            unsaved,
                        })
                        .await?
                        .into_inner();
                    server_side.push(up.seconds * 1000.0);
                    let s0 = Instant::now();
                    let r = c
                        .search(pb::SearchRequest {
                            query: name.clone(),
                            top_k: 1,
                            mode: pb::Mode::Lexical as i32,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    if r.hits.first().is_none_or(|h| h.symbol != name) {
                        return Err(format!("edit {i} not visible").into());
                    }
                    search_ms.push(s0.elapsed().as_secs_f64() * 1000.0);
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let slowest = times
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                server_side.sort_by(|a, b| a.total_cmp(b));
                search_ms.sort_by(|a, b| a.total_cmp(b));
                // Put the file back as it is on disk.
                c.update_files(pb::UpdateFilesRequest {
                    repository: repo.name.clone(),
                    changes: vec![pb::FileChange {
                        path: path.clone(),
                        contents: Some(original.clone()),
                        deleted: false,
                    }],
                    unsaved,
                })
                .await?;
                times.sort_by(|a, b| a.total_cmp(b));
                println!(
                    "edit visible, {} (UpdateFiles of {path} with one new function, then a search finds it): p50 {:.0} ms, p99 {:.0} ms over {edits}, the slowest edit {} (of which the update on the server p50 {:.0} / p99 {:.0} ms, the search p50 {:.0} / p99 {:.0} ms)",
                    if unsaved { "as an unsaved buffer" } else { "committed" },
                    pct(&times, 0.5),
                    pct(&times, 0.99),
                    slowest + 1,
                    pct(&server_side, 0.5),
                    pct(&server_side, 0.99),
                    pct(&search_ms, 0.5),
                    pct(&search_ms, 0.99)
                );
            }
        }
        Ok::<(), BoxError>(())
    })?;
    for (stop_tx, server) in stops {
        let _ = stop_tx.send(());
        server.join().map_err(|_| "the server thread panicked")??;
    }
    Ok(())
}
