//! Between the wire and the engine: requests checked and turned into the engine's, results and
//! events into messages, errors into status codes. The one place that knows both sides.

use gnn_coder_engine::{
    EngineError, ErrorKind, Fusion, IndexEvent, IndexProgress, IndexSummary, KindFilter,
    MatchRange, Mode, RepoInfo, SearchHit, SearchRequest, SimilarRequest, SimilarTarget,
    StoreStats,
};
use tonic::Status;

use crate::proto as pb;

/// Longest status message the server sends, in bytes. A message that quotes client input (a
/// path, a name, a glob) would otherwise grow with it, and a `grpc-message` over the client's
/// header limit fails the call with a transport error instead of its status.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// `message` cut to at most [`MAX_STATUS_MESSAGE`] bytes, on a character boundary, saying how
/// long it was.
pub fn bounded_message(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message.into();
    }
    let suffix = format!("…({} bytes)", message.len());
    let mut end = MAX_STATUS_MESSAGE.saturating_sub(suffix.len());
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &message[..end]).into()
}

/// `status` with its message bounded ([`bounded_message`]); every status the service sends
/// passes here.
pub fn bounded(status: Status) -> Status {
    if status.message().len() <= MAX_STATUS_MESSAGE {
        return status;
    }
    Status::new(status.code(), bounded_message(status.message()))
}

/// The status code and (bounded) message of an engine error.
pub fn status(err: &EngineError) -> Status {
    let msg = bounded_message(&err.to_string()).into_owned();
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
        // The server's disk is full: a resource, not a failing backend to retry at once.
        ErrorKind::NoSpace => Status::resource_exhausted(msg),
        // A damaged index: the data cannot be read as it was written.
        ErrorKind::Damaged => Status::data_loss(msg),
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

fn fusion_of(f: i32) -> Result<Option<Fusion>, Status> {
    match pb::Fusion::try_from(f) {
        Ok(pb::Fusion::Unspecified) => Ok(None),
        Ok(pb::Fusion::Weighted) => Ok(Some(Fusion::Weighted)),
        Ok(pb::Fusion::Learned) => Ok(Some(Fusion::Learned)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown fusion {f}; use FUSION_WEIGHTED or FUSION_LEARNED"
        ))),
    }
}

