//! Fuzz targets of the wire (see `crates/syntax/tests/fuzz.rs` for how they run and how to run
//! them longer). Every request message, built from arbitrary values and then damaged as bytes,
//! goes through the service's conversion into a real lexical-only engine over a small indexed
//! repository: an answer or a refusal with a status, never a panic. Every message a server
//! sends is read by the client's conversions from arbitrary bytes the same way.

use std::path::PathBuf;
use std::sync::OnceLock;

use gnn_coder_engine::{CancellationToken, Engine, EngineOptions, FileUpdate, IndexOptions};
use gnn_coder_service::convert;
use gnn_coder_service::proto as pb;
use proptest::prelude::*;
use prost::Message;

fn cases() -> u32 {
    std::env::var("GNN_CODER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Strings a hostile client would send: path tricks, globs, unicode, control characters.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "",
            ".",
            "..",
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "./src/lib.py",
            "src//x.py",
            "**",
            "src/**/*.py",
            "[",
            "{a,b",
            "\0",
            "\\",
            "C:\\x",
            "python",
            "rust",
            "function",
            "callable",
            "all",
            "repo",
            "parse size",
            "日本",
            "\u{feff}",
            "lib.py",
            "x.py",
        ])
        .prop_map(String::from),
        "[a-z/._*]{0,12}",
    ]
}

fn words() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(word(), 0..3)
}

fn filters() -> impl Strategy<Value = Option<pb::Filters>> {
    prop::option::of(
        (words(), words(), words(), words()).prop_map(|(l, g, r, k)| pb::Filters {
            languages: l,
            path_globs: g,
            repositories: r,
            kinds: k,
        }),
    )
}

/// A message as encoded, then maybe damaged: bytes flipped or cut. A message that no longer
/// decodes is what the server's codec refuses; the rest is converted.
fn damaged<M: Message + Default>(
    m: M,
    edits: &[(prop::sample::Index, u8)],
    cut: bool,
) -> Option<M> {
    let mut b = m.encode_to_vec();
    for (i, v) in edits {
        if !b.is_empty() {
            let at = i.index(b.len());
            b[at] = *v;
        }
    }
    if cut && !b.is_empty() {
        b.truncate(b.len() / 2);
    }
    M::decode(b.as_slice()).ok()
}

/// A lexical-only engine over one indexed repository named "repo" (made once).
fn engine() -> &'static (tempfile::TempDir, Engine) {
    static ENGINE: OnceLock<(tempfile::TempDir, Engine)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root: PathBuf = dir.path().join("repo");
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(
            root.join("src/lib.py"),
            "def parse_size(text):\n    return int(text)\n",
        )
        .expect("write");
        std::fs::write(
            root.join("x.py"),
            "class Thing:\n    def run(self):\n        return 1\n",
        )
        .expect("write");
        let options = EngineOptions {
            lexical_only: true,
            threads: 1,
            ..EngineOptions::default()
        };
        let engine =
            Engine::open_or_create(&dir.path().join("idx"), options, false).expect("engine");
        let opts = IndexOptions::new(&root).named("repo");
        engine
            .index_repository(&opts, &|_| {}, &CancellationToken::new())
            .expect("index");
        (dir, engine)
    })
}

