//! `gnn-coder search`: one question from the command line, or a batch from a JSONL file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use gnn_coder_engine::{
    Engine, EngineOptions, FieldBoosts, KindFilter, SearchHit, SearchRequest, SimilarRequest,
    SimilarTarget, UnitRecord,
};
use gnn_coder_syntax::{Language, UnitKind};
use serde::Serialize;

use crate::index_cmd::ModelFlags;
use crate::remote::{ServerFlags, advise_status};
use crate::{advise, resolve_index_dir};
use gnn_coder_service::proto as pb;

#[derive(Args)]
pub struct SearchArgs {
    /// The question or identifier to look for (omit with --queries).
    query: Option<String>,
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    /// Number of results.
    #[arg(short = 'k', long = "top-k", default_value_t = 10)]
    top_k: usize,
    /// Only these languages (repeatable).
    #[arg(long = "lang")]
    languages: Vec<String>,
    /// Only paths matching this glob, relative to the repository root (e.g. 'src/**/*.rs';
    /// repeatable: any may match).
    #[arg(long)]
    path: Vec<String>,
    /// Only these repositories (repeatable; `gnn-coder repos` lists them).
    #[arg(long = "repo")]
    repositories: Vec<String>,
    /// Which units to return: callable (functions and methods), all, or one kind
    /// (function, method, class, struct, enum, trait, interface, impl, module).
    #[arg(long, default_value = "callable")]
    kind: String,
    /// Ranking: lexical (BM25 over a code-aware tokenization), semantic (model vectors), or
    /// hybrid (both, fused). Default: hybrid when the index holds vectors, else lexical.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Weight of the semantic score in hybrid mode (0..1; the lexical score gets the rest).
    #[arg(long, default_value_t = gnn_coder_engine::DEFAULT_DENSE_WEIGHT)]
    dense_weight: f32,
    /// Rank tests like any other code (by default they rank below the code they test unless
    /// the query asks for tests).
    #[arg(long)]
    keep_tests: bool,
    /// Exact vector search even where the approximate index would be used (slower).
    #[arg(long, hide = true)]
    exact: bool,
    #[command(flatten)]
    model: ModelFlags,
    /// Machine-readable output: one JSON object per query.
    #[arg(long)]
    json: bool,
    /// Per-field BM25 weights, e.g. `name=2,symbol=1,doc=1.5,code=1,path=0.3` (for tuning).
    #[arg(long, hide = true, value_parser = parse_boosts)]
    boosts: Option<FieldBoosts>,
    /// Answer every query of a JSONL file (`{"id": ..., "query": "..."}` per line); writes one
    /// JSON line per query to stdout, in input order.
    #[arg(long, value_name = "FILE")]
    queries: Option<PathBuf>,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Lexical,
    Semantic,
    Hybrid,
}

impl Mode {
    fn engine(self) -> gnn_coder_engine::Mode {
        match self {
            Mode::Lexical => gnn_coder_engine::Mode::Lexical,
            Mode::Semantic => gnn_coder_engine::Mode::Semantic,
            Mode::Hybrid => gnn_coder_engine::Mode::Hybrid,
        }
    }
}

fn open_engine(index: Option<PathBuf>, model: &ModelFlags) -> Result<Engine> {
    let dir = resolve_index_dir(index)?;
    Engine::open(
        &dir,
        EngineOptions {
            model: model.choice(),
            ..EngineOptions::default()
        },
    )
    .map_err(advise)
    .with_context(|| format!("cannot open the index at {}", dir.display()))
}

fn warn_if_untrained(engine: &Engine, mode: gnn_coder_engine::Mode) {
    if mode != gnn_coder_engine::Mode::Lexical && engine.embedding().is_some_and(|e| !e.trained) {
        eprintln!(
            "note: the GNN-Coder head is untrained; semantic scores come from the pretrained \
             MiniLM vectors alone (zero-shot)"
        );
    }
}

/// One result as shown, from a local search or a server's answer. The JSON field names are a
/// stable contract used by the benchmarks (the snippet is for people only).
#[derive(Serialize)]
pub struct Shown {
    repository: String,
    path: String,
    start_line: u64,
    end_line: u64,
    symbol: String,
    language: String,
    kind: String,
    score: f32,
    /// Where the query's words occur (file lines and byte ranges), for highlighting.
    matches: Vec<gnn_coder_engine::MatchRange>,
    #[serde(skip)]
    snippet: Vec<String>,
}

