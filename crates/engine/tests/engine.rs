//! The engine end to end on real files, lexical-only (no model needed): many repositories,
//! incremental refreshes, cancellation, the lock, and refused requests.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, ErrorKind, FileUpdate, IndexEvent, IndexOptions,
    IndexSummary, SearchRequest,
};

fn lexical() -> EngineOptions {
    EngineOptions {
        lexical_only: true,
        threads: 2,
        ..EngineOptions::default()
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn repo_a(root: &Path) {
    write(
        root,
        "sizes.py",
        "def parse_size(text):\n    \"\"\"Parse a size like 512K or 2M.\"\"\"\n    return int(text[:-1]) * 1024\n\n\ndef format_size(n):\n    return f\"{n}K\"\n",
    );
    write(
        root,
        "net/retry.py",
        "def retry_with_backoff(fn, attempts):\n    for i in range(attempts):\n        try:\n            return fn()\n        except IOError:\n            sleep(2 ** i)\n",
    );
    write(
        root,
        "tests/test_sizes.py",
        "def test_parse_size():\n    assert parse_size(\"512K\") == 512 * 1024\n",
    );
}

fn repo_b(root: &Path) {
    write(
        root,
        "src/lib.rs",
        "/// Levenshtein edit distance.\npub fn levenshtein(a: &str, b: &str) -> usize {\n    a.len().max(b.len())\n}\n\npub fn parse_size(s: &str) -> u64 {\n    s.len() as u64\n}\n",
    );
}

fn index(engine: &Engine, root: &Path, name: &str) -> IndexSummary {
    let mut opts = IndexOptions::new(root);
    opts.name = Some(name.into());
    engine
        .index_repository(&opts, &|_| {}, &CancellationToken::new())
        .unwrap()
}

fn symbols(engine: &Engine, req: &SearchRequest) -> Vec<String> {
    engine
        .search(req)
        .unwrap()
        .into_iter()
        .map(|h| format!("{}:{}", h.repository, h.unit.symbol))
        .collect()
}

#[test]
fn many_repositories_in_one_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, idx) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("idx"),
    );
    repo_a(&a);
    repo_b(&b);
    let engine = Engine::open_or_create(&idx, lexical(), false).unwrap();
    let sa = index(&engine, &a, "alpha");
    assert_eq!((sa.files, sa.units, sa.files_added), (3, 4, 3));
    let sb = index(&engine, &b, "beta");
    assert_eq!((sb.files, sb.units), (1, 2));

    let repos = engine.repositories().unwrap();
    let names: Vec<_> = repos
        .iter()
        .map(|r| (r.name.as_str(), r.units, r.files))
        .collect();
    assert_eq!(names, [("alpha", 4, 3), ("beta", 2, 1)]);
    assert!(
        repos
            .iter()
            .all(|r| r.indexed_unix > 0 && Path::new(&r.root).is_absolute())
    );

    let mut req = SearchRequest::new("parse size", 10);
    let all = symbols(&engine, &req);
    assert!(
        all.contains(&"alpha:parse_size".to_string())
            && all.contains(&"beta:parse_size".to_string()),
        "{all:?}"
    );
    req.repositories = vec!["beta".into()];
    assert_eq!(symbols(&engine, &req), ["beta:parse_size"]);
    req.repositories = vec!["gamma".into()];
    assert_eq!(engine.search(&req).unwrap_err().kind(), ErrorKind::NotFound);

    // The same name from another root is refused; the same root refreshes.
    let mut opts = IndexOptions::new(&b);
    opts.name = Some("alpha".into());
    let err = engine
        .index_repository(&opts, &|_| {}, &CancellationToken::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("already indexed"), "{err}");

    let removed = engine
        .remove_repository("alpha", &CancellationToken::new())
        .unwrap();
    assert_eq!(removed.units, 4);
    assert_eq!(engine.repositories().unwrap().len(), 1);
    assert_eq!(
        symbols(&engine, &SearchRequest::new("parse size", 10)),
        ["beta:parse_size"]
    );
    assert_eq!(
        engine
            .remove_repository("alpha", &CancellationToken::new())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // The index directory ignores itself.
    assert!(
        fs::read_to_string(idx.join(".gitignore"))
            .unwrap()
            .contains('*')
    );
}

