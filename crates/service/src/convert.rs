//! Between the wire and the engine: requests checked and turned into the engine's, results and
//! events into messages, errors into status codes. The one place that knows both sides.

use gnn_coder_engine::{
    EngineError, ErrorKind, IndexEvent, IndexProgress, IndexSummary, KindFilter, MatchRange, Mode,
    RepoInfo, SearchHit, SearchRequest, SimilarRequest, SimilarTarget, StoreStats,
};
use gnn_coder_syntax::{Language, UnitKind};
use tonic::Status;

use crate::Limits;
use crate::proto as pb;

/// The status code and message of an engine error.
pub fn status(err: &EngineError) -> Status {
    let msg = err.to_string();
    match err.kind() {
        ErrorKind::NotFound => Status::not_found(msg),
        ErrorKind::InvalidArgument => Status::invalid_argument(msg),
        ErrorKind::Locked => match err {
            // Another job of this server works on the repository.
            EngineError::Busy(_) => Status::aborted(msg),
            // Another process writes the index.
            _ => Status::unavailable(msg),
        },
        ErrorKind::Incompatible | ErrorKind::ModelMissing => Status::failed_precondition(msg),
        ErrorKind::Unavailable => Status::unavailable(msg),
        ErrorKind::Cancelled => Status::cancelled(msg),
        ErrorKind::Internal => Status::internal(msg),
    }
}

fn mode_of(m: i32) -> Result<Option<Mode>, Status> {
    match pb::Mode::try_from(m) {
        Ok(pb::Mode::Unspecified) => Ok(None),
        Ok(pb::Mode::Lexical) => Ok(Some(Mode::Lexical)),
        Ok(pb::Mode::Semantic) => Ok(Some(Mode::Semantic)),
        Ok(pb::Mode::Hybrid) => Ok(Some(Mode::Hybrid)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown mode {m}; use MODE_LEXICAL, MODE_SEMANTIC or MODE_HYBRID"
        ))),
    }
}

/// The wire's mode of an engine mode.
pub fn mode_to_wire(m: Mode) -> pb::Mode {
    match m {
        Mode::Lexical => pb::Mode::Lexical,
        Mode::Semantic => pb::Mode::Semantic,
        Mode::Hybrid => pb::Mode::Hybrid,
    }
}

/// `kinds` of a request: empty gives `default`.
pub fn kinds(kinds: &[String], default: KindFilter) -> Result<KindFilter, Status> {
    if kinds.is_empty() {
        return Ok(default);
    }
    let mut only = Vec::new();
    for k in kinds {
        match k.as_str() {
            "callable" | "callables" => return Ok(KindFilter::Callables),
            "all" | "any" => return Ok(KindFilter::All),
            other => only.push(UnitKind::parse(other).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown kind {other:?}; use callable, all, or one of: {}",
                    UnitKind::ALL.map(|k| k.as_str()).join(", ")
                ))
            })?),
        }
    }
    Ok(KindFilter::Only(only))
}

fn check_filters(f: &pb::Filters) -> Result<(), Status> {
    for lang in &f.languages {
        Language::by_name(lang)
            .map_err(|_| Status::invalid_argument(format!("unknown language {lang:?}")))?;
    }
    for g in &f.path_globs {
        globset::Glob::new(g).map_err(|e| {
            Status::invalid_argument(format!("invalid path glob {g:?}: {}", e.kind()))
        })?;
    }
    if f.languages.len() + f.path_globs.len() + f.repositories.len() + f.kinds.len() > 256 {
        return Err(Status::invalid_argument("more than 256 filter values"));
    }
    Ok(())
}

fn top_k(k: u32, limits: &Limits) -> Result<usize, Status> {
    let k = if k == 0 { 10 } else { k as usize };
    if k > limits.max_top_k {
        return Err(Status::invalid_argument(format!(
            "top_k {k} is out of range; this server answers 1 to {}",
            limits.max_top_k
        )));
    }
    Ok(k)
}

/// Lines of snippet per hit.
pub fn snippet_lines(n: u32) -> Result<usize, Status> {
    match n {
        0 => Ok(3),
        1..=50 => Ok(n as usize),
        _ => Err(Status::invalid_argument(
            "snippet_lines is at most 50 (0: the default 3)",
        )),
    }
}

