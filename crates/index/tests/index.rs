//! Building, searching, rebuilding and refusing bad indexes, with hand-made code units.

use std::fs;
use std::path::{Path, PathBuf};

use gnn_coder_index::{
    BuildStats, FORMAT_VERSION, Hit, IndexBuilder, IndexError, KindFilter, MANIFEST_FILE, Manifest,
    SearchIndex, SearchRequest,
};
use gnn_coder_syntax::{CodeUnit, UnitKind};

/// A unit whose code starts at line `start_line`; spans and the def line follow from the text.
fn unit(
    path: &str,
    language: &str,
    kind: UnitKind,
    symbol: &str,
    doc: Option<&str>,
    code: &str,
    start_line: usize,
) -> CodeUnit {
    let name = symbol
        .rsplit(['.', ':', '#'])
        .next()
        .unwrap_or(symbol)
        .to_string();
    let lines = code.lines().count().max(1);
    CodeUnit {
        path: path.into(),
        language: language.into(),
        kind,
        name,
        symbol: symbol.into(),
        start_byte: 100 * start_line,
        end_byte: 100 * start_line + code.len(),
        start_line,
        end_line: start_line + lines - 1,
        def_line: start_line,
        doc: doc.map(str::to_string),
        doc_spans: Vec::new(),
        code: code.into(),
    }
}

fn corpus() -> Vec<CodeUnit> {
    use UnitKind::*;
    vec![
        unit(
            "http/headers.py",
            "python",
            Function,
            "parse_http_header",
            Some("Split a raw header line into a lower-cased name and its value."),
            "def parse_http_header(line):\n    name, _, value = line.partition(':')\n    return name.strip().lower(), value.strip()\n",
            3,
        ),
        unit(
            "web/headers.js",
            "javascript",
            Function,
            "parseHttpHeader",
            Some("Splits a header line of a response into its name and value."),
            "function parseHttpHeader(line) {\n  const i = line.indexOf(':');\n  return [line.slice(0, i).trim(), line.slice(i + 1).trim()];\n}\n",
            10,
        ),
        unit(
            "src/distance.rs",
            "rust",
            Function,
            "levenshtein",
            Some("Computes the Levenshtein edit distance between two strings."),
            "pub fn levenshtein(a: &str, b: &str) -> usize {\n    let mut prev: Vec<usize> = (0..=b.len()).collect();\n    for (i, ca) in a.chars().enumerate() {\n        let mut cur = vec![i + 1];\n        for (j, cb) in b.chars().enumerate() {\n            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));\n        }\n        prev = cur;\n    }\n    prev[b.len()]\n}\n",
            1,
        ),
        unit(
            "retry/backoff.go",
            "go",
            Function,
            "RetryWithBackoff",
            Some("RetryWithBackoff retries a request, doubling the delay after each failure."),
            "func RetryWithBackoff(attempts int, delay time.Duration, fn func() error) error {\n\tvar err error\n\tfor i := 0; i < attempts; i++ {\n\t\tif err = fn(); err == nil {\n\t\t\treturn nil\n\t\t}\n\t\ttime.Sleep(delay)\n\t\tdelay *= 2\n\t}\n\treturn err\n}\n",
            7,
        ),
        unit(
            "config/IniParser.java",
            "java",
            Class,
            "IniParser",
            Some("Reads INI configuration files with sections and key value pairs."),
            "public class IniParser {\n    public Map<String, Map<String, String>> parse(Reader r) { return null; }\n}\n",
            5,
        ),
        unit(
            "config/IniParser.java",
            "java",
            Method,
            "IniParser.parse",
            Some("Parses an ini config file into a map of sections."),
            "public Map<String, Map<String, String>> parse(Reader r) { return null; }\n",
            6,
        ),
        unit(
            "lib/lru_cache.rb",
            "ruby",
            Class,
            "LruCache",
            Some("A least recently used cache with a fixed capacity."),
            "class LruCache\n  def initialize(capacity)\n    @capacity = capacity\n    @store = {}\n  end\nend\n",
            1,
        ),
        unit(
            "src/crc32.c",
            "c",
            Function,
            "crc32",
            None,
            "uint32_t crc32(const uint8_t *buf, size_t len) {\n    uint32_t crc = 0xFFFFFFFFu;\n    while (len--) crc = table[(crc ^ *buf++) & 0xFF] ^ (crc >> 8);\n    return crc ^ 0xFFFFFFFFu;\n}\n",
            12,
        ),
    ]
}

