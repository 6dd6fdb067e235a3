//! `gnn-coder search`: one question from the command line, or a batch from a JSONL file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{
    FieldBoosts, Fusion, KindFilter, Mode, RepoInfo, SearchRequest, SimilarRequest, SimilarTarget,
    UnitRecord,
};
use serde::Serialize;

use crate::advice::advise;
use crate::backend::{Backend, Found, refuse_with_server};
use crate::flags::ModelFlags;

/// `--rerank` without a value ([`gnn_coder_engine::DEFAULT_RERANK_DEPTH`]; a test checks they
/// agree).
const DEFAULT_RERANK_DEPTH_STR: &str = "20";
use crate::remote::ServerFlags;

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
    #[arg(long, value_parser = mode_parser())]
    mode: Option<Mode>,
    /// Weight of the semantic score in hybrid mode (0..1; the lexical score gets the rest).
    #[arg(long, default_value_t = gnn_coder_engine::DEFAULT_DENSE_WEIGHT)]
    dense_weight: f32,
    /// How hybrid search orders its fused candidates: weighted (the fixed-weight sum of the
    /// two scores) or learned (the weighted fusion's top 40 reordered by the learned second
    /// stage). Default: the engine's.
    #[arg(long, value_parser = ["weighted", "learned"])]
    fusion: Option<String>,
    /// Correct the order of a hybrid search's top N hits (default 20, at most 100) with the
    /// cross-encoder reranker, which reads the question and each hit's code together: a better
    /// order (dev MRR@10 .584 -> .596) at a transformer pass per hit (about 130 ms for 20 on 2
    /// cores). Their scores become hybrid score + the reranker's logit / 32.
    #[arg(long, value_name = "N", num_args = 0..=1,
          default_missing_value = DEFAULT_RERANK_DEPTH_STR)]
    rerank: Option<usize>,
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

/// `--mode`: the engine's mode names (clap lists them in the help).
fn mode_parser() -> impl clap::builder::TypedValueParser<Value = Mode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Mode::ALL.map(Mode::as_str))
        .try_map(|s| s.parse::<Mode>())
}

fn warn_if_untrained(backend: &Backend, mode: Option<Mode>) {
    if mode != Some(Mode::Lexical) && backend.local_embedding().is_some_and(|e| !e.trained) {
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

impl From<&Found> for Shown {
    fn from(f: &Found) -> Self {
        let h = &f.hit;
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
            snippet: f.snippet.clone(),
        }
    }
}

fn shown(found: &[Found]) -> Vec<Shown> {
    found.iter().map(Shown::from).collect()
}

impl SearchArgs {
    /// The request every query of this command shares; the engine checks it.
    fn template(&self) -> Result<SearchRequest> {
        let mut req = SearchRequest::new(String::new(), self.top_k);
        req.mode = self.mode;
        req.languages = self.languages.clone();
        req.kinds =
            KindFilter::parse(&[self.kind.as_str()], KindFilter::Callables).map_err(advise)?;
        req.repositories = self.repositories.clone();
        req.path_globs = self.path.clone();
        req.dense_weight = Some(self.dense_weight);
        req.fusion = self.fusion.as_deref().and_then(Fusion::parse);
        req.boosts = self.boosts.unwrap_or_default();
        req.demote_tests = !self.keep_tests;
        req.exact = self.exact;
        req.rerank = self.rerank;
        Ok(req)
    }
}

pub fn run(args: SearchArgs) -> Result<()> {
    refuse_with_server(
        &args.server,
        args.boosts.is_some() || args.exact,
        "--boosts and --exact",
    )?;
    let template = args.template()?;
    let backend = match (&args.query, &args.queries) {
        (Some(_), Some(_)) => bail!("give either a QUERY or --queries FILE, not both"),
        (None, None) => bail!("nothing to search for: give a QUERY or --queries FILE"),
        (None, Some(_)) if !args.json => bail!("--queries writes JSON lines; add --json"),
        _ => Backend::open(args.index.clone(), &args.server, &args.model)?,
    };
    warn_if_untrained(&backend, args.mode);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match (&args.query, &args.queries) {
        (Some(query), _) => {
            let request = SearchRequest {
                query: query.clone(),
                ..template
            };
            let hits = shown(&backend.search(request)?);
            let repos: std::collections::BTreeSet<&str> =
                hits.iter().map(|h| h.repository.as_str()).collect();
            let many = match &backend {
                Backend::Local(_) => backend.repositories().map(|r| r.len()).unwrap_or(1) > 1,
                Backend::Remote(_) => repos.len() > 1,
            };
            print_answer(&mut out, args.json, query, &hits, many)?;
        }
        (None, Some(file)) => {
            let requests: Vec<(Id, SearchRequest)> = read_queries(file)?
                .into_iter()
                .map(|(id, query)| {
                    (
                        Id(id),
                        SearchRequest {
                            query,
                            ..template.clone()
                        },
                    )
                })
                .collect();
            backend.search_all(requests, |id, found| {
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "id": id.0, "results": shown(&found) }),
                )?;
                writeln!(out)?;
                Ok(())
            })?;
        }
        (None, None) => bail!("nothing to search for"),
    }
    out.flush()?;
    Ok(())
}

