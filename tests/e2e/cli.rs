//! End-to-end tests of the `gnn-coder` binary: index the polyglot fixture repository, search it
//! in every language, answer batches, and refuse bad input with a message instead of a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

mod support;
use support::model_dir;

const BIN: &str = env!("CARGO_BIN_EXE_gnn-coder");

/// Languages of the fixture: (language, directory holding its files, unit count).
const LANGUAGES: &[(&str, &str, usize)] = &[
    ("python", "python", 5),
    ("rust", "rust", 5),
    ("go", "go", 4),
    ("java", "java", 5),
    ("javascript", "javascript", 3),
    ("typescript", "typescript", 4),
    ("tsx", "typescript", 2),
    ("ruby", "ruby", 5),
    ("php", "php", 4),
    ("c", "c", 3),
    ("cpp", "cpp", 6),
];

/// One plain-English question per language and its answer: (language, query, path, symbol,
/// text of the definition line).
const QUESTIONS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "python",
        "compute the levenshtein edit distance between two strings",
        "python/text_utils.py",
        "levenshtein_distance",
        "def levenshtein_distance(",
    ),
    (
        "rust",
        "parse an ini config file",
        "rust/src/config.rs",
        "parse_ini",
        "pub fn parse_ini(",
    ),
    (
        "go",
        "retry a request with exponential backoff",
        "go/retry/retry.go",
        "RetryWithBackoff",
        "func RetryWithBackoff(",
    ),
    (
        "java",
        "evict the least recently used entry when the cache is full",
        "java/src/main/java/com/example/cache/LruCache.java",
        "LruCache.put",
        "public void put(",
    ),
    (
        "javascript",
        "debounce a function so it only runs after the calls stop",
        "javascript/src/timing.js",
        "debounce",
        "function debounce(",
    ),
    (
        "typescript",
        "topological sort of a dependency graph",
        "typescript/src/graph.ts",
        "topologicalSort",
        "export function topologicalSort(",
    ),
    (
        "tsx",
        "highlight the matching text",
        "typescript/src/components/SearchBox.tsx",
        "highlightMatches",
        "export function highlightMatches(",
    ),
    (
        "ruby",
        "format an amount of money with thousands separators",
        "ruby/lib/money.rb",
        "Money#format_currency",
        "def format_currency(",
    ),
    (
        "php",
        "check that an email address is valid",
        "php/src/Validator.php",
        "Validator::isValidEmail",
        "public function isValidEmail(",
    ),
    (
        "c",
        "encode bytes as base64",
        "c/src/base64.c",
        "base64_encode",
        "size_t base64_encode(",
    ),
    (
        "cpp",
        "shortest path in a weighted graph",
        "cpp/src/graph.cpp",
        "paths::dijkstra",
        "std::vector<double> dijkstra(",
    ),
];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/polyglot")
        .canonicalize()
        .expect("the polyglot fixture exists")
}

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run gnn-coder")
}

fn run(args: &[&str]) -> Output {
    run_in(&std::env::temp_dir(), args)
}

/// Runs several commands at once (process start-up dominates these tests) and returns the
/// stdout of each; all must succeed.
fn ok_all(commands: &[Vec<&str>]) -> Vec<String> {
    let children: Vec<_> = commands
        .iter()
        .map(|args| {
            Command::new(BIN)
                .args(args)
                .current_dir(std::env::temp_dir())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn gnn-coder")
        })
        .collect();
    children
        .into_iter()
        .zip(commands)
        .map(|(child, args)| {
            let out = child.wait_with_output().expect("wait for gnn-coder");
            assert!(
                out.status.success(),
                "gnn-coder {args:?} failed ({}):\n{}",
                out.status,
                text(&out.stderr)
            );
            text(&out.stdout)
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed and returns its stdout.
fn ok_in(cwd: &Path, args: &[&str]) -> String {
    let out = run_in(cwd, args);
    assert!(
        out.status.success(),
        "gnn-coder {args:?} failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(!text(&out.stderr).contains("panicked"));
    text(&out.stdout)
}

fn ok(args: &[&str]) -> String {
    ok_in(&std::env::temp_dir(), args)
}

/// Runs a command that must fail cleanly and returns its stderr.
fn fails_in(cwd: &Path, args: &[&str]) -> String {
    let out = run_in(cwd, args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "gnn-coder {args:?} succeeded:\n{}",
        text(&out.stdout)
    );
    // 1 for errors, 2 for usage errors; a signal (abort, stack overflow) has no code.
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "gnn-coder {args:?}: {} {stderr}",
        out.status
    );
    assert!(
        !stderr.contains("panicked"),
        "gnn-coder {args:?} panicked: {stderr}"
    );
    assert!(!stderr.trim().is_empty(), "gnn-coder {args:?}: no message");
    stderr
}

fn fails(args: &[&str]) -> String {
    fails_in(&std::env::temp_dir(), args)
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Indexes `root` into `index` with `--json` and returns the summary.
fn index(root: &Path, index: &Path) -> Value {
    json(
        ok(&[
            "index",
            "--lexical-only",
            s(root),
            "--index",
            s(index),
            "--json",
        ])
        .trim(),
    )
}

/// The fixture indexed once for the tests that only read it, and its summary.
fn shared() -> &'static (PathBuf, Value) {
    static SHARED: OnceLock<(PathBuf, Value)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-polyglot-index");
        let _ = fs::remove_dir_all(&dir);
        let summary = index(&fixture(), &dir);
        (dir, summary)
    })
}

fn shared_index() -> &'static str {
    s(&shared().0)
}

/// `search --json` on the shared index: the results of the query.
fn search(query: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["search", "--index", shared_index(), "--json"];
    args.extend_from_slice(extra);
    args.push(query);
    let out = json(ok(&args).trim());
    assert_eq!(out["query"], query);
    out["results"].as_array().expect("results").clone()
}

fn field<'a>(hit: &'a Value, name: &str) -> &'a str {
    hit[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} missing: {hit}"))
}

fn line(hit: &Value, name: &str) -> u64 {
    hit[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} missing: {hit}"))
}