fn stats() -> BuildStats {
    BuildStats {
        files: 7,
        ..BuildStats::default()
    }
}

/// Builds an index of `units` at `dir` and returns the manifest and the ids, in order.
fn build(dir: &Path, units: &[CodeUnit]) -> (Manifest, Vec<u64>) {
    let builder = IndexBuilder::create(dir, 1).expect("create builder");
    let ids: Vec<u64> = units
        .iter()
        .map(|u| builder.add(u).expect("add unit"))
        .collect();
    assert_eq!(builder.len(), units.len() as u64);
    let manifest = builder.finish(dir, stats()).expect("finish");
    (manifest, ids)
}

fn search(index: &SearchIndex, req: &SearchRequest) -> Vec<Hit> {
    let hits = index.search(req).expect("search");
    for pair in hits.windows(2) {
        assert!(pair[0].score >= pair[1].score, "hits not ranked: {hits:?}");
    }
    hits
}

fn query(index: &SearchIndex, text: &str, top_k: usize) -> Vec<Hit> {
    search(index, &SearchRequest::new(text, top_k))
}

fn symbols(hits: &[Hit]) -> Vec<&str> {
    hits.iter().map(|h| h.symbol.as_str()).collect()
}

fn fresh_index() -> (tempfile::TempDir, SearchIndex, Vec<u64>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (_, ids) = build(&dir, &corpus());
    let index = SearchIndex::open(&dir).expect("open");
    (tmp, index, ids)
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn generations(dir: &Path) -> Vec<String> {
    entries(dir)
        .into_iter()
        .filter(|n| n.starts_with("gen-"))
        .collect()
}

#[test]
fn plain_english_queries_rank_the_right_unit_first() {
    let (_tmp, index, _) = fresh_index();
    assert_eq!(index.num_units(), corpus().len() as u64);
    let cases = [
        (
            "compute the edit distance between two strings",
            "levenshtein",
        ),
        (
            "retry a failing request with exponential backoff",
            "RetryWithBackoff",
        ),
        ("parse an ini config file", "IniParser.parse"),
        ("checksum of a buffer with crc", "crc32"),
    ];
    for (text, want) in cases {
        let hits = query(&index, text, 5);
        assert!(!hits.is_empty(), "{text:?}: no hits");
        assert_eq!(hits[0].symbol, want, "{text:?}: {:?}", symbols(&hits));
    }
}

#[test]
fn identifier_queries_find_their_own_definition() {
    let (_tmp, index, _) = fresh_index();
    let snake = query(&index, "parse_http_header", 5);
    assert_eq!(
        symbols(&snake)[..2],
        ["parse_http_header", "parseHttpHeader"]
    );
    let camel = query(&index, "parseHttpHeader", 5);
    assert_eq!(
        symbols(&camel)[..2],
        ["parseHttpHeader", "parse_http_header"]
    );
    // Both spellings also match the other's sub-words, and plain English finds both.
    let english = query(&index, "parse http header", 5);
    let mut top2 = symbols(&english)[..2].to_vec();
    top2.sort();
    assert_eq!(top2, ["parseHttpHeader", "parse_http_header"]);
}

#[test]
fn hits_carry_every_stored_field() {
    let (_tmp, index, ids) = fresh_index();
    let units = corpus();
    let hit = &query(&index, "levenshtein", 1)[0];
    let u = &units[2];
    assert_eq!(hit.id, ids[2]);
    assert!(hit.score > 0.0);
    assert_eq!(
        (hit.path.as_str(), hit.language.as_str(), hit.kind.as_str()),
        ("src/distance.rs", "rust", "function")
    );
    assert_eq!(
        (hit.name.as_str(), hit.symbol.as_str()),
        ("levenshtein", "levenshtein")
    );
    assert_eq!(
        (hit.start_line, hit.end_line, hit.def_line),
        (u.start_line as u64, u.end_line as u64, u.def_line as u64)
    );
    assert_eq!(
        (hit.start_byte, hit.end_byte),
        (u.start_byte as u64, u.end_byte as u64)
    );
    assert_eq!(hit.doc, u.doc);
    assert_eq!(hit.code, u.code);
    // A unit without documentation has no doc (not an empty string).
    let crc = &query(&index, "crc32", 1)[0];
    assert_eq!(crc.symbol, "crc32");
    assert_eq!(crc.doc, None);
}

#[test]
fn language_filter() {
    let (_tmp, index, _) = fresh_index();
    let all = query(&index, "parse header line", 10);
    let langs: Vec<&str> = all.iter().map(|h| h.language.as_str()).collect();
    assert!(
        langs.contains(&"python") && langs.contains(&"javascript"),
        "{langs:?}"
    );

    let mut req = SearchRequest::new("parse header line", 10);
    req.languages = vec!["javascript".into()];
    let js = search(&index, &req);
    assert_eq!(symbols(&js), ["parseHttpHeader"]);

    req.languages = vec!["javascript".into(), "python".into()];
    let both = search(&index, &req);
    assert!(both.len() >= 2);
    assert!(
        both.iter()
            .all(|h| h.language == "javascript" || h.language == "python"),
        "{both:?}"
    );

    // The filter does not change scores.
    let py_unfiltered = all.iter().find(|h| h.language == "python").unwrap();
    let py_filtered = both.iter().find(|h| h.language == "python").unwrap();
    assert_eq!(py_unfiltered.score, py_filtered.score);

    req.languages = vec!["cobol".into()];
    assert!(search(&index, &req).is_empty());
}

#[test]
fn kind_filter() {
    let (_tmp, index, _) = fresh_index();
    // Default: callables only, so the classes are left out.
    let callables = query(&index, "ini configuration parser", 10);
    assert!(!callables.is_empty());
    assert!(
        callables
            .iter()
            .all(|h| h.kind == "function" || h.kind == "method"),
        "{callables:?}"
    );
    assert_eq!(callables[0].symbol, "IniParser.parse");

    let mut req = SearchRequest::new("ini configuration parser", 10);
    req.kinds = KindFilter::All;
    let all = search(&index, &req);
    let syms = symbols(&all);
    assert!(
        syms.contains(&"IniParser") && syms.contains(&"IniParser.parse"),
        "{syms:?}"
    );

    req.kinds = KindFilter::Only(vec![UnitKind::Class]);
    let classes = search(&index, &req);
    assert_eq!(symbols(&classes)[0], "IniParser");
    assert!(classes.iter().all(|h| h.kind == "class"), "{classes:?}");

    // A class-only query finds nothing among callables, the class with All.
    let mut req = SearchRequest::new("least recently used cache capacity", 10);
    assert!(search(&index, &req).iter().all(|h| h.symbol != "LruCache"));
    req.kinds = KindFilter::All;
    assert_eq!(search(&index, &req)[0].symbol, "LruCache");
}

#[test]
fn path_glob_filter() {
    let (_tmp, index, _) = fresh_index();
    let mut req = SearchRequest::new("parse header", 10);
    req.path_glob = Some("web/**".into());
    assert_eq!(symbols(&search(&index, &req)), ["parseHttpHeader"]);
    req.path_glob = Some("**/*.py".into());
    assert_eq!(symbols(&search(&index, &req)), ["parse_http_header"]);
    req.path_glob = Some("nowhere/**".into());
    assert!(search(&index, &req).is_empty());
    // Globs combine with the other filters.
    req.text = "parse".into();
    req.path_glob = Some("config/*".into());
    req.kinds = KindFilter::All;
    let hits = search(&index, &req);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h.path == "config/IniParser.java"),
        "{hits:?}"
    );
}

