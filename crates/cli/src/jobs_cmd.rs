//! `gnn-coder jobs FILE`: index a list of repositories, locally or through a server.
//!
//! The file holds one JSON object per line: `{"name": "api", "root": "/src/api"}` (optional
//! `languages` and `exclude` lists). Every line is checked before any work starts. Jobs run
//! `--parallel` at a time (they share the index's one writer; each job's embedding uses every
//! core). A failed job is reported and the rest go on. Reruns are cheap where nothing changed:
//! a refresh hashes files but parses and embeds only changed ones, and a job whose HEAD commit
//! and files are the same as at its last run is reported `unchanged`. A run that is killed
//! keeps every commit made so far; running the same file again picks up where it stopped.
//! The report (JSON) goes to stdout or `--report FILE`; the exit status is 1 when a job failed.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{CancellationToken, EngineOptions, IndexOptions, IndexSummary, RepoInfo};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, refuse_with_server};
use crate::flags::{CodesFlags, ModelFlags};
use crate::remote::ServerFlags;

#[derive(Args)]
pub struct JobsArgs {
    /// JSON lines: {"name": ..., "root": ...} per repository.
    file: PathBuf,
    /// The index (local mode; created when missing).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Jobs at once (default 2; a server may allow fewer and is then asked again).
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Write the JSON report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Build a new index lexical-only (local mode).
    #[arg(long)]
    lexical_only: bool,
    #[command(flatten)]
    codes: CodesFlags,
    /// Commit after this many changed files.
    #[arg(long, default_value_t = 1000)]
    commit_every: usize,
    /// No progress lines on stderr.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    name: Option<String>,
    root: PathBuf,
    #[serde(default)]
    languages: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

impl Job {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into())
        })
    }
}

#[derive(Debug, Clone, Serialize, Default)]
struct JobReport {
    name: String,
    root: String,
    /// `indexed`, `unchanged` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    head: Option<String>,
    files: u64,
    units: u64,
    files_added: u64,
    files_changed: u64,
    files_removed: u64,
    embeddings_computed: u64,
    embeddings_reused: u64,
    seconds: f64,
}

#[derive(Serialize)]
struct Report {
    jobs: Vec<JobReport>,
    indexed: usize,
    unchanged: usize,
    failed: usize,
    seconds: f64,
}

fn read_jobs(file: &PathBuf) -> Result<Vec<Job>> {
    let reader = BufReader::new(
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut jobs = Vec::new();
    let mut names = HashSet::new();
    for (n, line) in reader.lines().enumerate() {
        let at = format!("{}:{}", file.display(), n + 1);
        let line = line.with_context(|| at.clone())?;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let job: Job = serde_json::from_str(&line).with_context(|| {
            format!("{at}: expected {{\"name\": \"...\", \"root\": \"/path\"}}")
        })?;
        if job.root.as_os_str().is_empty() {
            bail!("{at}: the root is empty");
        }
        if !names.insert(job.name()) {
            bail!("{at}: the name {:?} is used twice", job.name());
        }
        jobs.push(job);
    }
    if jobs.is_empty() {
        bail!("{} lists no repositories", file.display());
    }
    Ok(jobs)
}

fn report_of(job: &Job, before: Option<&RepoInfo>, r: Result<IndexSummary>) -> JobReport {
    let mut out = JobReport {
        name: job.name(),
        root: job.root.display().to_string(),
        ..JobReport::default()
    };
    match r {
        Ok(s) => {
            let same = s.files_added + s.files_changed + s.files_removed == 0
                && before.is_some_and(|b| b.head == s.head && b.indexed_unix > 0);
            out.status = if same { "unchanged" } else { "indexed" };
            out.root = s.root.clone();
            out.head = s.head.clone();
            out.files = s.files;
            out.units = s.units;
            out.files_added = s.files_added;
            out.files_changed = s.files_changed;
            out.files_removed = s.files_removed;
            out.embeddings_computed = s.embeddings_computed;
            out.embeddings_reused = s.embeddings_reused;
            out.seconds = s.seconds;
        }
        Err(e) => {
            out.status = "failed";
            out.error = Some(format!("{e:#}"));
        }
    }
    out
}

pub fn run(args: JobsArgs) -> Result<()> {
    let jobs = read_jobs(&args.file)?;
    if args.parallel == 0 {
        bail!("--parallel must be at least 1");
    }
    refuse_with_server(
        &args.server,
        args.index.is_some() || args.lexical_only || args.codes.vector_codes.is_some(),
        "--index, --lexical-only and --vector-codes",
    )?;
    let started = Instant::now();
    let options = EngineOptions {
        model: args.model.choice(),
        lexical_only: args.lexical_only,
        vector_codes: args.codes.vector_codes,
        ..EngineOptions::default()
    };
    let backend =
        Backend::open_for_writing(args.index.clone(), None, &args.server, options, false)?;
    let reports = run_jobs(&args, &backend, &jobs)?;
    let count = |s: &str| reports.iter().filter(|r| r.status == s).count();
    let report = Report {
        indexed: count("indexed"),
        unchanged: count("unchanged"),
        failed: count("failed"),
        seconds: started.elapsed().as_secs_f64(),
        jobs: reports,
    };
    let text = serde_json::to_string_pretty(&report)?;
    match &args.report {
        Some(p) => std::fs::write(p, format!("{text}\n"))
            .with_context(|| format!("cannot write {}", p.display()))?,
        None => println!("{text}"),
    }
    if !args.quiet {
        eprintln!(
            "jobs: {} indexed, {} unchanged, {} failed in {:.1}s",
            report.indexed, report.unchanged, report.failed, report.seconds
        );
    }
    if report.failed > 0 {
        bail!(
            "{} of {} jobs failed (see the report)",
            report.failed,
            report.jobs.len()
        );
    }
    Ok(())
}

/// Runs the jobs `--parallel` at a time, locally or through a server alike.
fn run_jobs(args: &JobsArgs, backend: &Backend, jobs: &[Job]) -> Result<Vec<JobReport>> {
    let before: BTreeMap<String, RepoInfo> = backend
        .repositories()?
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JobReport>>> = Mutex::new(vec![None; jobs.len()]);
    let cancel = CancellationToken::new();
    std::thread::scope(|scope| {
        for _ in 0..args.parallel.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    if !args.quiet {
                        eprintln!("job {}: indexing {}", job.name(), job.root.display());
                    }
                    let mut opts = IndexOptions::new(&job.root).named(job.name());
                    opts.languages = job.languages.clone();
                    opts.exclude = job.exclude.clone();
                    opts.commit_every = args.commit_every.max(1);
                    let r = backend.index(&opts, None, &|_| {}, &cancel);
                    let rep = report_of(job, before.get(&job.name()), r);
                    if !args.quiet {
                        eprintln!(
                            "job {}: {}",
                            rep.name,
                            rep.error.as_deref().unwrap_or(rep.status)
                        );
                    }
                    if let Ok(mut res) = results.lock() {
                        res[i] = Some(rep);
                    }
                }
            });
        }
    });
    Ok(results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect())
}