impl From<&SearchHit> for Shown {
    fn from(h: &SearchHit) -> Self {
        let u: &UnitRecord = &h.unit;
        Shown {
            repository: h.repository.clone(),
            path: u.path.clone(),
            start_line: u.start_line,
            end_line: u.end_line,
            symbol: u.symbol.clone(),
            language: u.language.clone(),
            kind: u.kind.clone(),
            score: h.score,
            matches: h.matches.clone(),
            snippet: gnn_coder_engine::snippet(u, 3),
        }
    }
}

impl From<&pb::Hit> for Shown {
    fn from(h: &pb::Hit) -> Self {
        Shown {
            repository: h.repository.clone(),
            path: h.path.clone(),
            start_line: h.start_line,
            end_line: h.end_line,
            symbol: h.symbol.clone(),
            language: h.language.clone(),
            kind: h.kind.clone(),
            score: h.score,
            matches: h
                .matches
                .iter()
                .map(|m| gnn_coder_engine::MatchRange {
                    line: m.line,
                    start_byte: m.start_byte,
                    end_byte: m.end_byte,
                })
                .collect(),
            snippet: h.snippet.clone(),
        }
    }
}

fn shown<'a, T: 'a>(hits: impl IntoIterator<Item = &'a T>) -> Vec<Shown>
where
    Shown: From<&'a T>,
{
    hits.into_iter().map(Shown::from).collect()
}

impl SearchArgs {
    fn template(&self) -> Result<SearchRequest> {
        let kinds = parse_kind(&self.kind)?;
        for lang in &self.languages {
            Language::by_name(lang).with_context(|| {
                format!("unknown language {lang:?} (`gnn-coder languages` lists them)")
            })?;
        }
        for glob in &self.path {
            globset::Glob::new(glob)
                .map_err(|e| anyhow::anyhow!("invalid path glob {glob:?}: {}", e.kind()))?;
        }
        if !(0.0..=1.0).contains(&self.dense_weight) {
            bail!("--dense-weight must be between 0 and 1");
        }
        let mut req = SearchRequest::new(String::new(), self.top_k);
        req.mode = self.mode.map(Mode::engine);
        req.languages = self.languages.clone();
        req.kinds = kinds;
        req.repositories = self.repositories.clone();
        req.path_globs = self.path.clone();
        req.dense_weight = Some(self.dense_weight);
        req.boosts = self.boosts.unwrap_or_default();
        req.demote_tests = !self.keep_tests;
        req.exact = self.exact;
        Ok(req)
    }
}

pub fn run(args: SearchArgs) -> Result<()> {
    let template = args.template()?;
    match (&args.query, &args.queries) {
        (Some(_), Some(_)) => bail!("give either a QUERY or --queries FILE, not both"),
        (None, None) => bail!("nothing to search for: give a QUERY or --queries FILE"),
        _ if args.server.server.is_some() => remote(&args, &template),
        (None, Some(file)) => {
            if !args.json {
                bail!("--queries writes JSON lines; add --json");
            }
            let engine = open_engine(args.index.clone(), &args.model)?;
            batch(&engine, &template, file)
        }
        (Some(query), None) => {
            let engine = open_engine(args.index.clone(), &args.model)?;
            let request = SearchRequest {
                query: query.clone(),
                ..template
            };
            let mode = engine.check_request(&request).map_err(advise)?;
            warn_if_untrained(&engine, mode);
            let hits = engine.search(&request).map_err(advise)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            let many = engine.repositories().map(|r| r.len()).unwrap_or(1) > 1;
            print_answer(&mut out, args.json, query, &shown(&hits), many)?;
            out.flush()?;
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct SimilarArgs {
    /// PATH:LINE of a unit in the index (root-relative path), or `-` for a snippet on stdin.
    target: String,
    /// Language of the snippet on stdin.
    #[arg(long = "lang")]
    language: Option<String>,
    /// The repository of PATH (default: any).
    #[arg(long = "repo")]
    repository: Option<String>,
    /// Only results from these repositories (repeatable).
    #[arg(long = "in-repo")]
    repositories: Vec<String>,
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    #[arg(short = 'k', long = "top-k", default_value_t = 10)]
    top_k: usize,
    /// Which units to return (as `search --kind`; default: all).
    #[arg(long, default_value = "all")]
    kind: String,
    /// Only paths matching this glob (repeatable).
    #[arg(long)]
    path: Vec<String>,
    #[command(flatten)]
    model: ModelFlags,
    #[arg(long)]
    json: bool,
}

pub fn similar(args: SimilarArgs) -> Result<()> {
    let kinds = parse_kind(&args.kind)?;
    let target = if args.target == "-" {
        let Some(language) = args.language.clone() else {
            bail!("a snippet on stdin needs --lang LANGUAGE");
        };
        Language::by_name(&language).with_context(|| {
            format!("unknown language {language:?} (`gnn-coder languages` lists them)")
        })?;
        let mut code = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut code)
            .context("cannot read the snippet from stdin")?;
        SimilarTarget::Snippet { code, language }
    } else {
        let Some((path, line)) = args.target.rsplit_once(':') else {
            bail!("give the unit as PATH:LINE (e.g. src/lib.rs:42), or - for a snippet on stdin");
        };
        let line: u64 = line
            .parse()
            .ok()
            .filter(|&l| l > 0)
            .with_context(|| format!("{line:?} is not a line number"))?;
        SimilarTarget::Unit {
            repository: args.repository.clone(),
            path: path.trim_start_matches("./").to_string(),
            line,
        }
    };
    let engine = open_engine(args.index.clone(), &args.model)?;
    let mut req = SimilarRequest::new(target, args.top_k);
    req.kinds = kinds;
    req.repositories = args.repositories.clone();
    req.path_globs = args.path.clone();
    let (origin, hits) = engine.similar(&req).map_err(advise)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    if args.json {
        let hits = shown(&hits);
        let origin = origin.as_ref().map(Shown::from);
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "origin": origin, "results": hits }),
        )?;
        writeln!(out)?;
    } else {
        if let Some(o) = &origin {
            writeln!(
                out,
                "similar to {}:{}-{}  {}",
                o.unit.path, o.unit.start_line, o.unit.end_line, o.unit.symbol
            )?;
        }
        print_human(&mut out, &shown(&hits), true)?;
    }
    out.flush()?;
    Ok(())
}