#[test]
fn path_glob_finds_matches_deep_in_the_ranking() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    // 500 short units that are all about checksums, then two long ones that mention it once.
    let mut units: Vec<CodeUnit> = (0..500)
        .map(|i| {
            unit(
                &format!("noise/n{i:03}.py"),
                "python",
                UnitKind::Function,
                &format!("checksum_{i}"),
                Some("checksum checksum"),
                &format!("def checksum_{i}(b):\n    return checksum(b)\n"),
                1,
            )
        })
        .collect();
    let filler = "    total = total + value * weight - offset\n".repeat(60);
    for name in ["deep_one", "deep_two"] {
        units.push(unit(
            &format!("deep/{name}.py"),
            "python",
            UnitKind::Function,
            name,
            None,
            &format!("def {name}(data):\n{filler}    return checksum\n"),
            1,
        ));
    }
    build(&dir, &units);
    let index = SearchIndex::open(&dir).unwrap();

    // The premise: without the glob, the deep units rank far below the first fetch (200).
    let everything = query(&index, "checksum", 1000);
    assert_eq!(everything.len(), 502);
    let rank = everything
        .iter()
        .position(|h| h.path.starts_with("deep/"))
        .unwrap();
    assert!(rank >= 400, "deep unit ranked {rank}");

    let mut req = SearchRequest::new("checksum", 1);
    req.path_glob = Some("deep/**".into());
    let hits = search(&index, &req);
    assert_eq!(hits.len(), 1);
    assert!(hits[0].path.starts_with("deep/"), "{hits:?}");

    // More wanted than exist: all that match, and the loop ends.
    req.top_k = 5;
    let mut got: Vec<String> = search(&index, &req).into_iter().map(|h| h.symbol).collect();
    got.sort();
    assert_eq!(got, ["deep_one", "deep_two"]);

    // Scores with a glob are the unfiltered scores.
    let deep_score = everything
        .iter()
        .find(|h| h.symbol == "deep_one")
        .unwrap()
        .score;
    let filtered = search(&index, &req);
    assert_eq!(
        filtered
            .iter()
            .find(|h| h.symbol == "deep_one")
            .unwrap()
            .score,
        deep_score
    );
}

