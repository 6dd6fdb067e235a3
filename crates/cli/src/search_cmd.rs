//! `gnn-coder search`: one question from the command line, or a batch from a JSONL file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use gnn_coder_index::{FieldBoosts, Hit, KindFilter, SearchIndex, SearchRequest};
use gnn_coder_syntax::{Language, UnitKind};
use serde::Serialize;

use crate::resolve_index_dir;
use crate::semantic;

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
    /// Only paths matching this glob, relative to the indexed root (e.g. 'src/**/*.rs').
    #[arg(long)]
    path: Option<String>,
    /// Which units to return: callable (functions and methods), all, or one kind
    /// (function, method, class, struct, enum, trait, interface, impl, module).
    #[arg(long, default_value = "callable")]
    kind: String,
    /// Ranking: lexical (BM25 over a code-aware tokenization), semantic (model vectors), or
    /// hybrid (both, fused). Default: hybrid when the index holds vectors, else lexical.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Weight of the semantic score in hybrid mode (0..1; the lexical score gets the rest).
    #[arg(long, default_value_t = DEFAULT_DENSE_WEIGHT)]
    dense_weight: f32,
    /// Directory of the pretrained model (see `gnn-coder index --help`).
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Trained weights the index was built with (see `gnn-coder index --help`).
    #[arg(long, value_name = "DIR")]
    weights: Option<PathBuf>,
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
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Lexical,
    Semantic,
    Hybrid,
}

/// Hybrid weight of the semantic score (README, Quality): 0.5 is best on dev (.489 vs .478) but
/// costs CoSQA's web queries far more (.422 vs .483), so the default leans semantic.
const DEFAULT_DENSE_WEIGHT: f32 = 0.7;

/// An opened index with whatever its search mode needs.
struct Searcher {
    index: SearchIndex,
    mode: Mode,
    dense_weight: f32,
    embedder: Option<gnn_coder_model::Embedder>,
}

impl Searcher {
    fn open(args: &SearchArgs) -> Result<Searcher> {
        let index = open(args.index.clone())?;
        let mode = args.mode.unwrap_or(if index.embedding().is_some() {
            Mode::Hybrid
        } else {
            Mode::Lexical
        });
        if !(0.0..=1.0).contains(&args.dense_weight) {
            bail!("--dense-weight must be between 0 and 1");
        }
        let embedder = if mode == Mode::Lexical {
            None
        } else {
            let Some(info) = index.embedding() else {
                bail!(
                    "the index at {} holds no vectors (built without the model); rebuild it \
                     with `gnn-coder index` after scripts/fetch-model.sh, or use --mode lexical",
                    index.dir().display()
                );
            };
            let dir = semantic::find_model_dir(args.model_dir.as_deref())?;
            let weights = semantic::resolve_weights(args.weights.as_deref())?;
            let embedder = semantic::load_embedder(&dir, weights.as_deref())?;
            let current = semantic::embedding_info(&embedder, weights.as_deref());
            if current.model != info.model || current.dim != info.dim {
                bail!(
                    "the index was embedded with {} but the current model is {}; search with \
                     the --weights the index was built with, or rebuild it with `gnn-coder index`",
                    info.model,
                    current.model
                );
            }
            semantic::warn_if_untrained(info);
            Some(embedder)
        };
        Ok(Searcher {
            index,
            mode,
            dense_weight: args.dense_weight,
            embedder,
        })
    }

    /// Query vectors for `queries` (empty vectors in lexical mode).
    fn embed(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>> {
        match &self.embedder {
            Some(e) => Ok(e.embed_queries(queries)?),
            None => Ok(vec![Vec::new(); queries.len()]),
        }
    }

    fn search(&self, req: &SearchRequest, vector: &[f32]) -> Result<Vec<Hit>> {
        Ok(match self.mode {
            Mode::Lexical => self.index.search(req)?,
            Mode::Semantic => self.index.search_semantic(req, vector)?,
            Mode::Hybrid => self.index.search_hybrid(req, vector, self.dense_weight)?,
        })
    }
}

/// One result in JSON output. Field names are a stable contract used by the benchmarks.
#[derive(Serialize)]
struct JsonHit<'a> {
    path: &'a str,
    start_line: u64,
    end_line: u64,
    symbol: &'a str,
    language: &'a str,
    kind: &'a str,
    score: f32,
}

impl<'a> From<&'a Hit> for JsonHit<'a> {
    fn from(h: &'a Hit) -> Self {
        JsonHit {
            path: &h.path,
            start_line: h.start_line,
            end_line: h.end_line,
            symbol: &h.symbol,
            language: &h.language,
            kind: &h.kind,
            score: h.score,
        }
    }
}