/// 1-based number of the first line of `root/path` containing `needle`.
fn line_of(root: &Path, path: &str, needle: &str) -> u64 {
    let src = fs::read_to_string(root.join(path)).unwrap();
    let n = src
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in {path}"));
    n as u64 + 1
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every file under `dir` with its contents (to check that nothing changed).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                out.insert(entry.path(), fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn index_reports_every_language() {
    let (_, summary) = shared();
    assert_eq!(summary["files"], 11, "{summary}");
    let total: usize = LANGUAGES.iter().map(|l| l.2).sum();
    assert_eq!(summary["units"], total as u64, "{summary}");
    assert!(summary["bytes"].as_u64().unwrap() > 10_000, "{summary}");
    assert_eq!(summary["files_with_syntax_errors"], 0);
    assert_eq!(summary["root"], s(&fixture()));
    // README.md is the only file in no supported language.
    assert_eq!(
        summary["skipped"],
        serde_json::json!({"unsupported language": 1})
    );

    // Every language has all its units in the index: each lives under a directory named after
    // it, and the path is searchable, so naming every directory finds every unit.
    let dirs: Vec<&str> = LANGUAGES.iter().map(|l| l.1).collect();
    let hits = search(&dirs.join(" "), &["--kind", "all", "--top-k", "1000"]);
    assert_eq!(hits.len(), total, "{hits:#?}");
    let mut per_language: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &hits {
        let lang = field(h, "language");
        let &(_, dir, _) = LANGUAGES
            .iter()
            .find(|l| l.0 == lang)
            .unwrap_or_else(|| panic!("unexpected language {lang}"));
        assert!(field(h, "path").starts_with(&format!("{dir}/")), "{h}");
        *per_language.entry(lang).or_default() += 1;
    }
    let want: BTreeMap<&str, usize> = LANGUAGES.iter().map(|l| (l.0, l.2)).collect();
    assert_eq!(per_language, want);
}

#[test]
fn plain_english_questions_in_every_language() {
    // (Without --lang, the same questions are asked in `batch_queries`.)
    let root = fixture();
    let commands: Vec<Vec<&str>> = QUESTIONS
        .iter()
        .map(|q| {
            let index = shared_index();
            vec!["search", "--index", index, "--json", "--lang", q.0, q.1]
        })
        .collect();
    let outputs = ok_all(&commands);
    for (&(lang, question, path, symbol, def), out) in QUESTIONS.iter().zip(outputs) {
        let def_line = line_of(&root, path, def);
        let hits = json(out.trim())["results"].as_array().unwrap().clone();
        let top = hits.first().unwrap_or_else(|| panic!("{lang}: no hits"));
        assert_eq!(
            (field(top, "path"), field(top, "symbol")),
            (path, symbol),
            "{lang}: {question:?} -> {hits:#?}"
        );
        assert_eq!(field(top, "language"), lang);
        let (start, end) = (line(top, "start_line"), line(top, "end_line"));
        assert!(
            start <= def_line && def_line <= end,
            "{lang}: {start}..{end} misses the definition on line {def_line}"
        );
        assert!(
            hits.iter().all(|h| field(h, "language") == lang),
            "{hits:?}"
        );
    }
}

#[test]
fn identifier_queries() {
    for (query, symbol) in [
        ("levenshtein_distance", "levenshtein_distance"),
        ("isValidEmail", "Validator::isValidEmail"),
        ("RetryWithBackoff", "RetryWithBackoff"),
        ("crc32_checksum", "crc32_checksum"),
        ("format_currency", "Money#format_currency"),
        ("UnionFind::unite", "paths::UnionFind::unite"),
    ] {
        let hits = search(query, &[]);
        assert_eq!(field(&hits[0], "symbol"), symbol, "{query}: {hits:#?}");
    }
}

#[test]
fn path_glob_filter() {
    let hits = search("checksum string buffer", &["--path", "c/**"]);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| field(h, "path") == "c/src/base64.c"),
        "{hits:?}"
    );

    let hits = search("text", &["--path", "**/*.tsx", "--kind", "all"]);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| field(h, "path").ends_with(".tsx")),
        "{hits:?}"
    );

    // The same query without a glob reaches other files too.
    let unfiltered = search("text", &["--kind", "all", "--top-k", "100"]);
    assert!(
        unfiltered
            .iter()
            .any(|h| !field(h, "path").ends_with(".tsx"))
    );

    assert!(search("levenshtein", &["--path", "nowhere/**"]).is_empty());
}

#[test]
fn kind_filter() {
    let query = "least recently used cache";
    let default = search(query, &[]);
    assert!(!default.is_empty());
    assert!(
        default
            .iter()
            .all(|h| matches!(field(h, "kind"), "function" | "method")),
        "{default:?}"
    );
    let all = search(query, &["--kind", "all"]);
    assert!(
        all.iter()
            .any(|h| field(h, "symbol") == "LruCache" && field(h, "kind") == "class"),
        "{all:?}"
    );
    let classes = search(query, &["--kind", "class"]);
    assert_eq!(field(&classes[0], "symbol"), "LruCache");
    assert!(classes.iter().all(|h| field(h, "kind") == "class"));
    let structs = search("client timeout", &["--kind", "struct"]);
    assert_eq!(field(&structs[0], "symbol"), "Client");
    assert!(structs.iter().all(|h| field(h, "kind") == "struct"));
}

#[test]
fn top_k_limits_and_huge_top_k_is_fine() {
    assert_eq!(search("the", &["--kind", "all", "-k", "3"]).len(), 3);
    assert!(search("levenshtein", &["-k", "0"]).is_empty());
    let all = search("the", &["--kind", "all", "--top-k", "1000000000000"]);
    assert!(all.len() > 3 && all.len() <= 46, "{}", all.len());
    let globbed = search(
        "the",
        &["--kind", "all", "--top-k", "1000000000000", "--path", "**"],
    );
    assert_eq!(globbed.len(), all.len());
}

#[test]
fn human_output() {
    let out = ok(&[
        "search",
        "--index",
        shared_index(),
        "--lang",
        "rust",
        "parse an ini config file",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let first = lines[0];
    let def = line_of(&fixture(), "rust/src/config.rs", "pub fn parse_ini(");
    assert!(first.trim_start().starts_with("1. "), "{out}");
    let location = first
        .split_whitespace()
        .find(|w| w.starts_with("rust/src/config.rs:"))
        .unwrap_or_else(|| panic!("no path:start-end in {first:?}"));
    let (start, end) = location
        .trim_start_matches("rust/src/config.rs:")
        .split_once('-')
        .unwrap();
    let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
    assert!(start <= def && def <= end, "{first}");
    assert!(first.contains(" parse_ini "), "{first}");
    assert!(first.contains("(rust function)"), "{first}");
    // A snippet of the code follows, starting at the definition line.
    assert!(lines[1].contains("pub fn parse_ini("), "{out}");
    // Later ranks are numbered too.
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("2. ")),
        "{out}"
    );

    let none = ok(&["search", "--index", shared_index(), "xylophone"]);
    assert_eq!(none.trim(), "no results");
}

/// The phases named by `index`'s plain-text progress lines (`[  1.2s] embed: ...`), in order.
fn progress_phases(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split_once("s] ")?.1.split_once(':'))
        .map(|(phase, _)| phase.to_string())
        .collect()
}

