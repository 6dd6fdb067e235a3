//! Search, code→code search, fusion, test demotion, snippets and matched ranges.

use std::collections::HashMap;

use gnn_coder_store::{
    CancellationToken, FieldBoosts, Filters, LexicalQuery, PathGlobs, StoredUnit, UnitId,
    UnitRecord, VectorQuery,
};
use gnn_coder_syntax::{ExtractOptions, Fingerprint, Language, UnitKind, extract_file};
use serde::Serialize;

use crate::cross_encoder::MAX_RERANK_DEPTH;
use crate::rerank::{
    DEFAULT_FUSION, Features, FirstStage, Fusion, LEARNED, QueryWords, RERANK_DEPTH, features,
};
use crate::{Engine, EngineError, Result};

/// Hybrid weight of the semantic score (README, Quality), re-tuned for each shipped model on
/// dev (and checked on CoSQA dev and CSN Ruby): for v2.1, 0.6 / 0.7 / 0.8 / 0.85 / 0.9 give dev
/// .553 / .570 / .579 / .574 / .562, and CoSQA dev and CSN Ruby prefer 0.8 over 0.7 too; for
/// v2.2, 0.7 / 0.8 / 0.9 give dev .573 / .581 / .568.
pub const DEFAULT_DENSE_WEIGHT: f32 = 0.8;

/// Candidates each leg contributes to hybrid fusion.
const FUSION_CANDIDATES: usize = 100;

/// Longest query accepted by default, in bytes ([`RequestLimits`]).
pub const MAX_QUERY_BYTES: usize = 8192;

/// Most filter values (languages, globs, repositories, kinds) one request may carry.
pub const MAX_FILTER_VALUES: usize = 256;

/// Longest snippet a code→code search accepts, in bytes.
pub const MAX_SNIPPET_BYTES: usize = 1 << 20;

/// Bounds on what one request may ask. A front end sets them once, in
/// [`crate::EngineOptions::limits`] (the service from its flags); the engine applies them where
/// it checks a request, so there is one limit and one message for every front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Longest query, in bytes.
    pub max_query_bytes: usize,
    /// Largest `top_k`.
    pub max_top_k: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_query_bytes: MAX_QUERY_BYTES,
            max_top_k: usize::MAX,
        }
    }
}

impl RequestLimits {
    fn check_top_k(&self, k: usize) -> Result<()> {
        if k > self.max_top_k {
            return Err(EngineError::InvalidArgument(format!(
                "top_k {k} is out of range; the limit is 1 to {}",
                self.max_top_k
            )));
        }
        Ok(())
    }
}

/// Score factor of test code when the query does not ask for tests.
const TEST_FACTOR: f32 = 0.85;

/// How results are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BM25 over a code-aware tokenization.
    Lexical,
    /// Model vectors.
    Semantic,
    /// Both, fused.
    Hybrid,
}

impl Mode {
    /// Every mode, in the order front ends list them.
    pub const ALL: [Mode; 3] = [Mode::Lexical, Mode::Semantic, Mode::Hybrid];

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The mode's name, as front ends spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Lexical => "lexical",
            Mode::Semantic => "semantic",
            Mode::Hybrid => "hybrid",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Mode> {
        Mode::parse(s).ok_or_else(|| {
            EngineError::InvalidArgument(format!(
                "unknown mode {s:?}; use lexical, semantic or hybrid"
            ))
        })
    }
}

/// Which kinds of units a search returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KindFilter {
    /// Functions and methods (the default: code search answers with callables).
    #[default]
    Callables,
    /// Every kind of unit.
    All,
    /// Exactly these kinds.
    Only(Vec<UnitKind>),
}

impl KindFilter {
    /// The filter named by front-end words: `callable` (or `callables`), `all` (or `any`), or
    /// unit kinds (`function`, `class`, ...); none gives `default`. The one parser of kind
    /// names: the CLI and the service both call it.
    pub fn parse<S: AsRef<str>>(names: &[S], default: KindFilter) -> Result<KindFilter> {
        if names.is_empty() {
            return Ok(default);
        }
        let mut only = Vec::new();
        for name in names {
            match name.as_ref() {
                "callable" | "callables" => return Ok(KindFilter::Callables),
                "all" | "any" => return Ok(KindFilter::All),
                other => only.push(UnitKind::parse(other).ok_or_else(|| {
                    EngineError::InvalidArgument(format!(
                        "unknown kind {other:?}; use callable, all, or one of: {}",
                        UnitKind::ALL.map(|k| k.as_str()).join(", ")
                    ))
                })?),
            }
        }
        Ok(KindFilter::Only(only))
    }

    /// The kind names this filter admits; empty = all.
    pub fn names(&self) -> Vec<String> {
        match self {
            KindFilter::All => Vec::new(),
            KindFilter::Callables => vec!["function".into(), "method".into()],
            KindFilter::Only(kinds) => kinds.iter().map(|k| k.as_str().to_string()).collect(),
        }
    }
}

/// A search.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: usize,
    /// `None`: hybrid when the index holds vectors, else lexical.
    pub mode: Option<Mode>,
    /// Language names (`gnn-coder languages`); empty = all.
    pub languages: Vec<String>,
    pub kinds: KindFilter,
    /// Repository names; empty = all.
    pub repositories: Vec<String>,
    /// Globs over the root-relative path; a unit passes when any matches.
    pub path_globs: Vec<String>,
    /// Semantic weight in hybrid mode (0..=1); `None`: [`DEFAULT_DENSE_WEIGHT`].
    pub dense_weight: Option<f32>,
    /// How hybrid search orders its fused candidates; `None`: [`DEFAULT_FUSION`].
    pub fusion: Option<Fusion>,
    pub boosts: FieldBoosts,
    /// Rank test code below the code it tests unless the query asks for tests.
    pub demote_tests: bool,
    /// Exact vector search even where an approximate index exists (for measuring it).
    pub exact: bool,
    /// Reorder the top this many hits with the cross-encoder reranker
    /// ([`crate::cross_encoder`]; 1..=[`MAX_RERANK_DEPTH`]); `None`: no reranking.
    pub rerank: Option<usize>,
}