#[test]
fn refresh_touches_only_what_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    // The index inside the root, as by default: it must not index itself.
    let idx = root.join(".gnn-coder");
    let engine = Engine::open_or_create(&idx, lexical(), false).unwrap();
    index(&engine, &root, "r");

    let again = index(&engine, &root, "r");
    assert_eq!(
        (
            again.files_unchanged,
            again.files_changed,
            again.files_added,
            again.files_removed,
            again.units_written
        ),
        (3, 0, 0, 0, 0),
        "{again:?}"
    );
    assert_eq!(again.bytes_parsed, 0, "unchanged files are not parsed");
    assert_eq!(again.units, 4);

    // Edit one file, add one, delete one.
    write(
        &root,
        "sizes.py",
        "def parse_size(text):\n    return int(text)\n",
    );
    write(
        &root,
        "net/http.py",
        "def fetch_url(url):\n    return urlopen(url).read()\n",
    );
    fs::remove_file(root.join("tests/test_sizes.py")).unwrap();
    let events: Mutex<Vec<IndexEvent>> = Mutex::new(Vec::new());
    let s = engine
        .index_repository(
            &IndexOptions::new(&root).named("r"),
            &|e| events.lock().unwrap().push(e.clone()),
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(
        (
            s.files_changed,
            s.files_added,
            s.files_removed,
            s.files_unchanged
        ),
        (1, 1, 1, 1),
        "{s:?}"
    );
    assert_eq!(
        s.units_written, 2,
        "one unit of the edited file, one of the new file"
    );
    assert_eq!(
        s.units_removed, 3,
        "two of the edited file, one of the deleted file"
    );
    assert_eq!(s.units, 3);
    let events = events.into_inner().unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, IndexEvent::Committed { .. }))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, IndexEvent::Progress(p) if p.files_total == 3))
    );

    assert_eq!(
        symbols(&engine, &SearchRequest::new("fetch url", 5)),
        ["r:fetch_url"]
    );
    assert!(
        !symbols(&engine, &SearchRequest::new("format_size", 5))
            .contains(&"r:format_size".to_string())
    );
    assert!(
        !symbols(&engine, &SearchRequest::new("test parse size", 5))
            .iter()
            .any(|s| s.contains("test_parse_size"))
    );
    assert_eq!(engine.repository("r").unwrap().units, 3);
}

#[test]
fn tests_rank_below_the_code_they_test() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    index(&engine, &root, "r");
    let mut req = SearchRequest::new("parse a size like 512K or 2M", 2);
    assert_eq!(symbols(&engine, &req)[0], "r:parse_size");
    // Asking for tests, or turning demotion off, ranks by the text alone.
    let hits = symbols(
        &engine,
        &SearchRequest::new("test that parse size handles 512K", 2),
    );
    assert_eq!(hits[0], "r:test_parse_size", "{hits:?}");
    req.demote_tests = false;
    assert_eq!(symbols(&engine, &req).len(), 2);
    // Hits say where the query's words are.
    let hit = &engine.search(&SearchRequest::new("parse size", 1)).unwrap()[0];
    assert!(!hit.matches.is_empty());
    let text = fs::read(root.join(&hit.unit.path)).unwrap();
    for m in &hit.matches {
        let word = String::from_utf8_lossy(&text[m.start_byte as usize..m.end_byte as usize])
            .to_lowercase();
        assert!(word == "parse" || word == "size", "{word}");
    }
}