/// A reader that goes away (`gnn-coder ... | head -1`) ends every command quietly with success,
/// as grep does: no "Broken pipe" message, no panic, exit status 0.
#[test]
fn a_closed_stdout_ends_quietly() {
    let tmp = tempfile::tempdir().unwrap();
    let queries = tmp.path().join("queries.jsonl");
    let lines: String = (0..400)
        .map(|i| format!("{{\"id\": {i}, \"query\": \"parse a size {i}\"}}\n"))
        .collect();
    fs::write(&queries, lines).unwrap();
    let index = shared_index();
    let commands: [&[&str]; 5] = [
        &["languages"],
        &["repos", "--index", index],
        &["info", "--index", index],
        &[
            "search",
            "--index",
            index,
            "--mode",
            "lexical",
            "parse size",
        ],
        &[
            "search",
            "--index",
            index,
            "--mode",
            "lexical",
            "--json",
            "--top-k",
            "50",
            "--queries",
            s(&queries),
        ],
    ];
    for args in commands {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before the first line is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(
            !stderr.contains("Broken pipe") && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn batch_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let queries = tmp.path().join("queries.jsonl");
    let mut input = String::new();
    let mut expected_ids = Vec::new();
    for (n, q) in QUESTIONS.iter().enumerate() {
        // Ids of any JSON type come back as they were.
        let id = if n % 2 == 0 {
            Value::from(format!("q-{}", q.0))
        } else {
            Value::from(n as u64 * 100)
        };
        input.push_str(&serde_json::json!({"id": id, "query": q.1}).to_string());
        input.push('\n');
        expected_ids.push(id);
        if n == 3 {
            input.push_str("\n   \n"); // blank lines are skipped
        }
    }
    let odd_id = serde_json::json!({"nested": [1, 2]});
    input.push_str(&serde_json::json!({"id": odd_id, "query": ";;;", "extra": true}).to_string());
    input.push('\n');
    expected_ids.push(odd_id);
    fs::write(&queries, input).unwrap();

    let out = ok(&[
        "search",
        "--index",
        shared_index(),
        "--queries",
        s(&queries),
        "--top-k",
        "10",
        "--json",
    ]);
    let lines: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(lines.len(), expected_ids.len(), "{out}");
    let root = fixture();
    let want_fields = [
        "end_line",
        "kind",
        "language",
        "path",
        "score",
        "start_line",
        "symbol",
    ];
    // The contract's fields, plus the repository and the matched ranges (for highlighting).
    let want_fields: Vec<&str> = {
        let mut v = want_fields.to_vec();
        v.extend(["matches", "repository"]);
        v.sort();
        v
    };
    for (n, (got, id)) in lines.iter().zip(&expected_ids).enumerate() {
        assert_eq!(&got["id"], id, "line {n}");
        let results = got["results"].as_array().unwrap();
        assert!(results.len() <= 10);
        for h in results {
            let mut keys: Vec<&str> = h.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, want_fields);
            let path = field(h, "path");
            assert!(!path.starts_with('/') && !path.contains(".."), "{path}");
            let file_lines = fs::read_to_string(root.join(path)).unwrap().lines().count() as u64;
            let (start, end) = (line(h, "start_line"), line(h, "end_line"));
            assert!(1 <= start && start <= end && end <= file_lines, "{h}");
            assert!(h["score"].as_f64().unwrap() > 0.0);
        }
        if let Some(q) = QUESTIONS.get(n) {
            assert_eq!(field(&results[0], "symbol"), q.3, "{}", q.1);
            assert_eq!(field(&results[0], "path"), q.2);
        } else {
            assert!(results.is_empty(), "punctuation-only query: {results:?}");
        }
    }
    // Scores are ranked.
    let first = lines[0]["results"].as_array().unwrap();
    assert!(first.len() > 1);
    for pair in first.windows(2) {
        assert!(pair[0]["score"].as_f64() >= pair[1]["score"].as_f64());
    }
}

#[test]
fn default_index_location_from_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_dir(&fixture(), &root);
    let first = json(ok_in(&root, &["index", "--lexical-only", ".", "--json"]).trim());
    let index_dir = root.join(".gnn-coder");
    assert!(index_dir.join("gnn-coder.json").is_file());

    // Searched from deep inside the repository, without --index.
    let cwd = root.join("java/src/main");
    let out = json(ok_in(&cwd, &["search", "--json", "levenshtein distance"]).trim());
    let top = &out["results"][0];
    assert_eq!(field(top, "path"), "python/text_utils.py");
    assert_eq!(field(top, "symbol"), "levenshtein_distance");
    let info = ok_in(&cwd, &["info"]);
    assert!(info.contains("units:      46"), "{info}");
    assert!(info.contains(s(&root.canonicalize().unwrap())), "{info}");

    // Re-indexing (from a subdirectory, naming the root) does not index the index.
    let second = json(ok_in(&cwd, &["index", "--lexical-only", s(&root), "--json"]).trim());
    for key in ["files", "units", "bytes", "skipped"] {
        assert_eq!(first[key], second[key], "{key}: {first} vs {second}");
    }
    let everything = json(
        ok_in(
            &cwd,
            &[
                "search",
                "--json",
                "--kind",
                "all",
                "-k",
                "1000",
                "gnn coder json gen lexical",
            ],
        )
        .trim(),
    );
    for h in everything["results"].as_array().unwrap() {
        assert!(!field(h, "path").starts_with(".gnn-coder"), "{h}");
    }
    // The refresh parsed nothing: every file was unchanged.
    assert_eq!(second["files_unchanged"], 11, "{second}");
    assert_eq!(second["bytes_parsed"], 0, "{second}");
    // The index ignores itself, so the user's `git status` stays clean.
    let ignore = fs::read_to_string(index_dir.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");
}

#[test]
fn languages_lists_every_language() {
    let out = ok(&["languages"]);
    for &(lang, _, _) in LANGUAGES {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().next() == Some(lang)),
            "{lang} missing:\n{out}"
        );
    }
    assert!(out.contains(".tsx") || out.contains(" tsx"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[test]
fn index_a_missing_root() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let missing = tmp.path().join("no-such-repo");
    let err = fails(&["index", "--lexical-only", s(&missing), "--index", s(&idx)]);
    assert!(
        err.contains("no-such-repo") && err.contains("not a directory"),
        "{err}"
    );
    assert!(!idx.exists(), "an index directory was created");
    // A file is not a root either.
    let file = tmp.path().join("file.py");
    fs::write(&file, "def f():\n    pass\n").unwrap();
    let err = fails(&["index", "--lexical-only", s(&file), "--index", s(&idx)]);
    assert!(err.contains("not a directory"), "{err}");
}

#[test]
fn index_into_a_foreign_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join("documents");
    fs::create_dir_all(foreign.join("sub")).unwrap();
    fs::write(foreign.join("thesis.txt"), "chapter one").unwrap();
    fs::write(foreign.join("sub/data.csv"), "a,b\n1,2\n").unwrap();
    let before = snapshot(&foreign);
    let err = fails(&[
        "index",
        "--lexical-only",
        s(&fixture()),
        "--index",
        s(&foreign),
    ]);
    assert!(err.contains("not a gnn-coder index"), "{err}");
    assert!(err.contains("documents"), "{err}");
    assert_eq!(
        snapshot(&foreign),
        before,
        "the foreign directory was modified"
    );
    assert_eq!(fs::read_dir(&foreign).unwrap().count(), 2);
}