impl SearchRequest {
    pub fn new(query: impl Into<String>, top_k: usize) -> SearchRequest {
        SearchRequest {
            query: query.into(),
            top_k,
            mode: None,
            languages: Vec::new(),
            kinds: KindFilter::default(),
            repositories: Vec::new(),
            path_globs: Vec::new(),
            dense_weight: None,
            fusion: None,
            boosts: FieldBoosts::default(),
            demote_tests: true,
            exact: false,
            rerank: None,
        }
    }
}

/// Where a query term occurs in a hit, for highlighting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MatchRange {
    /// 1-based line in the file.
    pub line: u64,
    /// Byte range in the file.
    pub start_byte: u64,
    pub end_byte: u64,
}

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub repository: String,
    #[serde(flatten)]
    pub unit: UnitRecord,
    pub score: f32,
    pub matches: Vec<MatchRange>,
}

/// What a code→code search starts from.
#[derive(Debug, Clone)]
pub enum SimilarTarget {
    /// The innermost unit of `path` (root-relative) containing `line` (1-based).
    Unit {
        repository: Option<String>,
        path: String,
        line: u64,
    },
    /// A snippet of code in a language.
    Snippet { code: String, language: String },
}

/// A code→code search.
#[derive(Debug, Clone)]
pub struct SimilarRequest {
    pub target: SimilarTarget,
    pub top_k: usize,
    pub languages: Vec<String>,
    pub kinds: KindFilter,
    pub repositories: Vec<String>,
    pub path_globs: Vec<String>,
    /// Weight of the lexical match of the code's own text (0: vectors alone).
    pub lexical_weight: f32,
    /// Weight of the structure fingerprint's similarity in the second stage (0: first stage
    /// alone): see [`Engine::similar`].
    pub structure_weight: f32,
}

/// Lexical weight of code→code search (measured with `examples/near_duplicates.rs`).
pub const SIMILAR_LEXICAL_WEIGHT: f32 = 0.2;

/// Structure weight of code→code search (measured with `examples/near_duplicates.rs`).
pub const SIMILAR_STRUCTURE_WEIGHT: f32 = 0.7;

/// Candidates of code→code search's first stage that the structure fingerprint re-orders.
pub const SIMILAR_RERANK_DEPTH: usize = 200;

impl SimilarRequest {
    pub fn new(target: SimilarTarget, top_k: usize) -> SimilarRequest {
        SimilarRequest {
            target,
            top_k,
            languages: Vec::new(),
            kinds: KindFilter::All,
            repositories: Vec::new(),
            path_globs: Vec::new(),
            lexical_weight: SIMILAR_LEXICAL_WEIGHT,
            structure_weight: SIMILAR_STRUCTURE_WEIGHT,
        }
    }
}

/// Whether a unit is test code: by its path (`tests/`, `test_*.py`, `*_test.go`, `*.spec.ts`,
/// `FooTest.java`, `conftest.py`, ...), its symbol or name (a word starting with `test`:
/// `tests::`, `test_*`, Go's `TestXxx`) or a test attribute before its definition (`#[test]`,
/// `@pytest.mark...`). The rule is shared with training's miner:
/// [`gnn_coder_store::test_code`].
pub fn is_test_code(unit: &UnitRecord) -> bool {
    gnn_coder_store::test_code::is_test_unit(unit)
}

fn asks_for_tests(query: &str) -> bool {
    query.split(|c: char| !c.is_alphanumeric()).any(|w| {
        let w = w.to_ascii_lowercase();
        w.starts_with("test") || w == "spec" || w == "specs" || w == "assert" || w == "mock"
    })
}

/// The terms of a query worth highlighting: the query's BM25 terms (the index's analysis:
/// identifiers split by `gnn_coder_store::words`, lower-cased, Snowball-stemmed), without the
/// function words the lexical leg also leaves out (here even when nothing else remains) and
/// one-byte words, each once.
fn highlight_terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in gnn_coder_index::tokenizer::analyze_spans(query) {
        let raw = query.get(t.from..t.to).unwrap_or_default().to_lowercase();
        if raw.len() < 2 || gnn_coder_index::tokenizer::QUERY_STOP_WORDS.contains(&raw.as_str()) {
            continue;
        }
        if !out.contains(&t.text) {
            out.push(t.text);
        }
    }
    out
}

/// Where `terms` ([`highlight_terms`]) occur in `unit`'s code, in file coordinates; at most 64
/// ranges. The code goes through the same analysis as the query, so a range is a whole token
/// (a sub-word or an identifier) whose BM25 term is one of `terms`: what the lexical leg
/// matched, never a piece of a longer word.
fn match_ranges(unit: &UnitRecord, terms: &[String]) -> Vec<MatchRange> {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    if !terms.is_empty() {
        // The stemmer keeps a word's first character, so only tokens starting like a term can
        // stem to it: the rest are not stemmed at all. Tokens come in text order (an
        // identifier before its sub-words), so ranges merge as they come.
        let firsts: Vec<char> = terms.iter().filter_map(|t| t.chars().next()).collect();
        let could_match = |w: &str| w.chars().next().is_some_and(|c| firsts.contains(&c));
        for t in gnn_coder_index::tokenizer::analyze_spans_where(&unit.code, could_match) {
            if !terms.contains(&t.text) {
                continue;
            }
            match merged.last_mut() {
                Some(last) if t.from <= last.1 => last.1 = last.1.max(t.to),
                _ => {
                    if merged.len() == 64 {
                        break;
                    }
                    merged.push((t.from, t.to));
                }
            }
        }
    }
    // A container's text elides the containers nested in it (`gnn_coder_syntax::ELISION_MARK`):
    // its offsets match the file only before the first elision.
    if !UnitKind::parse(&unit.kind).is_some_and(UnitKind::is_callable)
        && let Some(cut) = unit.code.find(gnn_coder_syntax::ELISION_MARK)
    {
        merged.retain(|&(_, e)| e <= cut);
    }
    let code = unit.code.as_bytes();
    let mut line = unit.start_line;
    let mut pos = 0;
    merged
        .into_iter()
        .map(|(s, e)| {
            // Line breaks are `\n`, `\r\n` or a lone `\r`, as the units' lines count them.
            line += (pos..s)
                .filter(|&i| {
                    code[i] == b'\n' || (code[i] == b'\r' && code.get(i + 1) != Some(&b'\n'))
                })
                .count() as u64;
            pos = s;
            MatchRange {
                line,
                start_byte: unit.start_byte + s as u64,
                end_byte: unit.start_byte + e as u64,
            }
        })
        .collect()
}