pub fn run(args: SearchArgs) -> Result<()> {
    let kinds = parse_kind(&args.kind)?;
    for lang in &args.languages {
        Language::by_name(lang).with_context(|| {
            format!("unknown language {lang:?} (`gnn-coder languages` lists them)")
        })?;
    }
    if let Some(glob) = &args.path {
        globset::Glob::new(glob)
            .map_err(|e| anyhow::anyhow!("invalid path glob {glob:?}: {}", e.kind()))?;
    }
    let template = SearchRequest {
        languages: args.languages.clone(),
        path_glob: args.path.clone(),
        kinds,
        boosts: args.boosts.unwrap_or_default(),
        ..SearchRequest::new(String::new(), args.top_k)
    };
    match (&args.query, &args.queries) {
        (Some(_), Some(_)) => bail!("give either a QUERY or --queries FILE, not both"),
        (None, None) => bail!("nothing to search for: give a QUERY or --queries FILE"),
        (None, Some(file)) => {
            if !args.json {
                bail!("--queries writes JSON lines; add --json");
            }
            let searcher = Searcher::open(&args)?;
            batch(&searcher, &template, file)
        }
        (Some(query), None) => {
            let searcher = Searcher::open(&args)?;
            let request = SearchRequest {
                text: query.clone(),
                ..template
            };
            let vector = searcher.embed(&[query.as_str()])?.pop().unwrap_or_default();
            let hits = searcher.search(&request, &vector)?;
            let stdout = std::io::stdout();
            let mut out = BufWriter::new(stdout.lock());
            if args.json {
                let hits: Vec<JsonHit> = hits.iter().map(JsonHit::from).collect();
                serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({ "query": query, "results": hits }),
                )?;
                writeln!(out)?;
            } else {
                print_human(&mut out, &hits)?;
            }
            out.flush()?;
            Ok(())
        }
    }
}

fn open(dir: Option<PathBuf>) -> Result<SearchIndex> {
    let dir = resolve_index_dir(dir)?;
    SearchIndex::open(&dir).with_context(|| format!("cannot open the index at {}", dir.display()))
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
fn batch(searcher: &Searcher, template: &SearchRequest, file: &PathBuf) -> Result<()> {
    let reader = BufReader::new(
        File::open(file).with_context(|| format!("cannot open {}", file.display()))?,
    );
    let mut queries: Vec<(serde_json::Value, String)> = Vec::new();
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
        queries.push((id, query.to_string()));
    }
    let texts: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    let vectors = searcher.embed(&texts)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for ((id, query), vector) in queries.iter().zip(&vectors) {
        let request = SearchRequest {
            text: query.clone(),
            ..template.clone()
        };
        let hits = searcher
            .search(&request, vector)
            .with_context(|| format!("query {id}: search failed"))?;
        let hits: Vec<JsonHit> = hits.iter().map(JsonHit::from).collect();
        serde_json::to_writer(&mut out, &serde_json::json!({ "id": id, "results": hits }))?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

fn print_human(out: &mut impl Write, hits: &[Hit]) -> Result<()> {
    if hits.is_empty() {
        writeln!(out, "no results")?;
        return Ok(());
    }
    for (rank, h) in hits.iter().enumerate() {
        writeln!(
            out,
            "{:>2}. {:>7.3}  {}:{}-{}  {}  ({} {})",
            rank + 1,
            h.score,
            h.path,
            h.start_line,
            h.end_line,
            h.symbol,
            h.language,
            h.kind
        )?;
        for line in snippet(h, 3) {
            writeln!(out, "        {line}")?;
        }
    }
    Ok(())
}

/// A few lines of the unit starting at its definition line (decorators skipped), dedented.
fn snippet(h: &Hit, lines: usize) -> Vec<String> {
    let skip = h.def_line.saturating_sub(h.start_line) as usize;
    let taken: Vec<&str> = h
        .code
        .lines()
        .skip(skip)
        .filter(|l| !l.trim().is_empty())
        .take(lines)
        .collect();
    // The first line of a unit is cut at its definition, so dedent by the later lines' indent.
    let indent = taken
        .iter()
        .skip(1)
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    taken
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let l = if i == 0 {
                l.trim().to_string()
            } else {
                format!("    {}", l.get(indent..).unwrap_or(l).trim_end())
            };
            if l.chars().count() > 100 {
                let cut: String = l.chars().take(97).collect();
                format!("{cut}...")
            } else {
                l
            }
        })
        .collect()
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