#[test]
fn search_without_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails_in(tmp.path(), &["search", "levenshtein"]);
    assert!(
        err.contains("no index found") && err.contains("gnn-coder index"),
        "{err}"
    );
    let err = fails_in(tmp.path(), &["info"]);
    assert!(err.contains("no index found"), "{err}");
    let missing = tmp.path().join("missing-index");
    let err = fails(&["search", "--index", s(&missing), "levenshtein"]);
    assert!(
        err.contains("no index at") && err.contains("missing-index"),
        "{err}"
    );
    assert!(!missing.exists());
    // A directory that is not an index.
    let err = fails(&["search", "--index", s(tmp.path()), "levenshtein"]);
    assert!(err.contains("not a gnn-coder index"), "{err}");
}

#[test]
fn search_an_index_of_another_format_version() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    copy_dir(&shared().0, &idx);
    assert!(ok(&["search", "--index", s(&idx), "levenshtein"]).contains("levenshtein_distance"));
    let manifest = idx.join("gnn-coder.json");
    let mut value = json(&fs::read_to_string(&manifest).unwrap());
    let version = value["format_version"].as_u64().unwrap();
    value["format_version"] = (version + 1).into();
    fs::write(&manifest, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let before = snapshot(&idx);

    let err = fails(&["search", "--index", s(&idx), "levenshtein"]);
    assert!(
        err.contains(&format!("format version {}", version + 1)),
        "{err}"
    );
    assert!(err.contains("gnn-coder index"), "the fix is named: {err}");
    let err = fails(&["info", "--index", s(&idx)]);
    assert!(err.contains("format version"), "{err}");
    assert_eq!(snapshot(&idx), before, "a failed search changed the index");

    // Garbage instead of a manifest.
    fs::write(&manifest, "{ this is not json").unwrap();
    let err = fails(&["search", "--index", s(&idx), "levenshtein"]);
    assert!(err.contains("damaged"), "{err}");

    // Indexing into it is refused with the fix named; rebuilding repairs it.
    let err = fails(&["index", "--lexical-only", s(&fixture()), "--index", s(&idx)]);
    assert!(
        err.contains("damaged") && err.contains("--rebuild"),
        "{err}"
    );
    ok(&[
        "index",
        "--lexical-only",
        s(&fixture()),
        "--index",
        s(&idx),
        "--rebuild",
    ]);
    let hits = json(ok(&["search", "--index", s(&idx), "--json", "levenshtein"]).trim());
    assert_eq!(field(&hits["results"][0], "symbol"), "levenshtein_distance");
}

#[test]
fn malformed_queries_file() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = shared_index();
    let manifest = Path::new(idx).join("gnn-coder.json");
    let manifest_before = fs::read(&manifest).unwrap();
    let cases = [
        (
            "{\"id\": 1, \"query\": \"levenshtein\"}\n\n{\"id\": 2, \"query\": \n",
            ":3",
            "not valid JSON",
        ),
        (
            "{\"id\": 1, \"query\": \"levenshtein\"}\n{\"query\": \"x\"}\n",
            ":2",
            "no \"id\"",
        ),
        ("{\"id\": 1, \"query\": 42}\n", ":1", "no string \"query\""),
        ("[1, 2]\n", ":1", "no \"id\""),
    ];
    for (n, (content, at, what)) in cases.iter().enumerate() {
        let file = tmp.path().join(format!("q{n}.jsonl"));
        fs::write(&file, content).unwrap();
        let err = fails(&["search", "--index", idx, "--queries", s(&file), "--json"]);
        assert!(
            err.contains(&format!("q{n}.jsonl{at}")),
            "{content:?}: {err}"
        );
        assert!(err.contains(what), "{content:?}: {err}");
    }
    let missing = tmp.path().join("missing.jsonl");
    let err = fails(&["search", "--index", idx, "--queries", s(&missing), "--json"]);
    assert!(err.contains("missing.jsonl"), "{err}");
    // Invalid UTF-8 in the file.
    let binary = tmp.path().join("binary.jsonl");
    fs::write(&binary, b"{\"id\": 1, \"query\": \"\xff\xfe\"}\n").unwrap();
    let err = fails(&["search", "--index", idx, "--queries", s(&binary), "--json"]);
    assert!(err.contains("binary.jsonl:1"), "{err}");
    assert_eq!(fs::read(&manifest).unwrap(), manifest_before);
}

#[test]
fn bad_arguments() {
    let idx = shared_index();
    let tmp = tempfile::tempdir().unwrap();
    let queries = tmp.path().join("q.jsonl");
    fs::write(&queries, "{\"id\": 1, \"query\": \"x\"}\n").unwrap();

    let err = fails(&["search", "--index", idx, "--lang", "cobol", "sort"]);
    assert!(err.contains("unknown language \"cobol\""), "{err}");
    let err = fails(&["search", "--index", idx, "--path", "src/[", "sort"]);
    assert!(
        err.contains("invalid path glob") && err.contains("src/["),
        "{err}"
    );
    let err = fails(&[
        "search",
        "--index",
        idx,
        "--path",
        "{a,b",
        "--queries",
        s(&queries),
        "--json",
    ]);
    assert!(
        err.contains("invalid path glob") && !err.contains("panicked"),
        "{err}"
    );
    let err = fails(&["search", "--index", idx, "--kind", "widget", "sort"]);
    assert!(
        err.contains("unknown kind \"widget\"") && err.contains("callable"),
        "{err}"
    );
    let err = fails(&[
        "search",
        "--index",
        idx,
        "--queries",
        s(&queries),
        "--json",
        "sort",
    ]);
    assert!(err.contains("not both"), "{err}");
    let err = fails(&["search", "--index", idx]);
    assert!(err.contains("nothing to search for"), "{err}");
    let err = fails(&["search", "--index", idx, "--queries", s(&queries)]);
    assert!(err.contains("--json"), "{err}");
    let err = fails(&["search", "--index", idx, "--top-k", "-3", "sort"]);
    assert!(err.contains("top-k") || err.contains("-3"), "{err}");
    let err = fails(&["frobnicate"]);
    assert!(err.contains("frobnicate"), "{err}");

    let out = tmp.path().join("idx");
    let err = fails(&[
        "index",
        s(&fixture()),
        "--index",
        s(&out),
        "--lang",
        "cobol",
    ]);
    assert!(err.contains("unknown language \"cobol\""), "{err}");
    let err = fails(&[
        "index",
        s(&fixture()),
        "--index",
        s(&out),
        "--exclude",
        "a/[",
        "-q",
    ]);
    assert!(err.contains("a/["), "{err}");
    let err = fails(&[
        "index",
        s(&fixture()),
        "--index",
        s(&out),
        "--max-file-size",
        "lots",
    ]);
    assert!(err.contains("lots"), "{err}");
    assert!(
        !out.join("gnn-coder.json").exists(),
        "a failed index wrote a manifest"
    );

    // A failed rebuild over an existing index leaves it as it was.
    let existing = tmp.path().join("existing");
    copy_dir(&shared().0, &existing);
    let manifest = fs::read(existing.join("gnn-coder.json")).unwrap();
    let err = fails(&[
        "index",
        s(&fixture()),
        "--index",
        s(&existing),
        "--exclude",
        "a/[",
    ]);
    assert!(err.contains("a/["), "{err}");
    assert_eq!(fs::read(existing.join("gnn-coder.json")).unwrap(), manifest);
    let hits = json(ok(&["search", "--index", s(&existing), "--json", "parse_ini"]).trim());
    assert_eq!(field(&hits["results"][0], "symbol"), "parse_ini");
}