/// A few lines of a unit starting at its definition line (decorators skipped), dedented and
/// cut at 100 characters.
pub fn snippet(unit: &UnitRecord, lines: usize) -> Vec<String> {
    let skip = unit.def_line.saturating_sub(unit.start_line) as usize;
    let taken: Vec<&str> = gnn_coder_syntax::split_lines(&unit.code)
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

fn min_max(values: impl Iterator<Item = f32>) -> (f32, f32) {
    values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}

/// Checks the filter values every request carries and turns them into the store's (globs
/// compiled here, once). Repository names are checked against the index by the engine.
fn check_filters(
    languages: &[String],
    kinds: &KindFilter,
    repositories: &[String],
    path_globs: &[String],
) -> Result<Filters> {
    let kind_values = match kinds {
        KindFilter::Only(k) => k.len(),
        _ => 0,
    };
    if languages.len() + repositories.len() + path_globs.len() + kind_values > MAX_FILTER_VALUES {
        return Err(EngineError::InvalidArgument(format!(
            "more than {MAX_FILTER_VALUES} filter values"
        )));
    }
    for lang in languages {
        Language::by_name(lang)
            .map_err(|_| EngineError::InvalidArgument(format!("unknown language {lang:?}")))?;
    }
    Ok(Filters {
        languages: languages.to_vec(),
        kinds: kinds.names(),
        repositories: repositories.to_vec(),
        path_globs: PathGlobs::new(path_globs.iter().cloned())?,
        exclude_units: Vec::new(),
    })
}

impl SearchRequest {
    /// Checks everything about the request that does not depend on an index: the query (not
    /// empty, within `limits`), `top_k`, the dense weight and every filter value; returns the
    /// store's filters, globs compiled. [`Engine::prepare`] calls it; front ends need not.
    pub fn validate(&self, limits: &RequestLimits) -> Result<Filters> {
        if self.query.trim().is_empty() {
            return Err(EngineError::InvalidArgument("the query is empty".into()));
        }
        if self.query.len() > limits.max_query_bytes {
            return Err(EngineError::InvalidArgument(format!(
                "the query is {} bytes long; the limit is {}",
                self.query.len(),
                limits.max_query_bytes
            )));
        }
        limits.check_top_k(self.top_k)?;
        if let Some(w) = self.dense_weight
            && !(0.0..=1.0).contains(&w)
        {
            return Err(EngineError::InvalidArgument(
                "the dense weight must be between 0 and 1".into(),
            ));
        }
        if let Some(n) = self.rerank
            && !(1..=MAX_RERANK_DEPTH).contains(&n)
        {
            return Err(EngineError::InvalidArgument(format!(
                "the rerank depth must be between 1 and {MAX_RERANK_DEPTH}"
            )));
        }
        check_filters(
            &self.languages,
            &self.kinds,
            &self.repositories,
            &self.path_globs,
        )
    }
}

impl SimilarRequest {
    /// Checks everything about the request that does not depend on an index (the target, the
    /// limits, the filters); returns the store's filters, globs compiled.
    pub fn validate(&self, limits: &RequestLimits) -> Result<Filters> {
        match &self.target {
            SimilarTarget::Unit { path, line, .. } => {
                if path.is_empty() || *line == 0 {
                    return Err(EngineError::InvalidArgument(
                        "a unit target needs a path and a 1-based line".into(),
                    ));
                }
            }
            SimilarTarget::Snippet { code, language } => {
                if code.trim().is_empty() {
                    return Err(EngineError::InvalidArgument("the snippet is empty".into()));
                }
                if code.len() > MAX_SNIPPET_BYTES {
                    return Err(EngineError::InvalidArgument(
                        "the snippet is over 1 MiB".into(),
                    ));
                }
                Language::by_name(language).map_err(|_| {
                    EngineError::InvalidArgument(format!("unknown language {language:?}"))
                })?;
            }
        }
        limits.check_top_k(self.top_k)?;
        if !(0.0..=1.0).contains(&self.lexical_weight) {
            return Err(EngineError::InvalidArgument(
                "the lexical weight must be between 0 and 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.structure_weight) {
            return Err(EngineError::InvalidArgument(
                "the structure weight must be between 0 and 1".into(),
            ));
        }
        check_filters(
            &self.languages,
            &self.kinds,
            &self.repositories,
            &self.path_globs,
        )
    }
}

/// A search checked once by [`Engine::prepare`]: its mode resolved against the index and its
/// filters compiled. Running it checks nothing again.
#[derive(Debug, Clone)]
pub struct PreparedSearch {
    request: SearchRequest,
    mode: Mode,
    filters: Filters,
}

impl PreparedSearch {
    /// The mode the search runs in (the request's, or the index's default).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn request(&self) -> &SearchRequest {
        &self.request
    }

    /// Whether the search needs a query vector.
    pub fn needs_vector(&self) -> bool {
        self.mode != Mode::Lexical
    }
}

impl Engine {
    fn mode_of(&self, requested: Option<Mode>) -> Result<Mode> {
        let mode = requested.unwrap_or(if self.store.embedding().is_some() {
            Mode::Hybrid
        } else {
            Mode::Lexical
        });
        if mode != Mode::Lexical && self.store.embedding().is_none() {
            return Err(EngineError::Store(gnn_coder_store::StoreError::NoVectors {
                path: self.dir.clone(),
            }));
        }
        Ok(mode)
    }

    /// Refuses repository names the index does not hold (a search without repository filters
    /// opens no snapshot here).
    fn check_repositories(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let known = self.store.reader()?.repositories()?;
        for r in names {
            if !known.iter().any(|k| &k.name == r) {
                return Err(EngineError::NotFound(format!(
                    "no repository named {r:?} in the index"
                )));
            }
        }
        Ok(())
    }

    /// Checks a search once, without running it: the request itself
    /// ([`SearchRequest::validate`] against the engine's limits), its repositories and its mode
    /// against the index. The batch contract prepares every query before answering any.
    pub fn prepare(&self, req: &SearchRequest) -> Result<PreparedSearch> {
        let filters = req.validate(&self.options.limits)?;
        let mode = self.mode_of(req.mode)?;
        if req.rerank.is_some() && mode != Mode::Hybrid {
            return Err(EngineError::InvalidArgument(format!(
                "the reranker corrects hybrid search; this search is {}",
                mode.as_str()
            )));
        }
        self.check_repositories(&req.repositories)?;
        Ok(PreparedSearch {
            request: req.clone(),
            mode,
            filters,
        })
    }

    /// Query vectors for `queries`, in one batch (on the light query-only model unless the
    /// full one is loaded already, see [`Engine::query_model`]).
    /// Vectors of texts searched recently come from a cache ([`crate::QUERY_CACHE_ENTRIES`]).
    pub fn embed_queries(&self, queries: &[&str]) -> Result<Vec<Vec<f32>>> {
        let model = self.query_model()?;
        self.query_cache
            .get_or_embed(queries, |missing| model.embed_queries(missing))
    }

    /// Query-vector cache hits and misses since the engine was opened.
    pub fn query_cache_counts(&self) -> (u64, u64) {
        self.query_cache.counts()
    }

    /// Answers one search.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let prepared = self.prepare(req)?;
        self.run_prepared(&prepared)
    }

    /// Answers a prepared search, embedding its query when its mode needs a vector.
    pub fn run_prepared(&self, prepared: &PreparedSearch) -> Result<Vec<SearchHit>> {
        self.run_prepared_until(prepared, &CancellationToken::new())
    }

    /// [`Engine::run_prepared`] that stops with [`EngineError::Cancelled`] once `cancel` is
    /// cancelled, checked between its stages (query embedding, each leg, reading the hits): a
    /// search superseded by the next keystroke, or whose client hung up, stops paying.
    pub fn run_prepared_until(
        &self,
        prepared: &PreparedSearch,
        cancel: &CancellationToken,
    ) -> Result<Vec<SearchHit>> {
        check(cancel)?;
        let vector = match prepared.mode {
            Mode::Lexical => None,
            _ => self
                .embed_queries(&[prepared.request.query.as_str()])?
                .pop(),
        };
        self.run_until(prepared, vector.as_deref(), cancel, None)
    }

    /// Answers a search whose query vector was computed already (`None` in lexical mode).
    pub fn search_with_vector(
        &self,
        req: &SearchRequest,
        vector: Option<&[f32]>,
    ) -> Result<Vec<SearchHit>> {
        self.run_with_vector(&self.prepare(req)?, vector)
    }

    /// Answers a prepared search with its query vector (`None` in lexical mode).
    pub fn run_with_vector(
        &self,
        prepared: &PreparedSearch,
        vector: Option<&[f32]>,
    ) -> Result<Vec<SearchHit>> {
        self.run_until(prepared, vector, &CancellationToken::new(), None)
    }

    /// The learned fusion's view of a hybrid search: its top [`RERANK_DEPTH`] candidates in the
    /// weighted fusion's order, each with its [`Features`] (what `training/fusion` learns
    /// from). Test code is not demoted; `top_k`, `fusion` and `demote_tests` of the request are
    /// ignored.
    pub fn fusion_features(
        &self,
        prepared: &PreparedSearch,
        vector: &[f32],
    ) -> Result<Vec<(SearchHit, Features)>> {
        if prepared.mode != Mode::Hybrid {
            return Err(EngineError::InvalidArgument(
                "fusion features need a hybrid search".into(),
            ));
        }
        let mut p = prepared.clone();
        p.request.top_k = RERANK_DEPTH;
        p.request.fusion = Some(Fusion::Weighted);
        p.request.demote_tests = false;
        let mut out = Vec::new();
        self.run_until(&p, Some(vector), &CancellationToken::new(), Some(&mut out))?;
        Ok(out)
    }

    /// Runs a search; `features_out` (hybrid only) receives the learned fusion's pool with
    /// its features, in the weighted fusion's order.
    fn run_until(
        &self,
        prepared: &PreparedSearch,
        vector: Option<&[f32]>,
        cancel: &CancellationToken,
        features_out: Option<&mut Vec<(SearchHit, Features)>>,
    ) -> Result<Vec<SearchHit>> {
        check(cancel)?;
        let req = &prepared.request;
        let mode = prepared.mode;
        let mut filters = prepared.filters.clone();
        let reader = self.store.reader()?;
        // Unsaved buffers hide their files' committed units and rank beside them.
        let overlay = self.overlay.view();
        if !overlay.is_empty() {
            filters
                .exclude_units
                .extend(overlay.hidden(reader.as_ref())?);
        }
        let lexical_leg = |q: &LexicalQuery| -> Result<Vec<(UnitId, f32)>> {
            let mut ranked = reader.lexical(q)?;
            if !overlay.is_empty() {
                overlay.merge_lexical(reader.as_ref(), q, &mut ranked)?;
            }
            Ok(ranked)
        };
        let vector_leg = |q: &VectorQuery| -> Result<Vec<(UnitId, f32)>> {
            let mut ranked = reader.vector(q)?;
            overlay.merge_dense(&q.filters, &q.vector, q.limit, &mut ranked);
            Ok(ranked)
        };
        if req.top_k == 0 {
            return Ok(Vec::new());
        }
        let demote = req.demote_tests && !asks_for_tests(&req.query);
        // Demotion reorders within a deeper pool than the k asked for.
        let depth = if demote {
            req.top_k.saturating_mul(2).saturating_add(10)
        } else {
            req.top_k
        }
        .max(req.rerank.unwrap_or(0));
        let need_vector = || {
            vector.ok_or_else(|| {
                EngineError::Internal("no query vector for a semantic search".into())
            })
        };
        // Units read already (by the learned fusion), in `ranked`'s order.
        let mut read: Option<Vec<StoredUnit>> = None;
        let ranked: Vec<(UnitId, f32)> = match mode {
            Mode::Lexical => lexical_leg(&LexicalQuery {
                text: req.query.clone(),
                boosts: req.boosts,
                filters,
                limit: depth,
            })?,
            Mode::Semantic => vector_leg(&VectorQuery {
                vector: need_vector()?.to_vec(),
                filters,
                limit: depth,
                exact: req.exact,
            })?,
            Mode::Hybrid => {
                let q = need_vector()?;
                let pool = depth.max(FUSION_CANDIDATES);
                let lexical = lexical_leg(&LexicalQuery {
                    text: req.query.clone(),
                    boosts: req.boosts,
                    filters: filters.clone(),
                    limit: pool,
                })?;
                check(cancel)?;
                let dense = vector_leg(&VectorQuery {
                    vector: q.to_vec(),
                    filters,
                    limit: pool,
                    exact: req.exact,
                })?;
                let dense_of = |ids: &[UnitId]| -> Result<Vec<Option<f32>>> {
                    if overlay.is_empty() {
                        return Ok(reader.vector_scores(ids, q)?);
                    }
                    let mut out = overlay.dense_scores(ids, q);
                    let committed: Vec<UnitId> = ids
                        .iter()
                        .copied()
                        .filter(|id| !crate::overlay::is_overlay(*id))
                        .collect();
                    let mut scores = reader.vector_scores(&committed, q)?.into_iter();
                    for (slot, id) in out.iter_mut().zip(ids) {
                        if !crate::overlay::is_overlay(*id) {
                            *slot = scores.next().flatten();
                        }
                    }
                    Ok(out)
                };
                let mut fused = fuse(
                    &dense_of,
                    &lexical,
                    &dense,
                    req.dense_weight.unwrap_or(DEFAULT_DENSE_WEIGHT),
                )?;
                let fusion = req.fusion.unwrap_or(DEFAULT_FUSION);
                if fusion == Fusion::Weighted && features_out.is_none() {
                    // Only the pool demotion reorders is read from the store, as in the other
                    // modes (reading every fused candidate's stored text was a fifth of a
                    // query).
                    fused.truncate(depth);
                    fused.into_iter().map(|(id, f)| (id, f.fused)).collect()
                } else {
                    // The second stage reads its whole pool: the features need the units.
                    fused.truncate(depth.max(RERANK_DEPTH));
                    check(cancel)?;
                    let ids: Vec<UnitId> = fused.iter().map(|(id, _)| *id).collect();
                    let units = if overlay.is_empty() {
                        reader.units(&ids)?
                    } else {
                        overlay.resolve(reader.as_ref(), &ids)?
                    };
                    let first: HashMap<UnitId, FirstStage> = fused.into_iter().collect();
                    let words = QueryWords::new(&req.query);
                    let mut scored: Vec<(StoredUnit, Features, f32)> = units
                        .into_iter()
                        .filter_map(|u| {
                            let fs = first.get(&u.id)?;
                            let f = features(&words, fs, &u.record);
                            Some((u, f, fs.fused))
                        })
                        .collect();
                    if let Some(out) = features_out {
                        out.extend(scored.iter().map(|(u, f, _)| {
                            (
                                SearchHit {
                                    repository: u.repository.clone(),
                                    unit: u.record.clone(),
                                    score: f[0],
                                    matches: Vec::new(),
                                },
                                *f,
                            )
                        }));
                    }
                    if fusion == Fusion::Learned {
                        // A logistic squash keeps scores in (0, 1), where test demotion's
                        // factor means what it means for the weighted scores.
                        for (_, f, score) in &mut scored {
                            *score = 1.0 / (1.0 + (-LEARNED.score(f)).exp());
                        }
                        scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.id.cmp(&b.0.id)));
                    }
                    let ranked = scored.iter().map(|(u, _, s)| (u.id, *s)).collect();
                    read = Some(scored.into_iter().map(|(u, _, _)| u).collect());
                    ranked
                }
            }
        };
        check(cancel)?;
        let ids: Vec<UnitId> = ranked.iter().map(|(id, _)| *id).collect();
        let units = match read {
            Some(units) => units,
            None if overlay.is_empty() => reader.units(&ids)?,
            None => overlay.resolve(reader.as_ref(), &ids)?,
        };
        let scores: HashMap<UnitId, f32> = ranked.into_iter().collect();
        let mut hits: Vec<(StoredUnit, f32)> = units
            .into_iter()
            .map(|u| {
                let mut s = scores.get(&u.id).copied().unwrap_or(0.0);
                if demote && is_test_code(&u.record) {
                    s *= TEST_FACTOR;
                }
                (u, s)
            })
            .collect();
        if demote {
            hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
        }
        if let Some(n) = req.rerank {
            check(cancel)?;
            let model = self.reranker()?;
            crate::cross_encoder::rerank(&model, &req.query, &mut hits, n, cancel)?;
        }
        hits.truncate(req.top_k);
        let terms = highlight_terms(&req.query);
        Ok(hits
            .into_iter()
            .map(|(u, score)| SearchHit {
                matches: match_ranges(&u.record, &terms),
                repository: u.repository,
                unit: u.record,
                score,
            })
            .collect())
    }

    /// Code→code search: units whose code vectors are nearest to the target's.
    ///
    /// Two stages. The first takes the [`SIMILAR_RERANK_DEPTH`] nearest code vectors, fused
    /// with a lexical match of the target's own text when `lexical_weight` > 0. The second
    /// re-orders them by `(1 - w) * first + w * structure²`, where `structure` is the Jaccard
    /// similarity of the two units' [`Fingerprint`]s (their token k-grams with the names each
    /// binds numbered in order) and `w` is `structure_weight`: a copy with its names renamed,
    /// which the text-reading model loses, keeps its fingerprint. Squared, the structure moves
    /// near-copies far and leaves the first stage's order of everything else nearly as it was
    /// (a similarity of .3 adds at most .063). The second stage parses each candidate
    /// once (about 0.1 ms for a function; at most [`gnn_coder_syntax::structure::MAX_BYTES`] of
    /// each).
    pub fn similar(&self, req: &SimilarRequest) -> Result<(Option<SearchHit>, Vec<SearchHit>)> {
        self.similar_until(req, &CancellationToken::new())
    }

    /// [`Engine::similar`] that stops with [`EngineError::Cancelled`] once `cancel` is
    /// cancelled (checked between the stages and between the second stage's parses).
    pub fn similar_until(
        &self,
        req: &SimilarRequest,
        cancel: &CancellationToken,
    ) -> Result<(Option<SearchHit>, Vec<SearchHit>)> {
        if self.store.embedding().is_none() {
            return Err(EngineError::Store(gnn_coder_store::StoreError::NoVectors {
                path: self.dir.clone(),
            }));
        }
        let mut filters = req.validate(&self.options.limits)?;
        let reader = self.store.reader()?;
        self.check_repositories(&req.repositories)?;
        check(cancel)?;
        let (origin, vector, text, language) = match &req.target {
            SimilarTarget::Unit {
                repository,
                path,
                line,
            } => {
                let repos = reader.repositories()?;
                let candidates: Vec<&str> = match repository {
                    Some(r) => {
                        if !repos.iter().any(|k| &k.name == r) {
                            return Err(EngineError::NotFound(format!(
                                "no repository named {r:?} in the index"
                            )));
                        }
                        vec![r.as_str()]
                    }
                    None => repos.iter().map(|r| r.name.as_str()).collect(),
                };
                let mut best: Option<StoredUnit> = None;
                for repo in candidates {
                    for u in reader.units_of_file(repo, path)? {
                        if u.record.start_line <= *line && *line <= u.record.end_line {
                            let span = u.record.end_line - u.record.start_line;
                            if best
                                .as_ref()
                                .is_none_or(|b| span < b.record.end_line - b.record.start_line)
                            {
                                best = Some(u);
                            }
                        }
                    }
                }
                let Some(unit) = best else {
                    return Err(EngineError::NotFound(format!(
                        "no indexed unit contains {path}:{line}"
                    )));
                };
                let vector = reader.unit_vector(unit.id)?.ok_or_else(|| {
                    EngineError::NotFound(format!("the unit at {path}:{line} has no vector"))
                })?;
                filters.exclude_units.push(unit.id);
                let text = unit.record.code.clone();
                let language = Language::by_name(&unit.record.language).ok();
                let origin = SearchHit {
                    repository: unit.repository,
                    unit: unit.record,
                    score: 1.0,
                    matches: Vec::new(),
                };
                (Some(origin), vector, text, language)
            }
            SimilarTarget::Snippet { code, language } => {
                let lang = Language::by_name(language).map_err(|_| {
                    EngineError::InvalidArgument(format!("unknown language {language:?}"))
                })?;
                let model = self.model()?;
                // Embed the snippet the way indexing embeds a unit: its first top-level
                // definition with its AST graph, or the whole text when it defines nothing.
                let opts = ExtractOptions {
                    graphs: model.embedder.graphs_enabled(),
                    ..ExtractOptions::default()
                };
                let parsed = extract_file(lang, "snippet", code.as_bytes(), &opts)?;
                let input = parsed
                    .units
                    .first()
                    .map(|u| (u.code.clone(), parsed.graphs.first().cloned()));
                let (text, graph) = input.unwrap_or_else(|| (code.clone(), None));
                let v = model
                    .embedder
                    .embed_units(&[gnn_coder_model::UnitInput::new(
                        &text,
                        graph.as_ref(),
                        lang.name(),
                    )])?
                    .pop()
                    .ok_or_else(|| EngineError::Internal("the model returned no vector".into()))?;
                (None, v, code.clone(), Some(lang))
            }
        };
        if req.top_k == 0 {
            return Ok((origin, Vec::new()));
        }
        // The second stage needs the target's grammar; without one, the first stage is all.
        let rerank = language.filter(|_| req.structure_weight > 0.0);
        let depth = if rerank.is_some() {
            req.top_k.max(SIMILAR_RERANK_DEPTH)
        } else {
            req.top_k
        };
        let ranked: Vec<(UnitId, f32)> = if req.lexical_weight > 0.0 {
            // The code's own words (calls, strings, the identifiers that were not renamed)
            // fused with the vectors, as hybrid search does for questions.
            let pool = depth.max(FUSION_CANDIDATES);
            let mut cut = text.len().min(4096);
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let lexical = reader.lexical(&LexicalQuery {
                text: text[..cut].to_string(),
                boosts: FieldBoosts::default(),
                filters: filters.clone(),
                limit: pool,
            })?;
            let dense = reader.vector(&VectorQuery {
                vector: vector.clone(),
                filters,
                limit: pool,
                exact: false,
            })?;
            let mut fused = fuse(
                &|ids: &[UnitId]| Ok(reader.vector_scores(ids, &vector)?),
                &lexical,
                &dense,
                1.0 - req.lexical_weight,
            )?;
            fused.truncate(depth);
            fused.into_iter().map(|(id, f)| (id, f.fused)).collect()
        } else {
            reader.vector(&VectorQuery {
                vector,
                filters,
                limit: depth,
                exact: false,
            })?
        };
        check(cancel)?;
        let units = reader.units(&ranked.iter().map(|(id, _)| *id).collect::<Vec<_>>())?;
        let scores: HashMap<UnitId, f32> = ranked.into_iter().collect();
        let mut scored: Vec<(StoredUnit, f32)> = units
            .into_iter()
            .map(|u| {
                let s = scores.get(&u.id).copied().unwrap_or(0.0);
                (u, s)
            })
            .collect();
        if let Some(lang) = rerank {
            let w = req.structure_weight;
            let target = Fingerprint::of(lang, &text);
            let rescore = |chunk: &mut [(StoredUnit, f32)]| {
                for (u, s) in chunk {
                    if cancel.is_cancelled() {
                        return;
                    }
                    let structure = Language::by_name(&u.record.language).map_or(0.0, |l| {
                        target
                            .similarity(&Fingerprint::of(l, &u.record.code))
                            .powi(2)
                    });
                    *s = (1.0 - w) * *s + w * structure;
                }
            };
            // One parse per candidate: spread over a few threads (the answer does not depend
            // on how).
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            let per = scored.len().div_ceil(threads).max(16);
            std::thread::scope(|scope| {
                let mut chunks = scored.chunks_mut(per);
                let first = chunks.next();
                for chunk in chunks {
                    scope.spawn(|| rescore(chunk));
                }
                if let Some(chunk) = first {
                    rescore(chunk);
                }
            });
            check(cancel)?;
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
        }
        scored.truncate(req.top_k);
        let hits = scored
            .into_iter()
            .map(|(u, score)| SearchHit {
                score,
                repository: u.repository,
                unit: u.record,
                matches: Vec::new(),
            })
            .collect();
        Ok((origin, hits))
    }
}