#[test]
fn degenerate_requests() {
    let (_tmp, index, _) = fresh_index();
    assert!(query(&index, "levenshtein", 0).is_empty());
    assert!(query(&index, "", 10).is_empty());
    assert!(query(&index, "   ", 10).is_empty());
    assert!(query(&index, "(); -> {} :: !== ...", 10).is_empty());
    // A query with no known word matches nothing.
    assert!(query(&index, "xylophone quixotic", 10).is_empty());
    // A huge top_k returns every match without sizing buffers by it.
    let hits = query(&index, "parse", usize::MAX);
    assert!(hits.len() >= 3 && hits.len() <= corpus().len(), "{hits:?}");
    let mut req = SearchRequest::new("parse", usize::MAX);
    req.path_glob = Some("**".into());
    assert_eq!(search(&index, &req).len(), hits.len());
}

#[test]
fn bad_glob_is_an_error() {
    let (_tmp, index, _) = fresh_index();
    for glob in ["src/[", "{a,b", "a/**["] {
        let mut req = SearchRequest::new("parse", 10);
        req.path_glob = Some(glob.into());
        match index.search(&req) {
            Err(IndexError::BadGlob { glob: g, .. }) => assert_eq!(g, glob),
            other => panic!("{glob:?}: expected BadGlob, got {other:?}"),
        }
        // Also when nothing would be searched.
        req.top_k = 0;
        assert!(matches!(
            index.search(&req),
            Err(IndexError::BadGlob { .. })
        ));
    }
}