#[test]
fn a_repository_of_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    fs::create_dir_all(root.join("node_modules/left-pad")).unwrap();
    fs::create_dir_all(root.join("src")).unwrap();
    let w = |p: &str, bytes: &[u8]| fs::write(root.join(p), bytes).unwrap();

    w(
        "src/fake.py",
        b"\x7fELF\x02\x01\x01\x00\x00\x00def not_really_python():\n",
    );
    w("src/empty.py", b"");
    let mut huge = String::from("fn huge_file_function() {}\n");
    while huge.len() <= 2 << 20 {
        huge.push_str("// padding padding padding padding padding padding padding padding\n");
    }
    w("src/huge.rs", huge.as_bytes());
    w(
        "src/latin1.py",
        b"def caf\xe9_menu():\n    return '\xff\xfe'\n\n\ndef after_invalid_bytes():\n    return 1\n",
    );
    w(
        "src/broken.py",
        b"def good_before_syntax_error(x):\n    return x + 1\n\n\ndef broken(:\n    return = =\n\n\ndef good_after_syntax_error():\n    return 2\n",
    );
    // 10,000-deep nesting on short lines, so that the file is not taken for minified code.
    let nest = |open: &str, close: &str| {
        let line = |s: &str| format!("{}\n", s.repeat(50));
        (line(open).repeat(200), line(close).repeat(200))
    };
    let (parens_open, parens_close) = nest("(", ")");
    let (brackets_open, brackets_close) = nest("[", "]");
    let deep = format!(
        "function deeplyNestedExpression() {{\n  return {parens_open}1{parens_close};\n}}\n\nfunction afterDeepNesting() {{\n  return {brackets_open}{brackets_close};\n}}\n"
    );
    w("src/deep.js", deep.as_bytes());
    w(
        "node_modules/left-pad/index.js",
        b"function nodeModulesLeftPad(s, n) { return s.padStart(n); }\n",
    );
    w(".gitignore", b"secret_generated.py\n");
    w(
        "secret_generated.py",
        b"def gitignored_function():\n    pass\n",
    );
    w("src/app.min.js", b"function minifiedThing(){return 1}\n");
    w(
        "src/gen.go",
        b"// Code generated by protoc-gen-go. DO NOT EDIT.\n\npackage gen\n\nfunc GeneratedHelper() {}\n",
    );
    w(
        "src/ok.go",
        b"package ok\n\n// CheckedAddition adds two numbers.\nfunc CheckedAddition(a, b int) int { return a + b }\n",
    );

    let idx = tmp.path().join("idx");
    let summary = index(&root, &idx);
    // empty.py, latin1.py, broken.py, deep.js, ok.go.
    assert_eq!(summary["files"], 5, "{summary}");
    assert!(
        summary["files_with_syntax_errors"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    let skipped = &summary["skipped"];
    assert_eq!(skipped["binary"], 1, "{summary}");
    assert_eq!(skipped["too large"], 1, "{summary}");
    assert_eq!(skipped["minified"], 1, "{summary}");
    assert_eq!(skipped["generated"], 1, "{summary}");

    let find = |query: &str| -> Vec<String> {
        let out = json(
            ok(&[
                "search",
                "--index",
                s(&idx),
                "--json",
                "--kind",
                "all",
                query,
            ])
            .trim(),
        );
        out["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| field(h, "symbol").to_string())
            .collect()
    };
    assert_eq!(
        find("good_before_syntax_error")[0],
        "good_before_syntax_error"
    );
    assert_eq!(find("after_invalid_bytes")[0], "after_invalid_bytes");
    // The invalid byte is not part of the name as the parser sees it, but the unit is there.
    let menu = find("menu");
    assert!(
        menu.first().is_some_and(|m| m.ends_with("_menu")),
        "{menu:?}"
    );
    assert_eq!(find("CheckedAddition")[0], "CheckedAddition");
    assert!(find("deeplyNestedExpression").contains(&"deeplyNestedExpression".to_string()));
    for absent in [
        "not_really_python",
        "huge_file_function",
        "nodeModulesLeftPad",
        "gitignored_function",
        "minifiedThing",
        "GeneratedHelper",
    ] {
        let hits = find(absent);
        assert!(
            !hits.iter().any(|h| h == absent),
            "{absent} was indexed: {hits:?}"
        );
    }

    // The human summary names the skipped files and why.
    let idx2 = tmp.path().join("idx2");
    let out = run(&[
        "index",
        "--lexical-only",
        s(&root),
        "--index",
        s(&idx2),
        "-q",
    ]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("indexed 5 files"), "{err}");
    assert!(err.contains("src/huge.rs (too large"), "{err}");
    assert!(err.contains("src/fake.py (binary"), "{err}");
    assert!(err.contains("syntax errors"), "{err}");
    assert!(!err.contains("panicked"));
}

// ---------------------------------------------------------------------------------------------
// Semantic and hybrid search with the real pretrained model.

#[test]
fn semantic_and_hybrid_search_with_the_model() {
    let Some(model) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let root = fixture();
    let model_args = ["--model-dir", s(&model), "--weights", "none"];
    // `index ROOT --index DIR` with the model and `extra` flags.
    let index_with_model = |dir: &Path, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["index", s(&root), "--index", s(dir)];
        args.extend_from_slice(&model_args);
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect()
    };
    let run_owned = |args: Vec<String>| run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run_owned(index_with_model(&idx, &[]));
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("embedded 46 units"), "{stderr}");
    // Not a terminal: progress comes as plain lines naming the phase, in order.
    let phases = progress_phases(&stderr);
    let at = |p: &str| phases.iter().position(|x| x == p);
    assert!(
        at("embed").is_some() && at("embed") < at("write"),
        "{stderr}"
    );
    assert!(
        stderr.contains("untrained"),
        "the untrained head must be said: {stderr}"
    );
    // A refresh with nothing changed says so, not "embedded 0 units (0 units/s)".
    let again = text(&run_owned(index_with_model(&idx, &[])).stderr);
    assert!(
        again.contains("nothing new to embed") && !again.contains("units/s"),
        "{again}"
    );
    // A second writer is refused as locked, without talk of a run that never began.
    let held = fs::File::open(idx.join("writer.lock")).unwrap();
    held.lock().unwrap();
    let locked = run_owned(index_with_model(&idx, &[]));
    let locked_err = text(&locked.stderr);
    assert!(!locked.status.success(), "{locked_err}");
    assert!(locked_err.contains("locked"), "{locked_err}");
    assert!(
        !locked_err.contains("keeps its last commit"),
        "{locked_err}"
    );
    drop(held);
    // Switching kinds of index: each way says exactly what to run.
    let err = fails(&["index", s(&root), "--index", s(&idx), "--lexical-only"]);
    assert!(
        err.contains("drop --lexical-only") && err.contains("--rebuild"),
        "{err}"
    );
    let lex = tmp.path().join("lexical-then-vectors");
    let lexical = run(&["index", s(&root), "--index", s(&lex), "--lexical-only"]);
    let phases = progress_phases(&text(&lexical.stderr));
    assert!(phases.contains(&"write".to_string()) && !phases.contains(&"embed".to_string()));
    let refresh = run_owned(index_with_model(&lex, &[]));
    let note = text(&refresh.stderr);
    assert!(refresh.status.success(), "{note}");
    assert!(
        note.contains("lexical-only") && note.contains("add --rebuild"),
        "{note}"
    );
    assert!(
        run_owned(index_with_model(&lex, &["--rebuild"]))
            .status
            .success()
    );
    assert!(ok(&["info", "--index", s(&lex)]).contains("(384 dims)"));
    let info = ok(&["info", "--index", s(&idx)]);
    assert!(info.contains("(384 dims)"), "{info}");

    // Paraphrases that share almost no words with the code they should find.
    for mode in ["semantic", "hybrid"] {
        let out = run(&[
            "search",
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--weights",
            "none",
            "--mode",
            mode,
            "--json",
            "--lang",
            "python",
            "string similarity distance",
        ]);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("untrained"), "{mode}: {stderr}");
        let hits = json(text(&out.stdout).trim())["results"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(
            field(&hits[0], "symbol"),
            "levenshtein_distance",
            "{mode}: {hits:#?}"
        );
        assert!(hits.iter().all(|h| field(h, "language") == "python"));
        assert!(
            hits.windows(2)
                .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()),
            "{mode}: scores not sorted"
        );
    }

    // The batch contract holds in every mode, with one line per query in order.
    let queries = tmp.path().join("q.jsonl");
    fs::write(
        &queries,
        "{\"id\": 1, \"query\": \"edit distance of strings\"}\n{\"id\": \"b\", \"query\": \"parse an ini config file\"}\n",
    )
    .unwrap();
    let out = ok(&[
        "search",
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
        "--weights",
        "none",
        "--queries",
        s(&queries),
        "--top-k",
        "3",
        "--json",
    ]);
    let lines: Vec<Value> = out.lines().map(json).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[1]["id"], "b");
    assert_eq!(field(&lines[1]["results"][0], "symbol"), "parse_ini");

    // Asking a lexical-only index for semantic search is a clear error.
    let lex = tmp.path().join("lex");
    ok(&[
        "index",
        "--lexical-only",
        s(&root),
        "--index",
        s(&lex),
        "-q",
    ]);
    let err = fails(&[
        "search",
        "--index",
        s(&lex),
        "--model-dir",
        s(&model),
        "--weights",
        "none",
        "--mode",
        "semantic",
        "edit distance",
    ]);
    assert!(err.contains("holds no vectors"), "{err}");
    // ... while its default mode is lexical and works without the model.
    let out = ok(&[
        "search",
        "--index",
        s(&lex),
        "--json",
        "parse an ini config file",
    ]);
    assert!(out.contains("parse_ini"), "{out}");

    // A model directory that is not there is named in the error.
    let err = fails(&[
        "search",
        "--index",
        s(&idx),
        "--model-dir",
        "/nonexistent/model",
        "edit distance",
    ]);
    assert!(err.contains("fetch-model.sh"), "{err}");
}