/// The wire request of a search.
fn wire_request(args: &SearchArgs, query: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        query: query.to_string(),
        top_k: u32::try_from(args.top_k).unwrap_or(u32::MAX),
        mode: match args.mode {
            None => pb::Mode::Unspecified,
            Some(Mode::Lexical) => pb::Mode::Lexical,
            Some(Mode::Semantic) => pb::Mode::Semantic,
            Some(Mode::Hybrid) => pb::Mode::Hybrid,
        } as i32,
        filters: Some(pb::Filters {
            languages: args.languages.clone(),
            path_globs: args.path.clone(),
            repositories: args.repositories.clone(),
            kinds: vec![args.kind.clone()],
        }),
        dense_weight: Some(args.dense_weight),
        keep_tests: args.keep_tests,
        snippet_lines: 3,
    }
}

/// `search --server`: the same output, answered by a server.
fn remote(args: &SearchArgs, _template: &SearchRequest) -> Result<()> {
    if args.boosts.is_some() || args.exact {
        bail!("--boosts and --exact apply to a local index only");
    }
    if args.model.model_dir.is_some() || args.model.weights.is_some() {
        bail!("--model-dir and --weights apply to a local index; the server has its own model");
    }
    if args.index.is_some() {
        bail!("give either --index DIR or --server URL, not both");
    }
    let rt = crate::remote::runtime()?;
    rt.block_on(async {
        let client = args.server.connect().await?;
        let stdout = std::io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        match (&args.query, &args.queries) {
            (Some(query), _) => {
                let resp = client
                    .clone()
                    .search(wire_request(args, query))
                    .await
                    .map_err(advise_status)?
                    .into_inner();
                let hits = shown(&resp.hits);
                let repos: std::collections::BTreeSet<&str> =
                    hits.iter().map(|h| h.repository.as_str()).collect();
                print_answer(&mut out, args.json, query, &hits, repos.len() > 1)?;
            }
            (None, Some(file)) => {
                if !args.json {
                    bail!("--queries writes JSON lines; add --json");
                }
                let queries = read_queries(file)?;
                // A few requests in flight; answers are written in input order.
                let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
                let mut tasks = Vec::with_capacity(queries.len());
                for (id, query) in queries {
                    let mut client = client.clone();
                    let req = wire_request(args, &query);
                    let limit = limit.clone();
                    tasks.push((
                        id,
                        tokio::spawn(async move {
                            let _permit = limit.acquire_owned().await;
                            client.search(req).await
                        }),
                    ));
                }
                for (id, task) in tasks {
                    let resp = task
                        .await
                        .context("a search task failed")?
                        .map_err(advise_status)
                        .with_context(|| format!("query {id}: search failed"))?
                        .into_inner();
                    let hits = shown(&resp.hits);
                    serde_json::to_writer(
                        &mut out,
                        &serde_json::json!({ "id": id, "results": hits }),
                    )?;
                    writeln!(out)?;
                }
            }
            (None, None) => bail!("nothing to search for"),
        }
        out.flush()?;
        Ok(())
    })
}

