//! Prometheus metrics, in the text exposition format, on an optional plain-HTTP port
//! (`--metrics-listen`; `GET /metrics`). Request counts and latency histograms per method and
//! status code; index sizes read from the last commit at scrape time; embedding throughput as
//! two counters (embeddings computed, seconds spent), whose rates divide to units per second.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, &'static str), Histogram>,
    auth_failures: u64,
    rejected: BTreeMap<&'static str, u64>,
    embeddings: u64,
    embed_seconds: f64,
    units_indexed: u64,
    in_flight: i64,
    index_jobs: i64,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Sizes read at scrape time.
#[derive(Default)]
pub struct Sizes {
    pub repositories: u64,
    pub files: u64,
    pub units: u64,
    pub vectors: u64,
    pub bytes_on_disk: u64,
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Metrics are never worth a panic: a poisoned lock still holds usable counts.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One finished request.
    pub fn request(&self, method: &'static str, code: tonic::Code, took: Duration) {
        let secs = took.as_secs_f64();
        let mut g = self.lock();
        let h = g.requests.entry((method, code_name(code))).or_default();
        h.count += 1;
        h.sum += secs;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
    }

    pub fn auth_failure(&self) {
        self.lock().auth_failures += 1;
    }

    /// A request refused for want of a permit.
    pub fn rejected(&self, what: &'static str) {
        *self.lock().rejected.entry(what).or_default() += 1;
    }

    pub fn embedded(&self, n: u64, seconds: f64) {
        let mut g = self.lock();
        g.embeddings += n;
        g.embed_seconds += seconds;
    }

    pub fn indexed(&self, units: u64) {
        self.lock().units_indexed += units;
    }

    pub fn in_flight(&self, delta: i64) {
        self.lock().in_flight += delta;
    }

    pub fn index_jobs(&self, delta: i64) {
        self.lock().index_jobs += delta;
    }

    /// The exposition text.
    pub fn render(&self, sizes: &Sizes) -> String {
        let g = self.lock();
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# HELP gnn_coder_requests_total Requests finished, by method and status code."
        );
        let _ = writeln!(o, "# TYPE gnn_coder_requests_total counter");
        for ((m, c), h) in &g.requests {
            let _ = writeln!(
                o,
                "gnn_coder_requests_total{{method=\"{m}\",code=\"{c}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            o,
            "# HELP gnn_coder_request_duration_seconds Request latency, by method and status code."
        );
        let _ = writeln!(o, "# TYPE gnn_coder_request_duration_seconds histogram");
        for ((m, c), h) in &g.requests {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "gnn_coder_request_duration_seconds_bucket{{method=\"{m}\",code=\"{c}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "gnn_coder_request_duration_seconds_bucket{{method=\"{m}\",code=\"{c}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                o,
                "gnn_coder_request_duration_seconds_sum{{method=\"{m}\",code=\"{c}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                o,
                "gnn_coder_request_duration_seconds_count{{method=\"{m}\",code=\"{c}\"}} {}",
                h.count
            );
        }
        // One metric without labels: (type, name, help, value).
        let metrics: [(&str, &str, &str, String); 11] = [
            (
                "counter",
                "gnn_coder_auth_failures_total",
                "Calls refused for a missing or wrong token.",
                g.auth_failures.to_string(),
            ),
            (
                "counter",
                "gnn_coder_embeddings_total",
                "Unit embeddings computed by index jobs and file updates.",
                g.embeddings.to_string(),
            ),
            (
                "counter",
                "gnn_coder_embed_seconds_total",
                "Seconds spent computing those embeddings (rate(embeddings)/rate(seconds) = units/s).",
                g.embed_seconds.to_string(),
            ),
            (
                "counter",
                "gnn_coder_units_indexed_total",
                "Units written by index jobs and file updates.",
                g.units_indexed.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_requests_in_flight",
                "Requests being served.",
                g.in_flight.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_jobs_running",
                "Index jobs running.",
                g.index_jobs.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_repositories",
                "Repositories in the index.",
                sizes.repositories.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_files",
                "Files in the index.",
                sizes.files.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_units",
                "Units in the index.",
                sizes.units.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_vectors",
                "Vectors in the index.",
                sizes.vectors.to_string(),
            ),
            (
                "gauge",
                "gnn_coder_index_bytes_on_disk",
                "Size of the index directory.",
                sizes.bytes_on_disk.to_string(),
            ),
        ];
        let (counters, gauges) = metrics.split_at(4);
        let plain = |o: &mut String, list: &[(&str, &str, &str, String)]| {
            for (kind, name, help, v) in list {
                let _ = writeln!(o, "# HELP {name} {help}");
                let _ = writeln!(o, "# TYPE {name} {kind}");
                let _ = writeln!(o, "{name} {v}");
            }
        };
        plain(&mut o, counters);
        let _ = writeln!(
            o,
            "# HELP gnn_coder_rejected_total Requests refused with RESOURCE_EXHAUSTED, by limit."
        );
        let _ = writeln!(o, "# TYPE gnn_coder_rejected_total counter");
        for (what, n) in &g.rejected {
            let _ = writeln!(o, "gnn_coder_rejected_total{{limit=\"{what}\"}} {n}");
        }
        plain(&mut o, gauges);
        o
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves. Anything else gets 404; a
/// request head over 8 KiB or slower than 5 s is dropped.
pub async fn serve_http<F, S>(listener: TcpListener, render: F, shutdown: S)
where
    F: Fn() -> tokio::task::JoinHandle<String> + Send + Sync + 'static,
    S: std::future::Future<Output = ()>,
{
    let render = std::sync::Arc::new(render);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((mut sock, _)) = accepted else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    let n = sock.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                Some(())
            })
            .await;
            if !matches!(head, Ok(Some(()))) {
                return;
            }
            let line = String::from_utf8_lossy(&buf);
            let first = line.lines().next().unwrap_or("");
            let response = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
                let body = render().await.unwrap_or_default();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            };
            let _ = sock.write_all(response.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_histograms_and_counters() {
        let m = Metrics::default();
        m.request("Search", tonic::Code::Ok, Duration::from_millis(3));
        m.request("Search", tonic::Code::Ok, Duration::from_millis(30));
        m.request(
            "Search",
            tonic::Code::InvalidArgument,
            Duration::from_micros(50),
        );
        m.embedded(100, 2.0);
        let text = m.render(&Sizes {
            units: 7,
            ..Sizes::default()
        });
        assert!(text.contains("gnn_coder_requests_total{method=\"Search\",code=\"OK\"} 2"));
        assert!(text.contains(
            "gnn_coder_request_duration_seconds_bucket{method=\"Search\",code=\"OK\",le=\"0.005\"} 1"
        ));
        assert!(text.contains(
            "gnn_coder_request_duration_seconds_bucket{method=\"Search\",code=\"OK\",le=\"0.05\"} 2"
        ));
        assert!(text.contains("gnn_coder_embeddings_total 100"));
        assert!(text.contains("gnn_coder_index_units 7"));
    }
}