#[test]
fn units_by_id() {
    let (_tmp, index, ids) = fresh_index();
    let units = corpus();
    assert_eq!(ids, (0..units.len() as u64).collect::<Vec<_>>());
    let got = index.units_by_id(&[ids[3], 9_999, ids[0]]).unwrap();
    assert_eq!(
        symbols(&got),
        [units[3].symbol.as_str(), units[0].symbol.as_str()]
    );
    assert_eq!(got[0].id, ids[3]);
    assert_eq!(got[1].id, ids[0]);
    assert_eq!(got[1].path, units[0].path);
    assert_eq!(got[1].code, units[0].code);
    assert!(index.units_by_id(&[]).unwrap().is_empty());
    assert!(index.units_by_id(&[u64::MAX]).unwrap().is_empty());
}

#[test]
fn manifest_describes_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (manifest, _) = build(&dir, &corpus());
    assert_eq!(manifest.format_version, FORMAT_VERSION);
    assert_eq!(manifest.generation, "gen-000001");
    assert_eq!(manifest.stats.units, corpus().len() as u64);
    assert_eq!(manifest.stats.files, 7);
    assert_eq!(
        PathBuf::from(&manifest.root),
        dir.canonicalize().unwrap(),
        "root is stored canonical"
    );
    assert_eq!(Manifest::load(&dir).unwrap(), manifest);
    let index = SearchIndex::open(&dir).unwrap();
    assert_eq!(index.manifest(), &manifest);
    assert_eq!(index.dir(), dir);
}

#[test]
fn rebuilding_replaces_the_index_and_removes_the_old_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (first, _) = build(&dir, &corpus());
    assert_eq!(generations(&dir), [first.generation.as_str()]);

    let replacement = vec![unit(
        "tokenize.py",
        "python",
        UnitKind::Function,
        "tokenize_markdown",
        Some("Splits markdown into tokens."),
        "def tokenize_markdown(text):\n    return text.split()\n",
        1,
    )];
    let (second, _) = build(&dir, &replacement);
    assert_ne!(second.generation, first.generation);
    assert_eq!(generations(&dir), [second.generation.as_str()]);
    assert!(!dir.join(&first.generation).exists());

    let index = SearchIndex::open(&dir).unwrap();
    assert_eq!(index.manifest().generation, second.generation);
    assert_eq!(index.num_units(), 1);
    assert!(query(&index, "levenshtein", 10).is_empty());
    assert_eq!(
        symbols(&query(&index, "markdown tokens", 10)),
        ["tokenize_markdown"]
    );
}

#[test]
fn an_unfinished_build_leaves_the_previous_index_live() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (live, _) = build(&dir, &corpus());
    let manifest_before = fs::read(dir.join(MANIFEST_FILE)).unwrap();
    {
        let builder = IndexBuilder::create(&dir, 1).unwrap();
        let zebra = unit(
            "zoo.py",
            "python",
            UnitKind::Function,
            "feed_zebra",
            None,
            "def feed_zebra():\n    pass\n",
            1,
        );
        builder.add(&zebra).unwrap();
        assert!(builder.generation_dir().starts_with(&dir));
        assert!(builder.generation_dir().exists());
        // Dropped without finish().
    }
    assert_eq!(fs::read(dir.join(MANIFEST_FILE)).unwrap(), manifest_before);
    let index = SearchIndex::open(&dir).unwrap();
    assert_eq!(index.manifest(), &live);
    assert_eq!(index.num_units(), corpus().len() as u64);
    assert!(query(&index, "zebra", 10).is_empty());
    assert_eq!(query(&index, "levenshtein", 1)[0].symbol, "levenshtein");
    drop(index);

    // The lock was released and the next build cleans up the abandoned generation.
    let (next, _) = build(&dir, &corpus());
    assert_eq!(generations(&dir), [next.generation.as_str()]);
    assert!(next.generation > live.generation);
}

#[test]
fn an_unfinished_first_build_leaves_no_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    {
        let builder = IndexBuilder::create(&dir, 1).unwrap();
        builder.add(&corpus()[0]).unwrap();
    }
    assert!(matches!(
        SearchIndex::open(&dir),
        Err(IndexError::NotFound { .. })
    ));
    // The leftovers are ours: building into the directory again works.
    let (m, _) = build(&dir, &corpus());
    assert_eq!(generations(&dir), [m.generation]);
    assert!(SearchIndex::open(&dir).is_ok());
}