/// `--vector-codes int4`: a new index stores four-bit codes (`rows.i4`, half the bytes of
/// int8 per vector), answers the paraphrase the int8 index answers, and keeps its codes: asking
/// an existing index for other codes is refused with what to run, `--rebuild` changes them.
#[test]
fn int4_vector_codes_are_chosen_when_an_index_is_created() {
    let Some(model) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = fixture();
    let model_args = ["--model-dir", s(&model), "--weights", "none"];
    let index = |dir: &Path, extra: &[&str]| -> Output {
        let mut args = vec!["index", s(&root), "--index", s(dir), "-q"];
        args.extend_from_slice(&model_args);
        args.extend_from_slice(extra);
        run(&args)
    };
    let (i8_dir, i4_dir) = (tmp.path().join("i8"), tmp.path().join("i4"));
    for (dir, extra) in [
        (&i8_dir, &[][..]),
        (&i4_dir, &["--vector-codes", "int4"][..]),
    ] {
        let out = index(dir, extra);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let rows =
        |dir: &Path, name: &str| fs::metadata(dir.join("vectors").join(name)).map(|m| m.len());
    let (b8, b4) = (
        rows(&i8_dir, "rows.i8").unwrap(),
        rows(&i4_dir, "rows.i4").unwrap(),
    );
    assert!(rows(&i4_dir, "rows.i8").is_err() && rows(&i8_dir, "rows.i4").is_err());
    // The same rows, 4 + 192 bytes each instead of 4 + 384.
    assert_eq!(b8 % 388, 0, "{b8}");
    assert_eq!(b4, b8 / 388 * 196, "{b4} vs {b8}");
    let info = ok(&["info", "--index", s(&i4_dir)]);
    assert!(info.contains("(384 dims) as int4"), "{info}");
    assert!(ok(&["info", "--index", s(&i8_dir)]).contains("(384 dims) as int8"));

    let top = |dir: &Path, query: &str| -> Vec<String> {
        let mut args = vec!["search", "--index", s(dir), "--mode", "semantic", "--json"];
        args.extend_from_slice(&model_args);
        args.extend_from_slice(&["--lang", "python", "-k", "3", query]);
        json(ok(&args).trim())["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| field(h, "symbol").to_string())
            .collect()
    };
    for query in ["string similarity distance", "parse an ini config file"] {
        let (a, b) = (top(&i8_dir, query), top(&i4_dir, query));
        assert_eq!(a.first(), b.first(), "{query}: int8 {a:?}, int4 {b:?}");
    }
    assert_eq!(
        top(&i4_dir, "string similarity distance")[0],
        "levenshtein_distance"
    );

    // Refreshing keeps the codes; other codes are refused, with what to run.
    let again = index(&i4_dir, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(ok(&["info", "--index", s(&i4_dir)]).contains("as int4"));
    let refused = index(&i4_dir, &["--vector-codes", "int8"]);
    let err = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds int4 vector codes, not int8")
            && err.contains("drop --vector-codes")
            && err.contains("--rebuild"),
        "{err}"
    );
    let rebuilt = index(&i4_dir, &["--vector-codes", "int8", "--rebuild"]);
    assert!(rebuilt.status.success(), "{}", text(&rebuilt.stderr));
    assert!(ok(&["info", "--index", s(&i4_dir)]).contains("as int8"));
    assert!(rows(&i4_dir, "rows.i4").is_err());

    // Usage errors: unknown codes, and codes for an index without vectors.
    let err = fails(&[
        "index",
        s(&root),
        "--index",
        s(&tmp.path().join("x")),
        "--vector-codes",
        "int2",
    ]);
    assert!(err.contains("not int8 or int4"), "{err}");
    let err = fails(&[
        "index",
        s(&root),
        "--index",
        s(&tmp.path().join("y")),
        "--vector-codes",
        "int4",
        "--lexical-only",
    ]);
    assert!(err.contains("--lexical-only"), "{err}");
    assert!(!tmp.path().join("x").exists() && !tmp.path().join("y").exists());
}

/// The binary carries its model (the committed `weights/gnn-coder`): copied away from the
/// checkout and run with no model flags or variables, it builds vectors with the shipped
/// weights (the same name as an index built from the checkout's files, so either searches the
/// other), and names commit and model in `--version`. A zero-shot model it cannot find is an
/// error, never an untrained stand-in.
#[test]
fn the_binary_carries_its_model() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("gnn-coder");
    fs::copy(BIN, &bin).unwrap();
    let away = tmp.path().join("elsewhere");
    fs::create_dir(&away).unwrap();
    let run_away = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .current_dir(&away)
            .env_remove("GNN_CODER_MODEL_DIR")
            .env_remove("GNN_CODER_WEIGHTS")
            .output()
            .unwrap();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok_, version, _) = run_away(&["--version"]);
    assert!(ok_, "{version}");
    assert!(
        version.contains("(commit ") && version.contains("model: gnn-coder v2.3"),
        "{version}"
    );
    assert!(version.contains("Apache License 2.0"), "{version}");
    let (ok_, notice, _) = run_away(&["notice"]);
    assert!(ok_ && notice.contains("all-MiniLM-L6-v2"), "{notice}");

    let idx = tmp.path().join("idx");
    let root = fixture();
    let (ok_, _, err) = run_away(&["index", s(&root), "--index", s(&idx)]);
    assert!(ok_, "{err}");
    assert!(
        !err.contains("lexical-only") && !err.contains("untrained"),
        "{err}"
    );
    let (_, info, _) = run_away(&["info", "--index", s(&idx)]);
    assert!(info.contains("gnn-coder-head(trained:"), "{info}");
    let (ok_, out, err) = run_away(&[
        "search",
        "--index",
        s(&idx),
        "--mode",
        "semantic",
        "--json",
        "--lang",
        "python",
        "string similarity distance",
    ]);
    assert!(ok_, "{err}");
    let hits = json(out.trim())["results"].as_array().unwrap().clone();
    assert_eq!(
        field(&hits[0], "symbol"),
        "levenshtein_distance",
        "{hits:#?}"
    );

    // An index built from the checkout's files is the same model to the copied binary.
    if let Some(model) = model_dir() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
        let idx2 = tmp.path().join("idx2");
        ok(&[
            "index",
            s(&root),
            "--index",
            s(&idx2),
            "--model-dir",
            s(&model),
            "--weights",
            s(&shipped),
        ]);
        let (ok_, _, err) = run_away(&[
            "search",
            "--index",
            s(&idx2),
            "--mode",
            "semantic",
            "edit distance",
        ]);
        assert!(ok_, "{err}");
        // The zero-shot model is one flag away, and is refused on an index of the trained one.
        let err = fails(&[
            "search",
            "--index",
            s(&idx2),
            "--model-dir",
            s(&model),
            "--weights",
            "none",
            "--mode",
            "semantic",
            "edit distance",
        ]);
        assert!(err.contains("--weights"), "{err}");
    }

    // The zero-shot model is asked for explicitly, and missing it is an error.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (ok_, _, err) = run_away(&[
        "index",
        s(&root),
        "--index",
        s(&tmp.path().join("idx3")),
        "--weights",
        "none",
        "--model-dir",
        s(&empty),
    ]);
    assert!(!ok_ && err.contains("model.safetensors"), "{err}");
}