#[test]
fn cancelled_runs_keep_the_last_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    index(&engine, &root, "r");
    write(&root, "sizes.py", "def totally_new_function():\n    pass\n");
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = engine
        .index_repository(&IndexOptions::new(&root).named("r"), &|_| {}, &cancel)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(
        symbols(&engine, &SearchRequest::new("parse size", 5))[0],
        "r:parse_size"
    );
    assert!(symbols(&engine, &SearchRequest::new("totally new", 5)).is_empty());
    // Cancelling from the progress callback, mid-run, also leaves a usable index, and the
    // next run completes the work.
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let _ = engine.index_repository(
        &IndexOptions::new(&root).named("r"),
        &move |_| c2.cancel(),
        &cancel,
    );
    let s = index(&engine, &root, "r");
    assert_eq!(s.units, 3, "sizes.py now holds one function");
    assert_eq!(
        symbols(&engine, &SearchRequest::new("totally new", 5)),
        ["r:totally_new_function"]
    );
}

#[test]
fn a_second_writer_is_refused_with_the_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let idx = tmp.path().join("idx");
    let engine = Engine::open_or_create(&idx, lexical(), false).unwrap();
    index(&engine, &root, "r");
    let store = gnn_coder_engine::EmbeddedStore::open(&idx).unwrap();
    let held = store.embedded_writer().unwrap();
    let err = engine
        .index_repository(
            &IndexOptions::new(&root).named("r"),
            &|_| {},
            &CancellationToken::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(
        err.to_string()
            .contains(&format!("PID {}", std::process::id())),
        "{err}"
    );
    // Searching is not blocked.
    assert_eq!(
        symbols(&engine, &SearchRequest::new("retry backoff", 1)),
        ["r:retry_with_backoff"]
    );
    drop(held);
    index(&engine, &root, "r");
}