#[test]
fn refuses_to_build_into_a_foreign_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    fs::create_dir_all(dir.join("2024")).unwrap();
    fs::write(dir.join("notes.txt"), b"do not delete").unwrap();
    fs::write(dir.join("2024/a.jpg"), b"\xff\xd8\xff").unwrap();
    match IndexBuilder::create(&dir, 1) {
        Err(IndexError::NotAnIndex { path }) => assert_eq!(path, dir),
        Err(other) => panic!("expected NotAnIndex, got {other:?}"),
        Ok(_) => panic!("built into a foreign directory"),
    }
    assert_eq!(entries(&dir), ["2024", "notes.txt"]);
    assert_eq!(entries(&dir.join("2024")), ["a.jpg"]);
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"do not delete");
    // Reading it is refused too.
    assert!(matches!(
        SearchIndex::open(&dir),
        Err(IndexError::NotFound { .. })
    ));
    // A directory holding only a file is foreign as well.
    let one = tmp.path().join("one");
    fs::create_dir(&one).unwrap();
    fs::write(one.join(".hidden"), b"x").unwrap();
    assert!(matches!(
        IndexBuilder::create(&one, 1),
        Err(IndexError::NotAnIndex { .. })
    ));
    assert_eq!(entries(&one), [".hidden"]);
}

#[test]
fn builds_into_an_empty_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), &corpus());
    assert_eq!(SearchIndex::open(tmp.path()).unwrap().num_units(), 8);
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join(MANIFEST_FILE);
    let mut value: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
}

#[test]
fn refuses_an_index_of_another_format_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build(&dir, &corpus());
    edit_manifest(&dir, |v| {
        v["format_version"] = (FORMAT_VERSION + 1).into();
        // A future format may have other fields: the version is still what gets reported.
        v["new_field"] = "x".into();
        v.as_object_mut().unwrap().remove("stats");
    });
    match SearchIndex::open(&dir) {
        Err(IndexError::IncompatibleVersion {
            path,
            found,
            expected,
        }) => {
            assert_eq!(path, dir);
            assert_eq!(found, FORMAT_VERSION + 1);
            assert_eq!(expected, FORMAT_VERSION);
        }
        Err(other) => panic!("expected IncompatibleVersion, got {other:?}"),
        Ok(_) => panic!("opened an index of another format version"),
    }
    let err = Manifest::load(&dir).unwrap_err();
    assert!(err.to_string().contains("gnn-coder index"), "{err}");

    // A version that does not fit in u32 is reported, not wrapped.
    edit_manifest(&dir, |v| v["format_version"] = (u64::MAX).into());
    assert!(matches!(
        SearchIndex::open(&dir),
        Err(IndexError::IncompatibleVersion {
            found: u32::MAX,
            ..
        })
    ));

    // An incompatible index can be rebuilt in place.
    let (m, _) = build(&dir, &corpus());
    assert_eq!(SearchIndex::open(&dir).unwrap().manifest(), &m);
}

#[test]
fn refuses_damaged_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (good, _) = build(&dir, &corpus());
    let path = dir.join(MANIFEST_FILE);
    let good_text = fs::read_to_string(&path).unwrap();

    let bad_texts: Vec<String> = vec![
        String::new(),
        "{not json".into(),
        "\u{0}\u{1}\u{2}garbage".into(),
        "[]".into(),
        "null".into(),
        r#"{"format": "gnn-coder-index"}"#.into(),
        r#"{"format": "gnn-coder-index", "format_version": "1"}"#.into(),
        good_text.replace("gnn-coder-index", "something-else"),
        // Right version, missing fields.
        format!(r#"{{"format": "gnn-coder-index", "format_version": {FORMAT_VERSION}}}"#),
        // A generation name that could escape the directory.
        good_text.replace(&good.generation, "../../etc"),
        // A generation that does not exist.
        good_text.replace(&good.generation, "gen-999999"),
    ];
    for text in bad_texts {
        fs::write(&path, &text).unwrap();
        match SearchIndex::open(&dir) {
            Err(IndexError::BadManifest { .. }) => {}
            Err(other) => panic!("{text:?}: expected BadManifest, got {other:?}"),
            Ok(_) => panic!("{text:?}: opened a damaged index"),
        }
    }
    fs::write(&path, &good_text).unwrap();
    assert!(SearchIndex::open(&dir).is_ok());
}