fn check(cancel: &CancellationToken) -> Result<()> {
    if cancel.is_cancelled() {
        return Err(EngineError::Cancelled);
    }
    Ok(())
}

/// Weighted min-max fusion: each leg's candidates are pooled, their scores min-max scaled per
/// query (a unit missing from the lexical list scores 0 there; its dense score is computed),
/// and ranked by `w * dense + (1 - w) * lexical`.
/// Dense scores of units by id (`None`: no vector), for fusion's lexical-only candidates.
type DenseOf<'a> = &'a dyn Fn(&[UnitId]) -> Result<Vec<Option<f32>>>;

fn fuse(
    dense_of: DenseOf<'_>,
    lexical: &[(UnitId, f32)],
    dense: &[(UnitId, f32)],
    w: f32,
) -> Result<Vec<(UnitId, FirstStage)>> {
    let mut dense_scores: HashMap<UnitId, f32> = dense.iter().copied().collect();
    let missing: Vec<UnitId> = lexical
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !dense_scores.contains_key(id))
        .collect();
    for (id, score) in missing.iter().zip(dense_of(&missing)?) {
        if let Some(score) = score {
            dense_scores.insert(*id, score);
        }
    }
    let lex: HashMap<UnitId, f32> = lexical.iter().copied().collect();
    let dense_rank: HashMap<UnitId, usize> = dense
        .iter()
        .enumerate()
        .map(|(r, (id, _))| (*id, r))
        .collect();
    let lexical_rank: HashMap<UnitId, usize> = lexical
        .iter()
        .enumerate()
        .map(|(r, (id, _))| (*id, r))
        .collect();
    let mut ids: Vec<UnitId> = dense.iter().map(|(id, _)| *id).collect();
    ids.extend(
        lexical
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !dense_rank.contains_key(id)),
    );
    let (dmin, dmax) = min_max(ids.iter().filter_map(|id| dense_scores.get(id).copied()));
    let (lmin, lmax) = min_max(lex.values().copied());
    let scale = |x: f32, lo: f32, hi: f32| if hi > lo { (x - lo) / (hi - lo) } else { 1.0 };
    let w = w.clamp(0.0, 1.0);
    let mut fused: Vec<(UnitId, FirstStage)> = ids
        .into_iter()
        .map(|id| {
            let d = dense_scores.get(&id).map_or(0.0, |&x| scale(x, dmin, dmax));
            let l = lex.get(&id).map_or(0.0, |&x| scale(x, lmin, lmax));
            let first = FirstStage {
                fused: w * d + (1.0 - w) * l,
                dense_norm: d,
                lexical_norm: l,
                dense: dense_scores.get(&id).copied(),
                dense_rank: dense_rank.get(&id).copied(),
                lexical_rank: lexical_rank.get(&id).copied(),
            };
            (id, first)
        })
        .collect();
    fused.sort_by(|a, b| b.1.fused.total_cmp(&a.1.fused).then(a.0.cmp(&b.0)));
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(path: &str, symbol: &str, code: &str) -> UnitRecord {
        UnitRecord {
            path: path.into(),
            language: "python".into(),
            kind: "function".into(),
            name: symbol.rsplit(['.', ':']).next().unwrap_or(symbol).into(),
            symbol: symbol.into(),
            start_line: 10,
            end_line: 10 + code.lines().count() as u64,
            def_line: 10,
            start_byte: 1000,
            end_byte: 1000 + code.len() as u64,
            doc: None,
            code: code.into(),
        }
    }

    #[test]
    fn test_code_is_recognised() {
        assert!(is_test_code(&unit("tests/test_io.py", "test_read", "")));
        assert!(is_test_code(&unit("src/lib.rs", "tests::sizes_parse", "")));
        assert!(is_test_code(&unit("pkg/retry_test.go", "TestRetry", "")));
        assert!(is_test_code(&unit("web/app.spec.ts", "it", "")));
        assert!(is_test_code(&unit("src/FooTest.java", "FooTest.check", "")));
        assert!(!is_test_code(&unit("src/size.rs", "parse_size", "")));
        assert!(!is_test_code(&unit(
            "src/testing_utils_not.rs",
            "contest",
            ""
        )));
        assert!(!is_test_code(&unit("src/latest.py", "Testament", "")));
        // What the miner knew: `test_*` directories, conftest, words inside names, attributes.
        assert!(is_test_code(&unit("pkg/test_things/a.py", "helper", "")));
        assert!(is_test_code(&unit("conftest.py", "fixture", "")));
        assert!(is_test_code(&unit(
            "src/a.py",
            "Reader.check_test_data",
            ""
        )));
        assert!(is_test_code(&unit(
            "src/server.rs",
            "HTTPTestServer.start",
            ""
        )));
        let mut attributed = unit("src/lib.rs", "checks", "#[test]\nfn checks() {}\n");
        attributed.def_line = 11;
        assert!(is_test_code(&attributed));
        // Public test helpers are not tests.
        assert!(!is_test_code(&unit(
            "numpy/testing/utils.py",
            "assert_close",
            ""
        )));
        assert!(!is_test_code(&unit("src/a.py", "pytest_configure", "")));
        assert!(asks_for_tests("unit tests for the parser"));
        assert!(!asks_for_tests("parse a size like 512K"));
    }

    #[test]
    fn matches_are_in_file_coordinates() {
        let u = unit(
            "a.py",
            "parse_size",
            "def parse_size(s):\n    return Size(s)\n",
        );
        let terms = highlight_terms("parse sizes");
        // BM25's terms: stemmed as the index stems them.
        assert_eq!(terms, vec!["pars", "size"]);
        let m = match_ranges(&u, &terms);
        // "parse" and "size" in the name, "Size" and "s" no: "size" matches "Size" too.
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(
            m[0],
            MatchRange {
                line: 10,
                start_byte: 1004,
                end_byte: 1009
            }
        );
        assert_eq!(m[2].line, 11);
        let code =
            &u.code.as_bytes()[(m[2].start_byte - 1000) as usize..(m[2].end_byte - 1000) as usize];
        assert_eq!(code, b"Size");
        assert!(highlight_terms("the of a").is_empty());
        assert_eq!(
            highlight_terms("parseHttpHeader"),
            vec!["parsehttphead", "pars", "http", "header"]
        );
    }

    /// Highlights are BM25's terms (the index's analysis of the query, stop words aside), and
    /// a highlighted range is a whole token of the code whose term is one of them.
    #[test]
    fn highlights_are_what_bm25_matched() {
        for q in [
            "parse the HTTP header",
            "HTTPServer::new",
            "utf8Decode größe_berechnen",
            "how to read a file",
        ] {
            let bm25 = gnn_coder_index::tokenizer::analyze(q);
            let terms = highlight_terms(q);
            assert!(terms.iter().all(|t| bm25.contains(t)), "{q}: {terms:?}");
        }
        assert_eq!(
            highlight_terms("parse the HTTP header"),
            vec!["pars", "http", "header"]
        );
        let code = "def parse(raw):\n    sparse = parsed(HTTPServer(raw))\n    thread = 1\n";
        let u = unit("a.py", "parse", code);
        let text =
            |m: &MatchRange| &code[(m.start_byte - 1000) as usize..(m.end_byte - 1000) as usize];
        let found: Vec<&str> = match_ranges(&u, &highlight_terms("parsing http read"))
            .iter()
            .map(text)
            .collect();
        // `parse` and `parsed` stem like "parsing"; `sparse` and `thread` only contain the
        // letters; `HTTPServer` has the sub-word `HTTP`.
        assert_eq!(found, vec!["parse", "parsed", "HTTP"]);
        let camel = unit("a.py", "f", "parseHttpHeader()\n");
        let found: Vec<&str> = match_ranges(&camel, &highlight_terms("parse header"))
            .iter()
            .map(|m| &camel.code[(m.start_byte - 1000) as usize..(m.end_byte - 1000) as usize])
            .collect();
        assert_eq!(found, vec!["parse", "Header"]);
    }

    #[test]
    fn snippets_start_at_the_definition() {
        let mut u = unit("a.py", "f", "@cache\ndef f(x):\n\n        return x\n");
        u.def_line = 11;
        assert_eq!(snippet(&u, 3), vec!["def f(x):", "    return x"]);
    }

    /// `\r` and `\r\n` end lines as `\n` does, in snippets and highlights (issue 22).
    #[test]
    fn cr_line_endings_in_snippets_and_highlights() {
        for br in ["\n", "\r\n", "\r"] {
            let code = ["def read(path):", "    x = 1", "    return parse(path)", ""].join(br);
            let u = unit("a.py", "read", &code);
            assert_eq!(
                snippet(&u, 3),
                vec!["def read(path):", "    x = 1", "    return parse(path)"],
                "{br:?}"
            );
            let m = match_ranges(&u, &highlight_terms("parse"));
            assert_eq!(m.len(), 1, "{br:?}");
            assert_eq!(m[0].line, 12, "{br:?}");
        }
    }

    /// A container's text elides nested containers: highlights stop at the first elision,
    /// where its offsets stop matching the file.
    #[test]
    fn container_highlights_stop_at_an_elision() {
        let code = format!(
            "class Outer:\n    def parse(self): pass\n    class Inner:{}\n    def parse_more(self): pass",
            gnn_coder_syntax::ELISION_MARK
        );
        let mut u = unit("a.py", "Outer", &code);
        u.kind = "class".into();
        let m = match_ranges(&u, &highlight_terms("parse"));
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].line, 11);
        u.kind = "function".into();
        assert_eq!(match_ranges(&u, &highlight_terms("parse")).len(), 2);
    }
}