/// A checked search request.
pub fn search_request(r: &pb::SearchRequest, limits: &Limits) -> Result<SearchRequest, Status> {
    if r.query.trim().is_empty() {
        return Err(Status::invalid_argument("the query is empty"));
    }
    if r.query.len() > limits.max_query_bytes {
        return Err(Status::invalid_argument(format!(
            "the query is {} bytes long; this server's limit is {}",
            r.query.len(),
            limits.max_query_bytes
        )));
    }
    let filters = r.filters.clone().unwrap_or_default();
    check_filters(&filters)?;
    if let Some(w) = r.dense_weight
        && !(0.0..=1.0).contains(&w)
    {
        return Err(Status::invalid_argument(
            "dense_weight must be between 0 and 1",
        ));
    }
    let mut req = SearchRequest::new(r.query.clone(), top_k(r.top_k, limits)?);
    req.mode = mode_of(r.mode)?;
    req.languages = filters.languages;
    req.kinds = kinds(&filters.kinds, KindFilter::Callables)?;
    req.repositories = filters.repositories;
    req.path_globs = filters.path_globs;
    req.dense_weight = r.dense_weight;
    req.demote_tests = !r.keep_tests;
    Ok(req)
}

/// A checked code→code request.
pub fn similar_request(r: &pb::SimilarRequest, limits: &Limits) -> Result<SimilarRequest, Status> {
    let target = match &r.target {
        None => {
            return Err(Status::invalid_argument(
                "give a target: a unit (repository, path, line) or a snippet (code, language)",
            ));
        }
        Some(pb::similar_request::Target::Unit(u)) => {
            if u.path.is_empty() || u.line == 0 {
                return Err(Status::invalid_argument(
                    "a unit target needs a path and a 1-based line",
                ));
            }
            SimilarTarget::Unit {
                repository: (!u.repository.is_empty()).then(|| u.repository.clone()),
                path: u.path.trim_start_matches("./").to_string(),
                line: u.line,
            }
        }
        Some(pb::similar_request::Target::Snippet(s)) => {
            if s.code.trim().is_empty() {
                return Err(Status::invalid_argument("the snippet is empty"));
            }
            Language::by_name(&s.language).map_err(|_| {
                Status::invalid_argument(format!("unknown language {:?}", s.language))
            })?;
            SimilarTarget::Snippet {
                code: s.code.clone(),
                language: s.language.clone(),
            }
        }
    };
    let filters = r.filters.clone().unwrap_or_default();
    check_filters(&filters)?;
    let mut req = SimilarRequest::new(target, top_k(r.top_k, limits)?);
    req.languages = filters.languages;
    req.kinds = kinds(&filters.kinds, KindFilter::All)?;
    req.repositories = filters.repositories;
    req.path_globs = filters.path_globs;
    Ok(req)
}

fn match_range(m: &MatchRange) -> pb::MatchRange {
    pb::MatchRange {
        line: m.line,
        start_byte: m.start_byte,
        end_byte: m.end_byte,
    }
}

/// A hit on the wire, with `lines` of snippet.
pub fn hit(h: &SearchHit, lines: usize) -> pb::Hit {
    let u = &h.unit;
    pb::Hit {
        repository: h.repository.clone(),
        path: u.path.clone(),
        symbol: u.symbol.clone(),
        kind: u.kind.clone(),
        language: u.language.clone(),
        start_line: u.start_line,
        end_line: u.end_line,
        score: h.score,
        snippet: gnn_coder_engine::snippet(u, lines),
        matches: h.matches.iter().map(match_range).collect(),
    }
}

/// Progress from the wire (for clients that draw it as the local command does).
pub fn progress_from_wire(p: &pb::IndexProgress) -> IndexProgress {
    IndexProgress {
        files_total: p.files_total,
        files_done: p.files_done,
        files_unchanged: p.files_unchanged,
        units: p.units,
        units_written: p.units_written,
        embeddings_computed: p.embeddings_computed,
        embeddings_reused: p.embeddings_reused,
        bytes: p.bytes,
    }
}

/// An index event on the wire.
pub fn event(e: &IndexEvent) -> pb::IndexEvent {
    use pb::index_event::Event;
    let event = match e {
        IndexEvent::Progress(p) => Event::Progress(pb::IndexProgress {
            files_total: p.files_total,
            files_done: p.files_done,
            files_unchanged: p.files_unchanged,
            units: p.units,
            units_written: p.units_written,
            embeddings_computed: p.embeddings_computed,
            embeddings_reused: p.embeddings_reused,
            bytes: p.bytes,
        }),
        IndexEvent::Skipped {
            path,
            reason,
            detail,
        } => Event::Skipped(pb::SkippedFile {
            path: path.clone(),
            reason: reason.clone(),
            detail: detail.clone().unwrap_or_default(),
        }),
        IndexEvent::Committed { files } => Event::Committed(pb::Committed { files: *files }),
    };
    pb::IndexEvent { event: Some(event) }
}