/// The `(id, query)` lines of a JSONL query file; a malformed line fails before any search.
fn read_queries(file: &PathBuf) -> Result<Vec<(serde_json::Value, String)>> {
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut out = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let where_ = || format!("{}:{}", file.display(), n + 1);
        let line = line.with_context(where_)?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("{}: not valid JSON", where_()))?;
        let id = value
            .get("id")
            .cloned()
            .with_context(|| format!("{}: no \"id\"", where_()))?;
        let query = value
            .get("query")
            .and_then(|q| q.as_str())
            .with_context(|| format!("{}: no string \"query\"", where_()))?;
        out.push((id, query.to_string()));
    }
    Ok(out)
}

fn parse_kind(s: &str) -> Result<KindFilter> {
    match s {
        "callable" | "callables" => Ok(KindFilter::Callables),
        "all" | "any" => Ok(KindFilter::All),
        other => UnitKind::parse(other)
            .map(|k| KindFilter::Only(vec![k]))
            .with_context(|| {
                format!(
                    "unknown kind {other:?}; use callable, all, or one of: {}",
                    UnitKind::ALL.map(|k| k.as_str()).join(", ")
                )
            }),
    }
}

/// Answers a JSONL file of queries: one output line per input line (blank lines skipped).
/// The whole file is read and checked first, so a malformed line fails before any output.
fn batch(engine: &Engine, template: &SearchRequest, file: &PathBuf) -> Result<()> {
    let mut queries: Vec<(serde_json::Value, SearchRequest)> = Vec::new();
    for (id, query) in read_queries(file)? {
        let req = SearchRequest {
            query,
            ..template.clone()
        };
        engine
            .check_request(&req)
            .map_err(advise)
            .with_context(|| format!("query {id}: bad query"))?;
        queries.push((id, req));
    }
    let mode = engine
        .check_request(&SearchRequest {
            query: "x".into(),
            ..template.clone()
        })
        .map_err(advise)?;
    warn_if_untrained(engine, mode);
    let vectors: Vec<Option<Vec<f32>>> = if mode == gnn_coder_engine::Mode::Lexical {
        vec![None; queries.len()]
    } else {
        let texts: Vec<&str> = queries.iter().map(|(_, q)| q.query.as_str()).collect();
        engine
            .embed_queries(&texts)
            .map_err(advise)?
            .into_iter()
            .map(Some)
            .collect()
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for ((id, req), vector) in queries.iter().zip(&vectors) {
        let hits = engine
            .search_with_vector(req, vector.as_deref())
            .map_err(advise)
            .with_context(|| format!("query {id}: search failed"))?;
        let hits = shown(&hits);
        serde_json::to_writer(&mut out, &serde_json::json!({ "id": id, "results": hits }))?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// One query's answer: a JSON line, or the human listing.
fn print_answer(
    out: &mut impl Write,
    json: bool,
    query: &str,
    hits: &[Shown],
    show_repo: bool,
) -> Result<()> {
    if json {
        serde_json::to_writer(
            &mut *out,
            &serde_json::json!({ "query": query, "results": hits }),
        )?;
        writeln!(out)?;
        Ok(())
    } else {
        print_human(out, hits, show_repo)
    }
}

fn print_human(out: &mut impl Write, hits: &[Shown], show_repo: bool) -> Result<()> {
    if hits.is_empty() {
        writeln!(out, "no results")?;
        return Ok(());
    }
    for (rank, h) in hits.iter().enumerate() {
        let repo = if show_repo {
            format!("{}: ", h.repository)
        } else {
            String::new()
        };
        writeln!(
            out,
            "{:>2}. {:>7.3}  {repo}{}:{}-{}  {}  ({} {})",
            rank + 1,
            h.score,
            h.path,
            h.start_line,
            h.end_line,
            h.symbol,
            h.language,
            h.kind
        )?;
        for line in &h.snippet {
            writeln!(out, "        {line}")?;
        }
    }
    Ok(())
}

fn parse_boosts(s: &str) -> Result<FieldBoosts, String> {
    let mut b = FieldBoosts::default();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not FIELD=WEIGHT"))?;
        let value: f32 = value
            .trim()
            .parse()
            .map_err(|_| format!("{value:?} is not a number"))?;
        let slot = match name.trim() {
            "name" => &mut b.name,
            "symbol" => &mut b.symbol,
            "doc" => &mut b.doc,
            "code" => &mut b.code,
            "path" => &mut b.path,
            other => return Err(format!("unknown field {other:?}")),
        };
        *slot = value;
    }
    Ok(b)
}