/// A query's id from the batch file, shown in messages as JSON.
struct Id(serde_json::Value);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Args)]
pub struct SimilarArgs {
    /// PATH:LINE of a unit in the index, or `-` for a snippet on stdin. PATH is relative to
    /// the repository's root, or a file on disk (absolute, or relative to the current
    /// directory) inside an indexed repository.
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
    /// How many similar units to show.
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
    /// One JSON object on stdout: the unit itself (`origin`) and the `results`.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerFlags,
}

/// A PATH a person typed that names a file on disk (absolute, or relative to the current
/// directory) inside an indexed repository: that repository and the root-relative path. `None`
/// when it names no such file; the path is then taken as root-relative, as given.
fn on_disk(path: &str, repositories: &[RepoInfo]) -> Option<(String, String)> {
    let file = std::env::current_dir()
        .ok()?
        .join(path)
        .canonicalize()
        .ok()?;
    repositories.iter().find_map(|r| {
        let root = gnn_coder_syntax::decode_path(&r.root)?;
        let rel = file.strip_prefix(&root).ok()?;
        Some((r.name.clone(), gnn_coder_syntax::encode_rel_path(rel)))
    })
}

/// The unit at PATH:LINE as a person or an agent names it: PATH relative to the repository's
/// root, or a file on disk (absolute, or relative to the current directory) inside an indexed
/// repository, which then names the repository too.
pub(crate) fn unit_target(
    repository: Option<String>,
    path: String,
    line: u64,
    repositories: &[RepoInfo],
) -> SimilarTarget {
    let path = path.trim_start_matches("./").to_string();
    if (repository.is_none() || Path::new(&path).is_absolute())
        && let Some((repo, rel)) = on_disk(&path, repositories)
        && repository.as_ref().is_none_or(|r| *r == repo)
    {
        return SimilarTarget::Unit {
            repository: Some(repo),
            path: rel,
            line,
        };
    }
    SimilarTarget::Unit {
        repository,
        path,
        line,
    }
}

pub fn similar(args: SimilarArgs) -> Result<()> {
    let kinds = KindFilter::parse(&[args.kind.as_str()], KindFilter::All).map_err(advise)?;
    let target = if args.target == "-" {
        let Some(language) = args.language.clone() else {
            bail!("a snippet on stdin needs --lang LANGUAGE");
        };
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
            path: path.to_string(),
            line,
        }
    };
    let backend = Backend::open(args.index.clone(), &args.server, &args.model)?;
    let repositories = backend.repositories()?;
    let target = match target {
        SimilarTarget::Unit {
            repository,
            path,
            line,
        } => unit_target(repository, path, line, &repositories),
        other => other,
    };
    let mut req = SimilarRequest::new(target, args.top_k);
    req.kinds = kinds;
    req.repositories = args.repositories.clone();
    req.path_globs = args.path.clone();
    let (origin, hits) = backend.similar(&req)?;
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
            let u = &o.hit.unit;
            writeln!(
                out,
                "similar to {}:{}-{}  {}",
                u.path, u.start_line, u.end_line, u.symbol
            )?;
        }
        // As `search` does: the repository in front of a hit only when there are several.
        print_human(&mut out, &shown(&hits), repositories.len() > 1)?;
    }
    out.flush()?;
    Ok(())
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_rerank_depth_is_the_engines() {
        assert_eq!(
            super::DEFAULT_RERANK_DEPTH_STR.parse::<usize>().ok(),
            Some(gnn_coder_engine::DEFAULT_RERANK_DEPTH)
        );
    }
}