fn fusion_to_wire(f: Option<Fusion>) -> pb::Fusion {
    match f {
        None => pb::Fusion::Unspecified,
        Some(Fusion::Weighted) => pb::Fusion::Weighted,
        Some(Fusion::Learned) => pb::Fusion::Learned,
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

/// The wire's mode of an optional engine mode (`None`: unspecified).
fn mode_option_to_wire(m: Option<Mode>) -> pb::Mode {
    m.map_or(pb::Mode::Unspecified, mode_to_wire)
}

/// `kinds` of a request (the engine's one parser of kind names; empty gives `default`).
pub fn kinds(kinds: &[String], default: KindFilter) -> Result<KindFilter, Status> {
    KindFilter::parse(kinds, default).map_err(|e| status(&e))
}

/// The words of a kind filter, as the wire spells them.
fn kinds_to_wire(k: &KindFilter) -> Vec<String> {
    match k {
        KindFilter::Callables => vec!["callable".into()],
        KindFilter::All => vec!["all".into()],
        KindFilter::Only(kinds) => kinds.iter().map(|k| k.as_str().to_string()).collect(),
    }
}

/// `top_k` of a request: 0 means the default 10. The engine checks it against the limits.
fn top_k(k: u32) -> usize {
    if k == 0 { 10 } else { k as usize }
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

/// A search request from the wire. Only what the wire alone can get wrong (an unknown mode
/// number, a kind word) is refused here; the engine checks the rest once, with the same
/// messages for every front end ([`gnn_coder_engine::Engine::prepare`]).
pub fn search_request(r: &pb::SearchRequest) -> Result<SearchRequest, Status> {
    let filters = r.filters.clone().unwrap_or_default();
    let mut req = SearchRequest::new(r.query.clone(), top_k(r.top_k));
    req.mode = mode_of(r.mode)?;
    req.kinds = kinds(&filters.kinds, KindFilter::Callables)?;
    req.languages = filters.languages;
    req.repositories = filters.repositories;
    req.path_globs = filters.path_globs;
    req.dense_weight = r.dense_weight;
    req.fusion = fusion_of(r.fusion)?;
    req.demote_tests = !r.keep_tests;
    req.rerank = (r.rerank_depth > 0).then_some(r.rerank_depth as usize);
    Ok(req)
}

/// The wire request of an engine search (for clients), with `snippet_lines` per hit.
pub fn search_request_to_wire(r: &SearchRequest, snippet_lines: u32) -> pb::SearchRequest {
    pb::SearchRequest {
        query: r.query.clone(),
        top_k: u32::try_from(r.top_k).unwrap_or(u32::MAX),
        mode: mode_option_to_wire(r.mode) as i32,
        filters: Some(pb::Filters {
            languages: r.languages.clone(),
            path_globs: r.path_globs.clone(),
            repositories: r.repositories.clone(),
            kinds: kinds_to_wire(&r.kinds),
        }),
        dense_weight: r.dense_weight,
        keep_tests: !r.demote_tests,
        snippet_lines,
        session: String::new(),
        fusion: fusion_to_wire(r.fusion) as i32,
        rerank_depth: r.rerank.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// A code→code request from the wire (the engine checks it, as for searches).
pub fn similar_request(r: &pb::SimilarRequest) -> Result<SimilarRequest, Status> {
    let target = match &r.target {
        None => {
            return Err(Status::invalid_argument(
                "give a target: a unit (repository, path, line) or a snippet (code, language)",
            ));
        }
        Some(pb::similar_request::Target::Unit(u)) => SimilarTarget::Unit {
            repository: (!u.repository.is_empty()).then(|| u.repository.clone()),
            path: u.path.trim_start_matches("./").to_string(),
            line: u.line,
        },
        Some(pb::similar_request::Target::Snippet(s)) => SimilarTarget::Snippet {
            code: s.code.clone(),
            language: s.language.clone(),
        },
    };
    let filters = r.filters.clone().unwrap_or_default();
    let mut req = SimilarRequest::new(target, top_k(r.top_k));
    req.kinds = kinds(&filters.kinds, KindFilter::All)?;
    req.languages = filters.languages;
    req.repositories = filters.repositories;
    req.path_globs = filters.path_globs;
    Ok(req)
}

/// The wire request of an engine code→code search (for clients).
pub fn similar_request_to_wire(r: &SimilarRequest, snippet_lines: u32) -> pb::SimilarRequest {
    let target = match &r.target {
        SimilarTarget::Unit {
            repository,
            path,
            line,
        } => pb::similar_request::Target::Unit(pb::UnitRef {
            repository: repository.clone().unwrap_or_default(),
            path: path.clone(),
            line: *line,
        }),
        SimilarTarget::Snippet { code, language } => {
            pb::similar_request::Target::Snippet(pb::CodeSnippet {
                code: code.clone(),
                language: language.clone(),
            })
        }
    };
    pb::SimilarRequest {
        target: Some(target),
        top_k: u32::try_from(r.top_k).unwrap_or(u32::MAX),
        filters: Some(pb::Filters {
            languages: r.languages.clone(),
            path_globs: r.path_globs.clone(),
            repositories: r.repositories.clone(),
            kinds: kinds_to_wire(&r.kinds),
        }),
        snippet_lines,
    }
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

/// A hit from the wire (for clients): the engine's hit, whose unit carries no code, and the
/// snippet lines the server cut.
pub fn hit_from_wire(h: &pb::Hit) -> (SearchHit, Vec<String>) {
    let hit = SearchHit {
        repository: h.repository.clone(),
        unit: gnn_coder_engine::UnitRecord {
            path: h.path.clone(),
            language: h.language.clone(),
            kind: h.kind.clone(),
            name: h
                .symbol
                .rsplit(['.', ':'])
                .next()
                .unwrap_or(&h.symbol)
                .to_string(),
            symbol: h.symbol.clone(),
            start_line: h.start_line,
            end_line: h.end_line,
            def_line: h.start_line,
            start_byte: 0,
            end_byte: 0,
            doc: None,
            code: String::new(),
        },
        score: h.score,
        matches: h
            .matches
            .iter()
            .map(|m| MatchRange {
                line: m.line,
                start_byte: m.start_byte,
                end_byte: m.end_byte,
            })
            .collect(),
    };
    (hit, h.snippet.clone())
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

/// What one message of an index stream means to a client: an event of the run, or the
/// summary that ends it.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Event(IndexEvent),
    Summary(IndexSummary),
}

/// An index stream's message from the wire (`None`: an empty message, to be skipped).
pub fn stream_item(e: pb::IndexEvent) -> Option<StreamItem> {
    use pb::index_event::Event;
    Some(match e.event? {
        Event::Progress(p) => StreamItem::Event(IndexEvent::Progress(progress_from_wire(&p))),
        Event::Skipped(f) => StreamItem::Event(IndexEvent::Skipped {
            path: f.path,
            reason: f.reason,
            detail: (!f.detail.is_empty()).then_some(f.detail),
        }),
        Event::Committed(c) => StreamItem::Event(IndexEvent::Committed { files: c.files }),
        Event::Summary(s) => StreamItem::Summary(summary_from_wire(&s)),
    })
}

/// The wire request of an index run (for clients): `root` as the server should see it, at
/// most one progress message per `progress_interval_ms`.
pub fn index_request_to_wire(
    options: &gnn_coder_engine::IndexOptions,
    root: String,
    progress_interval_ms: u32,
) -> pb::IndexRepositoryRequest {
    pb::IndexRepositoryRequest {
        root,
        name: options.name.clone().unwrap_or_default(),
        max_file_size: options.max_file_size,
        languages: options.languages.clone(),
        exclude_globs: options.exclude.clone(),
        commit_every: u32::try_from(options.commit_every).unwrap_or(u32::MAX),
        progress_interval_ms,
    }
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
            dim: s.embedding.as_ref().map_or(0, |e| e.dim as u32),
            trained: s.embedding.as_ref().is_some_and(|e| e.trained),
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
        embedding: (!s.model.is_empty()).then(|| gnn_coder_engine::EmbeddingInfo {
            model: s.model.clone(),
            dim: s.dim as usize,
            trained: s.trained,
        }),
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

/// Index statistics from the wire (for clients), with the model of the vectors.
pub fn stats_from_wire(s: &pb::Stats) -> (StoreStats, Option<gnn_coder_engine::EmbeddingInfo>) {
    (
        StoreStats {
            repositories: s.repositories,
            files: s.files,
            units: s.units,
            vectors: s.vectors,
            ann_vectors: s.ann_vectors,
            bytes_on_disk: s.bytes_on_disk,
        },
        (!s.model.is_empty()).then(|| gnn_coder_engine::EmbeddingInfo {
            model: s.model.clone(),
            dim: s.dim as usize,
            trained: s.trained,
        }),
    )
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        assert_eq!(bounded_message("short"), "short");
        let long = format!("bad path {}", "é".repeat(60_000));
        let cut = bounded_message(&long);
        assert!(cut.len() <= MAX_STATUS_MESSAGE, "{}", cut.len());
        assert!(cut.starts_with("bad path éé"));
        assert!(cut.ends_with(&format!("…({} bytes)", long.len())), "{cut}");
        let s = bounded(Status::invalid_argument(long));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().len() <= MAX_STATUS_MESSAGE);
        let e = EngineError::NotFound(format!("no repository {:?}", "r".repeat(100_000)));
        let s = status(&e);
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert!(s.message().len() <= MAX_STATUS_MESSAGE);
    }

    #[test]
    fn a_full_disk_is_resource_exhausted() {
        let e = EngineError::Store(gnn_coder_engine::StoreError::Io {
            path: "idx".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        let s = status(&e);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(s.message().contains("No space left on device"), "{s:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wire_errors_are_refused_here() {
        let ok = pb::SearchRequest {
            query: "parse a config file".into(),
            ..Default::default()
        };
        assert_eq!(search_request(&ok).unwrap().top_k, 10);
        // What only the wire can get wrong.
        let bad_mode = pb::SearchRequest {
            mode: 42,
            ..ok.clone()
        };
        assert_eq!(
            search_request(&bad_mode).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let bad_kind = pb::SearchRequest {
            filters: Some(pb::Filters {
                kinds: vec!["gadget".into()],
                ..Default::default()
            }),
            ..ok.clone()
        };
        let e = search_request(&bad_kind).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("unknown kind \"gadget\""), "{e:?}");
        assert_eq!(
            similar_request(&pb::SimilarRequest::default())
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        // The rest is the engine's to check: it reaches it unchanged.
        let empty = pb::SearchRequest {
            query: "  ".into(),
            top_k: 1000,
            ..ok.clone()
        };
        let req = search_request(&empty).unwrap();
        assert_eq!((req.query.as_str(), req.top_k), ("  ", 1000));
    }

    #[test]
    fn requests_round_trip_through_the_wire() {
        let mut req = SearchRequest::new("parse a size", 7);
        req.mode = Some(Mode::Semantic);
        req.languages = vec!["rust".into()];
        req.kinds = KindFilter::Only(vec![gnn_coder_syntax::UnitKind::Method]);
        req.repositories = vec!["alpha".into()];
        req.path_globs = vec!["src/**".into()];
        req.dense_weight = Some(0.25);
        req.fusion = Some(Fusion::Learned);
        req.demote_tests = false;
        req.rerank = Some(30);
        let back = search_request(&search_request_to_wire(&req, 3)).unwrap();
        assert_eq!(back.rerank, Some(30));
        assert_eq!(back.query, req.query);
        assert_eq!(back.top_k, req.top_k);
        assert_eq!(back.mode, req.mode);
        assert_eq!(back.languages, req.languages);
        assert_eq!(back.kinds, req.kinds);
        assert_eq!(back.repositories, req.repositories);
        assert_eq!(back.path_globs, req.path_globs);
        assert_eq!(back.dense_weight, req.dense_weight);
        assert_eq!(back.fusion, req.fusion);
        assert_eq!(back.demote_tests, req.demote_tests);
        for f in [None, Some(Fusion::Weighted)] {
            req.fusion = f;
            assert_eq!(
                search_request(&search_request_to_wire(&req, 3))
                    .unwrap()
                    .fusion,
                f
            );
        }
        let mut wire = search_request_to_wire(&req, 3);
        wire.fusion = 7;
        assert_eq!(
            search_request(&wire).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        for kinds in [KindFilter::Callables, KindFilter::All] {
            req.kinds = kinds.clone();
            let back = search_request(&search_request_to_wire(&req, 3)).unwrap();
            assert_eq!(back.kinds, kinds);
        }
        let sim = SimilarRequest::new(
            SimilarTarget::Unit {
                repository: Some("alpha".into()),
                path: "src/lib.rs".into(),
                line: 4,
            },
            5,
        );
        let back = similar_request(&similar_request_to_wire(&sim, 3)).unwrap();
        assert!(matches!(back.target, SimilarTarget::Unit { line: 4, .. }));
        assert_eq!(back.kinds, KindFilter::All);
    }
}