/// An engine error's status: a code the proto's table lists, and a bounded message.
fn check_status(err: &gnn_coder_engine::EngineError) {
    let s = convert::status(err);
    assert_ne!(s.code(), tonic::Code::Ok);
    assert!(
        s.message().len() <= convert::MAX_STATUS_MESSAGE,
        "{}",
        s.message()
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn search_requests(
        query in word(),
        top_k in prop_oneof![0u32..20, any::<u32>()],
        mode in prop_oneof![0i32..4, any::<i32>()],
        filters in filters(),
        dense in prop::option::of(any::<f32>()), keep_tests in any::<bool>(),
        snippet_lines in any::<u32>(),
        fusion in prop_oneof![0i32..3, any::<i32>()],
        rerank_depth in prop_oneof![Just(0u32), Just(1u32), 101u32..],
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3), cut in any::<bool>(),
    ) {
        let msg = pb::SearchRequest { query, top_k, mode, filters, dense_weight: dense, keep_tests, snippet_lines, session: String::new(), fusion, rerank_depth };
        let Some(msg) = damaged(msg, &edits, cut) else { return Ok(()) };
        let _ = convert::snippet_lines(msg.snippet_lines);
        if let Ok(req) = convert::search_request(&msg) {
            match engine().1.search(&req) {
                Ok(hits) => prop_assert!(hits.len() <= req.top_k),
                Err(e) => check_status(&e),
            }
        }
    }

    #[test]
    fn similar_requests(
        unit in prop::option::of((word(), word(), any::<u64>())),
        snippet in (word(), word()),
        top_k in prop_oneof![0u32..20, any::<u32>()],
        filters in filters(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3), cut in any::<bool>(),
    ) {
        let target = Some(match unit {
            Some((repository, path, line)) => pb::similar_request::Target::Unit(pb::UnitRef { repository, path, line }),
            None => pb::similar_request::Target::Snippet(pb::CodeSnippet { code: snippet.0, language: snippet.1 }),
        });
        let msg = pb::SimilarRequest { target, top_k, filters, snippet_lines: 3 };
        let Some(msg) = damaged(msg, &edits, cut) else { return Ok(()) };
        if let Ok(req) = convert::similar_request(&msg)
            && let Err(e) = engine().1.similar(&req)
        {
            check_status(&e);
        }
    }

    #[test]
    fn update_files_requests(
        changes in prop::collection::vec(
            (word(), prop::option::of(prop::collection::vec(any::<u8>(), 0..200)), any::<bool>()), 0..4),
        repository in prop_oneof![Just("repo".to_string()), word()],
    ) {
        let updates: Vec<FileUpdate> = changes
            .into_iter()
            .map(|(path, contents, deleted)| FileUpdate { path, contents, deleted })
            .collect();
        if let Err(e) = engine().1.update_files(&repository, &updates, &CancellationToken::new()) {
            check_status(&e);
        }
    }

    #[test]
    fn index_requests_are_validated(
        root in word(), name in word(), max_file_size in any::<u64>(), languages in words(),
        exclude in words(), commit_every in any::<u32>(),
    ) {
        // Validation only: nothing is indexed from an arbitrary root.
        let mut opts = IndexOptions::new(root);
        opts.name = (!name.is_empty()).then_some(name);
        opts.max_file_size = max_file_size;
        opts.languages = languages;
        opts.exclude = exclude;
        opts.commit_every = commit_every as usize;
        if let Err(e) = opts.validate() {
            check_status(&e);
        }
    }

    #[test]
    fn repository_names(name in word()) {
        if let Err(e) = engine().1.repository(&name) {
            check_status(&e);
        }
    }

    /// What a (hostile) server sends, read by the client's conversions.
    #[test]
    fn server_messages_from_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(e) = pb::IndexEvent::decode(bytes.as_slice()) {
            let _ = convert::stream_item(e);
        }
        if let Ok(h) = pb::Hit::decode(bytes.as_slice()) {
            let _ = convert::hit_from_wire(&h);
        }
        if let Ok(s) = pb::IndexSummary::decode(bytes.as_slice()) {
            let _ = convert::summary_from_wire(&s);
        }
        if let Ok(r) = pb::Repository::decode(bytes.as_slice()) {
            let _ = convert::repository_from_wire(&r);
        }
        if let Ok(s) = pb::Stats::decode(bytes.as_slice()) {
            let _ = convert::stats_from_wire(&s);
        }
        if let Ok(p) = pb::IndexProgress::decode(bytes.as_slice()) {
            let _ = convert::progress_from_wire(&p);
        }
    }
}