#[test]
fn missing_indexes_are_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in [
        tmp.path().join("nope"),
        tmp.path().join("a/b/c"),
        tmp.path().to_path_buf(),
    ] {
        match SearchIndex::open(&dir) {
            Err(IndexError::NotFound { path, .. }) => assert_eq!(path, dir),
            Err(other) => panic!("{dir:?}: expected NotFound, got {other:?}"),
            Ok(_) => panic!("{dir:?}: opened a missing index"),
        }
    }
    assert!(
        !tmp.path().join("nope").exists(),
        "opening created the directory"
    );
}

#[test]
fn a_second_concurrent_builder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");

    // On a fresh directory.
    let first = IndexBuilder::create(&dir, 1).unwrap();
    let second = IndexBuilder::create(&dir, 1);
    assert!(
        matches!(&second, Err(IndexError::Io { source, .. }) if source.to_string().contains("another")),
        "{:?}",
        second.as_ref().err()
    );
    for u in corpus() {
        first.add(&u).unwrap();
    }
    let live = first.finish(&dir, stats()).unwrap();

    // On a directory with a live index: the refused builder changes nothing.
    let third = IndexBuilder::create(&dir, 1).unwrap();
    let gens_during = generations(&dir);
    assert!(IndexBuilder::create(&dir, 1).is_err());
    assert_eq!(generations(&dir), gens_during);
    assert_eq!(SearchIndex::open(&dir).unwrap().manifest(), &live);
    third.add(&corpus()[0]).unwrap();
    let m = third.finish(&dir, stats()).unwrap();
    assert_eq!(SearchIndex::open(&dir).unwrap().num_units(), 1);
    assert_eq!(generations(&dir), [m.generation]);

    // Once the first builder is gone, another may start.
    assert!(IndexBuilder::create(&dir, 1).is_ok());
}

#[test]
fn concurrent_builders_from_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build(&dir, &corpus());
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<bool> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let b = IndexBuilder::create(&dir, 1);
                    // Hold the builder until both have tried.
                    barrier.wait();
                    b.is_ok()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    assert_eq!(SearchIndex::open(&dir).unwrap().num_units(), 8);
}

#[test]
fn builder_adds_from_many_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let builder = IndexBuilder::create(&dir, 2).unwrap();
    let units = corpus();
    let mut ids: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = units
            .chunks(3)
            .map(|chunk| {
                let b = &builder;
                s.spawn(move || chunk.iter().map(|u| b.add(u).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    ids.sort();
    assert_eq!(ids, (0..units.len() as u64).collect::<Vec<_>>());
    let m = builder.finish(&dir, BuildStats::default()).unwrap();
    assert_eq!(m.stats.units, units.len() as u64);
    let index = SearchIndex::open(&dir).unwrap();
    let got = index.units_by_id(&ids).unwrap();
    let mut got_syms: Vec<String> = got.into_iter().map(|h| h.symbol).collect();
    let mut want: Vec<String> = units.into_iter().map(|u| u.symbol).collect();
    got_syms.sort();
    want.sort();
    assert_eq!(got_syms, want);
}

#[test]
fn an_empty_index_is_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let (m, ids) = build(&dir, &[]);
    assert!(ids.is_empty());
    assert_eq!(m.stats.units, 0);
    let index = SearchIndex::open(&dir).unwrap();
    assert_eq!(index.num_units(), 0);
    assert!(query(&index, "anything", 10).is_empty());
    let mut req = SearchRequest::new("anything", usize::MAX);
    req.path_glob = Some("**".into());
    assert!(search(&index, &req).is_empty());
    assert!(index.units_by_id(&[0]).unwrap().is_empty());
}