/// Code→code search finds a copy with renamed identifiers at rank 1, from a location or a
/// snippet; a one-function edit re-embeds one function.
#[test]
fn similar_code_and_incremental_embedding_with_the_model() {
    let Some(model) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    copy_dir(&fixture(), &root);
    let copy = "def edit_cost(left, right):\n    if len(left) < len(right):\n        left, right = right, left\n    prev = list(range(len(right) + 1))\n    for x, cl in enumerate(left, start=1):\n        cur = [x]\n        for y, cr in enumerate(right, start=1):\n            cur.append(min(prev[y] + 1, cur[y - 1] + 1, prev[y - 1] + (cl != cr)))\n        prev = cur\n    return prev[-1]\n";
    fs::write(root.join("python/copied.py"), copy).unwrap();
    let idx = tmp.path().join("idx");
    let first = json(
        ok(&[
            "index",
            s(&root),
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
            "-q",
        ])
        .trim(),
    );
    assert_eq!(first["embeddings_computed"], first["units"], "{first}");

    let line = line_of(&root, "python/text_utils.py", "def levenshtein_distance(");
    let target = format!("python/text_utils.py:{line}");
    let out = json(
        ok(&[
            "similar",
            &target,
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
            "-k",
            "3",
        ])
        .trim(),
    );
    assert_eq!(
        field(&out["origin"], "symbol"),
        "levenshtein_distance",
        "{out}"
    );
    let top = &out["results"][0];
    assert_eq!(
        (field(top, "path"), field(top, "symbol")),
        ("python/copied.py", "edit_cost"),
        "{out}"
    );
    // The same unit named as a file on disk: an absolute path, or one relative to the current
    // directory, inside the indexed repository.
    let absolute = format!("{}:{line}", root.join("python/text_utils.py").display());
    let from_cwd = format!("text_utils.py:{line}");
    for (cwd, target) in [(tmp.path(), &absolute), (&root.join("python"), &from_cwd)] {
        let args = [
            "similar",
            target,
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
        ];
        let again = json(ok_in(cwd, &args).trim());
        assert_eq!(
            field(&again["origin"], "symbol"),
            "levenshtein_distance",
            "{again}"
        );
        assert_eq!(again["results"][0], out["results"][0], "{again}");
    }
    // From a snippet on stdin.
    let mut child = std::process::Command::new(BIN)
        .args([
            "similar",
            "-",
            "--lang",
            "python",
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
            "-k",
            "2",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), copy.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = json(text(&out.stdout).trim());
    let symbols: Vec<&str> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| field(h, "symbol"))
        .collect();
    assert!(
        symbols.contains(&"edit_cost") && symbols.contains(&"levenshtein_distance"),
        "{symbols:?}"
    );
    // Refused clearly.
    let err = fails(&[
        "similar",
        "python/text_utils.py:99999",
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
    ]);
    assert!(err.contains("no indexed unit contains"), "{err}");
    let err = fails(&["similar", "python/text_utils.py", "--index", s(&idx)]);
    assert!(err.contains("PATH:LINE"), "{err}");
    let err = fails(&["similar", "-", "--index", s(&idx)]);
    assert!(err.contains("--lang"), "{err}");

    // Edit one function: only it is embedded again.
    let file = root.join("python/text_utils.py");
    let text_before = fs::read_to_string(&file).unwrap();
    let edited = text_before.replace(
        "return slug.lower()",
        "return slug.lower().replace('--', '-')",
    );
    assert_ne!(edited, text_before);
    fs::write(&file, edited).unwrap();
    let second = json(
        ok(&[
            "index",
            s(&root),
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
            "-q",
        ])
        .trim(),
    );
    assert_eq!(second["files_changed"], 1, "{second}");
    assert_eq!(second["embeddings_computed"], 1, "{second}");
    assert!(
        second["embeddings_reused"].as_u64().unwrap() >= 3,
        "{second}"
    );
    assert_eq!(second["units"], first["units"]);
    let hits = json(
        ok(&[
            "search",
            "--index",
            s(&idx),
            "--model-dir",
            s(&model),
            "--json",
            "turn a title into a url slug",
        ])
        .trim(),
    );
    assert_eq!(field(&hits["results"][0], "symbol"), "slugify");
    // An empty question is refused, not answered.
    let err = fails(&[
        "search",
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
        "   ",
    ]);
    assert!(err.contains("empty"), "{err}");
    // A lexical-only index has no code vectors to compare.
    let lex = tmp.path().join("lex");
    ok(&["index", "--lexical-only", s(&root), "--index", s(&lex)]);
    let err = fails(&["similar", &target, "--index", s(&lex)]);
    assert!(
        err.contains("no vectors") && err.contains("--rebuild"),
        "{err}"
    );
    // `similar` has no --mode: the advice does not offer it one.
    assert!(!err.contains("or use --mode lexical"), "{err}");
}