/// The summary on the wire.
pub fn summary(s: &IndexSummary) -> pb::IndexEvent {
    pb::IndexEvent {
        event: Some(pb::index_event::Event::Summary(pb::IndexSummary {
            repository: s.repository.clone(),
            root: s.root.clone(),
            head: s.head.clone().unwrap_or_default(),
            files: s.files,
            units: s.units,
            files_added: s.files_added,
            files_changed: s.files_changed,
            files_removed: s.files_removed,
            files_unchanged: s.files_unchanged,
            units_written: s.units_written,
            units_removed: s.units_removed,
            embeddings_computed: s.embeddings_computed,
            embeddings_reused: s.embeddings_reused,
            bytes: s.bytes,
            bytes_parsed: s.bytes_parsed,
            files_with_syntax_errors: s.files_with_syntax_errors,
            skipped: s.skipped.clone().into_iter().collect(),
            seconds: s.seconds,
            embed_seconds: s.embed_seconds,
            model: s
                .embedding
                .as_ref()
                .map(|e| e.model.clone())
                .unwrap_or_default(),
        })),
    }
}

/// A summary from the wire (for clients that print it as the local command does).
pub fn summary_from_wire(s: &pb::IndexSummary) -> IndexSummary {
    IndexSummary {
        repository: s.repository.clone(),
        root: s.root.clone(),
        head: (!s.head.is_empty()).then(|| s.head.clone()),
        files: s.files,
        units: s.units,
        files_added: s.files_added,
        files_changed: s.files_changed,
        files_removed: s.files_removed,
        files_unchanged: s.files_unchanged,
        units_written: s.units_written,
        units_removed: s.units_removed,
        embeddings_computed: s.embeddings_computed,
        embeddings_reused: s.embeddings_reused,
        bytes: s.bytes,
        bytes_parsed: s.bytes_parsed,
        files_with_syntax_errors: s.files_with_syntax_errors,
        skipped: s.skipped.clone().into_iter().collect(),
        seconds: s.seconds,
        embed_seconds: s.embed_seconds,
        embedding: None,
    }
}

/// A repository on the wire.
pub fn repository(r: &RepoInfo) -> pb::Repository {
    pb::Repository {
        name: r.name.clone(),
        root: r.root.clone(),
        head: r.head.clone().unwrap_or_default(),
        indexed_unix: r.indexed_unix,
        files: r.files,
        units: r.units,
        bytes: r.bytes,
        skipped: r.skipped.clone().into_iter().collect(),
    }
}

/// A repository from the wire.
pub fn repository_from_wire(r: &pb::Repository) -> RepoInfo {
    RepoInfo {
        name: r.name.clone(),
        root: r.root.clone(),
        head: (!r.head.is_empty()).then(|| r.head.clone()),
        indexed_unix: r.indexed_unix,
        files: r.files,
        units: r.units,
        bytes: r.bytes,
        skipped: r.skipped.clone().into_iter().collect(),
    }
}

/// Index statistics on the wire.
pub fn stats(s: &StoreStats, embedding: Option<&gnn_coder_engine::EmbeddingInfo>) -> pb::Stats {
    pb::Stats {
        repositories: s.repositories,
        files: s.files,
        units: s.units,
        vectors: s.vectors,
        ann_vectors: s.ann_vectors,
        bytes_on_disk: s.bytes_on_disk,
        model: embedding.map(|e| e.model.clone()).unwrap_or_default(),
        format_version: gnn_coder_engine::FORMAT_VERSION,
        dim: embedding.map_or(0, |e| e.dim as u32),
        trained: embedding.is_some_and(|e| e.trained),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_are_refused_with_invalid_argument() {
        let limits = Limits::default();
        let ok = pb::SearchRequest {
            query: "parse a config file".into(),
            ..Default::default()
        };
        assert_eq!(search_request(&ok, &limits).unwrap().top_k, 10);
        let cases = [
            pb::SearchRequest {
                query: "  ".into(),
                ..ok.clone()
            },
            pb::SearchRequest {
                top_k: 1000,
                ..ok.clone()
            },
            pb::SearchRequest {
                mode: 42,
                ..ok.clone()
            },
            pb::SearchRequest {
                query: "x".repeat(10_000),
                ..ok.clone()
            },
            pb::SearchRequest {
                dense_weight: Some(2.0),
                ..ok.clone()
            },
            pb::SearchRequest {
                filters: Some(pb::Filters {
                    languages: vec!["cobol".into()],
                    ..Default::default()
                }),
                ..ok.clone()
            },
            pb::SearchRequest {
                filters: Some(pb::Filters {
                    path_globs: vec!["src/[".into()],
                    ..Default::default()
                }),
                ..ok.clone()
            },
            pb::SearchRequest {
                filters: Some(pb::Filters {
                    kinds: vec!["gadget".into()],
                    ..Default::default()
                }),
                ..ok.clone()
            },
        ];
        for c in cases {
            let e = search_request(&c, &limits).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{c:?}");
        }
        let none = pb::SimilarRequest::default();
        assert_eq!(
            similar_request(&none, &limits).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