#[test]
fn bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    index(&engine, &root, "r");
    for q in ["", "   ", "\n\t"] {
        let err = engine.search(&SearchRequest::new(q, 5)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{q:?}");
    }
    let long = "x".repeat(100_000);
    assert_eq!(
        engine
            .search(&SearchRequest::new(long, 5))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    let mut req = SearchRequest::new("parse", 5);
    req.languages = vec!["cobol".into()];
    assert_eq!(
        engine.search(&req).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut req = SearchRequest::new("parse", 5);
    req.path_globs = vec!["src/[".into()];
    assert_eq!(
        engine.search(&req).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let mut req = SearchRequest::new("parse", 5);
    req.mode = Some(gnn_coder_engine::Mode::Semantic);
    assert_eq!(
        engine.search(&req).unwrap_err().kind(),
        ErrorKind::Incompatible,
        "lexical-only index"
    );
    assert!(
        engine
            .search(&SearchRequest::new("parse", 0))
            .unwrap()
            .is_empty()
    );
    let missing = IndexOptions::new(tmp.path().join("nope"));
    let err = engine
        .index_repository(&missing, &|_| {}, &CancellationToken::new())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let mut bad_name = IndexOptions::new(&root);
    bad_name.name = Some("  ".into());
    assert_eq!(
        engine
            .index_repository(&bad_name, &|_| {}, &CancellationToken::new())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    // Opening what is not an index.
    let err = Engine::open(&tmp.path().join("nothing"), lexical()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn bad_options_are_refused_before_an_index_exists() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let with = |f: &dyn Fn(&mut IndexOptions)| {
        let mut o = IndexOptions::new(&root);
        f(&mut o);
        o
    };
    let file = root.join("sizes.py");
    let cases: Vec<(IndexOptions, ErrorKind, String)> = vec![
        (
            with(&|o| o.languages = vec!["cobol".into()]),
            ErrorKind::InvalidArgument,
            "unknown language \"cobol\"".into(),
        ),
        (
            with(&|o| o.exclude = vec!["src/**".into(), "a[".into()]),
            ErrorKind::InvalidArgument,
            "bad exclude glob \"a[\": ".into(),
        ),
        (
            with(&|o| o.commit_every = 0),
            ErrorKind::InvalidArgument,
            "commit_every must be at least 1".into(),
        ),
        (
            with(&|o| o.max_file_size = 0),
            ErrorKind::InvalidArgument,
            "max_file_size must be at least 1 byte".into(),
        ),
        (
            with(&|o| o.name = Some("\u{7}".into())),
            ErrorKind::InvalidArgument,
            "bad repository name".into(),
        ),
        (
            IndexOptions::new(tmp.path().join("missing")),
            ErrorKind::NotFound,
            format!(
                "{} is not a directory (it does not exist)",
                tmp.path().join("missing").display()
            ),
        ),
        (
            IndexOptions::new(&file),
            ErrorKind::InvalidArgument,
            format!("{} is not a directory", file.display()),
        ),
    ];
    let idx = tmp.path().join("idx");
    for (opts, kind, message) in &cases {
        let err = opts.validate().unwrap_err();
        assert_eq!(err.kind(), *kind, "{opts:?}: {err}");
        assert!(err.to_string().starts_with(message), "{opts:?}: {err}");
    }
    // A front end validates first: nothing is created for a bad request.
    assert!(!idx.exists(), "validation created the index directory");

    // The engine says the same when handed unchecked options.
    let engine = Engine::open_or_create(&idx, lexical(), false).unwrap();
    for (opts, kind, message) in &cases {
        let err = engine
            .index_repository(opts, &|_| {}, &CancellationToken::new())
            .unwrap_err();
        assert_eq!(err.kind(), *kind, "{opts:?}: {err}");
        assert!(err.to_string().starts_with(message), "{opts:?}: {err}");
    }

    // A good request: the root resolved once, the name derived from it.
    let dotted = IndexOptions::new(root.join("net").join(".."));
    let valid = dotted.validate().unwrap();
    assert_eq!(valid.root(), root.canonicalize().unwrap());
    assert_eq!(valid.name(), "repo");
    assert_eq!(valid.options().root, dotted.root);
    let s = engine
        .index_repository(&valid, &|_| {}, &CancellationToken::new())
        .unwrap();
    assert_eq!((s.repository.as_str(), s.files), ("repo", 3));
    assert_eq!(s.root, root.canonicalize().unwrap().to_string_lossy());
}

#[test]
fn a_deleted_directory_takes_the_files_below_it() {
    use gnn_coder_engine::{FileOutcome, FileReport, FileUpdate};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    write(&root, "pkg/a.py", "def alpha_one():\n    return 1\n");
    write(&root, "pkg/sub/b.py", "def beta_two():\n    return 2\n");
    write(&root, "pkgs.py", "def not_below_pkg():\n    return 3\n");
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    assert_eq!(index(&engine, &root, "r").files, 6);
    let cancel = CancellationToken::new();
    let deleted = |path: &str| FileUpdate {
        path: path.into(),
        deleted: true,
        ..FileUpdate::default()
    };
    let report = |path: &str, outcome: FileOutcome| FileReport {
        path: path.into(),
        outcome,
    };

    // Paths are checked as for files.
    for bad in ["../pkg", "/pkg", "."] {
        let err = engine
            .update_files("r", &[deleted(bad)], &cancel)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }

    // The directory is gone from disk: the path and each file below it are reported.
    fs::remove_dir_all(root.join("pkg")).unwrap();
    let s = engine
        .update_files("r", &[deleted("pkg/")], &cancel)
        .unwrap();
    assert_eq!(
        s.files,
        [
            report("pkg", FileOutcome::Removed),
            report("pkg/a.py", FileOutcome::Removed),
            report("pkg/sub/b.py", FileOutcome::Removed),
        ]
    );
    assert_eq!(s.units_removed, 2);
    let repo = engine.repository("r").unwrap();
    assert_eq!((repo.files, repo.units), (4, 5));
    assert!(symbols(&engine, &SearchRequest::new("alpha_one beta_two", 5)).is_empty());
    assert_eq!(
        symbols(&engine, &SearchRequest::new("not_below_pkg", 5)),
        ["r:not_below_pkg"]
    );

    // A file named after the directory in the same call is left to that later change; one
    // named before it goes with the directory.
    write(&root, "net/extra.py", "def gamma_three():\n    return 3\n");
    index(&engine, &root, "r");
    let later = FileUpdate {
        path: "net/extra.py".into(),
        contents: Some(b"def gamma_four():\n    return 4\n".to_vec()),
        ..FileUpdate::default()
    };
    let earlier = FileUpdate {
        path: "net/retry.py".into(),
        ..FileUpdate::default()
    };
    let s = engine
        .update_files("r", &[earlier, deleted("net"), later], &cancel)
        .unwrap();
    assert_eq!(
        s.files,
        [
            report("net", FileOutcome::Removed),
            report("net/retry.py", FileOutcome::Removed),
            report("net/extra.py", FileOutcome::Indexed { units: 1 }),
        ]
    );
    assert_eq!(
        symbols(&engine, &SearchRequest::new("gamma_four", 5)),
        ["r:gamma_four"]
    );
    assert!(symbols(&engine, &SearchRequest::new("retry_with_backoff", 5)).is_empty());
    let repo = engine.repository("r").unwrap();
    assert_eq!(repo.files, 4);

    // A deleted path with nothing indexed at or below it removes nothing.
    let s = engine
        .update_files("r", &[deleted("nowhere")], &cancel)
        .unwrap();
    assert_eq!(s.files, [report("nowhere", FileOutcome::Removed)]);
    assert_eq!(engine.repository("r").unwrap().files, 4);
}

/// A search whose token is cancelled (superseded by the next keystroke, or its client gone)
/// stops with `Cancelled` instead of answering; the same prepared search answers with a live
/// token.
#[test]
fn a_cancelled_search_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    index(&engine, &root, "r");
    let prepared = engine
        .prepare(&SearchRequest::new("parse a size", 2))
        .unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let err = engine
        .run_prepared_until(&prepared, &cancel)
        .expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let hits = engine
        .run_prepared_until(&prepared, &CancellationToken::new())
        .unwrap();
    assert_eq!(hits[0].unit.symbol, "parse_size");
}

fn lexical_req(q: &str, k: usize) -> SearchRequest {
    let mut r = SearchRequest::new(q, k);
    r.mode = Some(gnn_coder_engine::Mode::Lexical);
    r.demote_tests = false;
    r
}

/// Unsaved buffers: searched beside the committed index at once (an edit shows its new units
/// and hides the ones it removed, a deleted buffer hides its file), ranked with the index's own
/// BM25 statistics (an unchanged function scores as it did committed), not written until
/// flushed (another handle sees nothing), written by the flush, and dropped when closed.
#[test]
fn unsaved_buffers_are_searched_beside_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo_a(&root);
    let dir = tmp.path().join("idx");
    let engine = Engine::open_or_create(&dir, lexical(), false).unwrap();
    index(&engine, &root, "r");
    let before = engine.search(&lexical_req("parse size", 5)).unwrap();
    let committed_score = before
        .iter()
        .find(|h| h.unit.symbol == "parse_size")
        .unwrap()
        .score;

    let sizes = fs::read_to_string(root.join("sizes.py")).unwrap();
    let edited = sizes.replace("def format_size(n)", "def render_size_label(n)")
        + "\n\ndef overlay_only_helper(x):\n    return x\n";
    let s = engine
        .update_buffers(
            "r",
            &[
                FileUpdate {
                    path: "sizes.py".into(),
                    contents: Some(edited.clone().into_bytes()),
                    deleted: false,
                },
                FileUpdate {
                    path: "net/retry.py".into(),
                    contents: None,
                    deleted: true,
                },
            ],
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(s.units_written, 3);
    assert_eq!(engine.buffered_files(), 2);
    assert_eq!(
        symbols(&engine, &lexical_req("overlay only helper", 1)),
        ["r:overlay_only_helper"]
    );
    assert_eq!(
        symbols(&engine, &lexical_req("render size label", 1)),
        ["r:render_size_label"]
    );
    assert!(!symbols(&engine, &lexical_req("format size", 5)).contains(&"r:format_size".into()));
    assert!(symbols(&engine, &lexical_req("retry backoff", 5)).is_empty());
    // The buffer's unchanged function scores as its committed twin did.
    let after = engine.search(&lexical_req("parse size", 5)).unwrap();
    let twin = after
        .iter()
        .find(|h| h.unit.symbol == "parse_size")
        .unwrap();
    assert!(
        (twin.score - committed_score).abs() < 1e-4,
        "{} vs {committed_score}",
        twin.score
    );
    assert_eq!(twin.unit.path, "sizes.py");
    // Filters apply to buffers too.
    let mut rust_only = lexical_req("overlay only helper", 5);
    rust_only.languages = vec!["rust".into()];
    assert!(symbols(&engine, &rust_only).is_empty());

    // Not written: another handle on the index sees the committed files.
    {
        let other = Engine::open(&dir, lexical()).unwrap();
        assert!(symbols(&other, &lexical_req("overlay only helper", 5)).is_empty());
        assert_eq!(
            symbols(&other, &lexical_req("retry backoff", 1)),
            ["r:retry_with_backoff"]
        );
    }

    // Closing a buffer brings the committed file back.
    engine
        .update_buffers(
            "r",
            &[FileUpdate {
                path: "net/retry.py".into(),
                contents: None,
                deleted: false,
            }],
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(
        symbols(&engine, &lexical_req("retry backoff", 1)),
        ["r:retry_with_backoff"]
    );

    // The flush writes what is left; the overlay empties.
    assert_eq!(engine.flush_buffers(&CancellationToken::new()).unwrap(), 1);
    assert_eq!(engine.buffered_files(), 0);
    let other = Engine::open(&dir, lexical()).unwrap();
    assert_eq!(
        symbols(&other, &lexical_req("overlay only helper", 1)),
        ["r:overlay_only_helper"]
    );
    assert!(!symbols(&other, &lexical_req("format size", 5)).contains(&"r:format_size".into()));
    assert_eq!(
        fs::read_to_string(root.join("sizes.py")).unwrap(),
        sizes,
        "disk untouched"
    );
    // A buffer equal to what is committed is not overlaid.
    let s = engine
        .update_buffers(
            "r",
            &[FileUpdate {
                path: "sizes.py".into(),
                contents: Some(edited.into_bytes()),
                deleted: false,
            }],
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(engine.buffered_files(), 0, "{s:?}");
    // Bad paths are refused as by update_files.
    let err = engine
        .update_buffers(
            "r",
            &[FileUpdate {
                path: "../x.py".into(),
                contents: Some(b"def f(): pass\n".to_vec()),
                deleted: false,
            }],
            &CancellationToken::new(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // Removing the repository drops its buffers: nothing of it is found.
    engine
        .update_buffers(
            "r",
            &[FileUpdate {
                path: "late.py".into(),
                contents: Some(b"def late_buffer_fn(): pass\n".to_vec()),
                deleted: false,
            }],
            &CancellationToken::new(),
        )
        .unwrap();
    assert_eq!(engine.buffered_files(), 1);
    engine
        .remove_repository("r", &CancellationToken::new())
        .unwrap();
    assert_eq!(engine.buffered_files(), 0);
    assert!(symbols(&engine, &lexical_req("late buffer fn", 5)).is_empty());
}

/// Vector codes are a setting of the embedded index: asking a PostgreSQL store for them is
/// refused before anything is opened or removed (the address here is never contacted).
#[test]
fn vector_codes_are_refused_for_a_postgresql_store() {
    let location =
        gnn_coder_engine::StoreLocation::postgres("postgres://nobody@127.0.0.1:1/none").unwrap();
    for rebuild in [false, true] {
        let options = EngineOptions {
            vector_codes: Some(gnn_coder_engine::VectorCodes::Int4),
            ..lexical()
        };
        let Err(err) = Engine::open_or_create_at(&location, options, rebuild) else {
            panic!("vector codes for a PostgreSQL store were accepted");
        };
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("embedded index"), "{err}");
    }
}