/// Several repositories in one index from the command line: names, listing, filtering,
/// removing, and the errors a user meets on the way.
#[test]
fn many_repositories_from_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("shared.idx");
    let py = tmp.path().join("py-tools");
    copy_dir(&fixture().join("python"), &py);
    let rs = tmp.path().join("rs-tools");
    copy_dir(&fixture().join("rust"), &rs);
    ok(&["index", "--lexical-only", s(&py), "--index", s(&idx), "-q"]);
    ok(&[
        "index",
        "--lexical-only",
        s(&rs),
        "--index",
        s(&idx),
        "--name",
        "rusty",
        "-q",
    ]);
    let listed: Vec<Value> = ok(&["repos", "--index", s(&idx), "--json"])
        .lines()
        .map(json)
        .collect();
    let names: Vec<&str> = listed.iter().map(|r| field(r, "name")).collect();
    assert_eq!(names, ["py-tools", "rusty"]);
    assert!(listed.iter().all(|r| r["units"].as_u64().unwrap() > 0));
    let human = ok(&["repos", "--index", s(&idx)]);
    assert!(
        human.contains("rusty") && human.contains(s(&rs.canonicalize().unwrap())),
        "{human}"
    );

    let only = |repo: &str| -> Vec<Value> {
        let out = json(
            ok(&[
                "search",
                "--index",
                s(&idx),
                "--json",
                "--repo",
                repo,
                "-k",
                "50",
                "--kind",
                "all",
                "parse config distance",
            ])
            .trim(),
        );
        out["results"].as_array().unwrap().clone()
    };
    assert!(
        only("rusty")
            .iter()
            .all(|h| field(h, "repository") == "rusty" && field(h, "language") == "rust")
    );
    assert!(
        only("py-tools")
            .iter()
            .all(|h| field(h, "language") == "python")
    );
    let err = fails(&["search", "--index", s(&idx), "--repo", "nope", "x"]);
    assert!(
        err.contains("no repository named \"nope\"") && err.contains("gnn-coder repos"),
        "{err}"
    );
    // The same name from another root is refused; the index is untouched.
    let err = fails(&[
        "index",
        "--lexical-only",
        s(&py),
        "--index",
        s(&idx),
        "--name",
        "rusty",
    ]);
    assert!(err.contains("already indexed"), "{err}");

    let out = run(&["remove", "rusty", "--index", s(&idx)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("removed rusty"));
    let names: Vec<String> = ok(&["repos", "--index", s(&idx), "--json"])
        .lines()
        .map(|l| field(&json(l), "name").to_string())
        .collect();
    assert_eq!(names, ["py-tools"]);
    let err = fails(&["remove", "rusty", "--index", s(&idx)]);
    assert!(err.contains("no repository named"), "{err}");
    // An empty question is refused.
    let err = fails(&["search", "--index", s(&idx), ""]);
    assert!(err.contains("empty"), "{err}");
}

/// `search --rerank`: the cross-encoder corrects the order of a hybrid search's top hits with
/// its reading of question and code; the depth and the mode are checked.
#[test]
fn rerank_corrects_the_top_hits_of_a_hybrid_search() {
    let tmp = tempfile::tempdir().unwrap();
    let idx = tmp.path().join("idx");
    let out = run(&["index", s(&fixture()), "--index", s(&idx), "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let search = |question: &str, extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["search", "--index", s(&idx), "--json", "-k", "8"];
        args.extend_from_slice(extra);
        args.push(question);
        json(ok(&args).trim())["results"]
            .as_array()
            .unwrap()
            .clone()
    };
    let mut first_places = 0;
    for &(lang, question, path, symbol, _) in QUESTIONS {
        let plain = search(question, &["--lang", lang]);
        let hits = search(question, &["--lang", lang, "--rerank", "5"]);
        assert_eq!(hits.len(), plain.len(), "{lang}");
        // The same hits; the top five reordered, the rest as they were.
        let set = |hs: &[Value], n: usize| -> BTreeSet<String> {
            hs.iter()
                .take(n)
                .map(|h| field(h, "symbol").to_string())
                .collect()
        };
        let n = hits.len().min(5);
        assert_eq!(set(&hits, n), set(&plain, n), "{lang}");
        assert_eq!(hits[n..], plain[n..], "{lang}");
        assert!(
            hits[..n]
                .windows(2)
                .all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()),
            "{lang}"
        );
        let top = (field(&hits[0], "path"), field(&hits[0], "symbol"));
        first_places += usize::from(top == (path, symbol));
    }
    // The fixture's questions have clear answers: a correction keeps them first.
    assert!(
        first_places * 10 >= QUESTIONS.len() * 8,
        "{first_places} of {} first",
        QUESTIONS.len()
    );
    // Without a value: the default depth.
    assert!(!search("parse a size", &["--rerank", "--lang", "rust"]).is_empty());
    let idx = s(&idx);
    for bad in ["0", "101"] {
        let err = fails(&["search", "--index", idx, "--rerank", bad, "parse"]);
        assert!(
            err.contains("rerank depth must be between 1 and 100"),
            "{err}"
        );
    }
    let err = fails(&["search", "--index", idx, "--rerank=x", "parse"]);
    assert!(err.contains("--rerank"), "{err}");
    let err = fails(&[
        "search", "--index", idx, "--mode", "lexical", "--rerank", "5", "parse",
    ]);
    assert!(err.contains("corrects hybrid search"), "{err}");
}
