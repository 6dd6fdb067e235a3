//! One conformance suite for every backend of the store traits (feature `conformance`).
//!
//! ## Design
//!
//! The suite is written once, against the traits only ([`Store`], [`StoreWriter`],
//! [`StoreReader`]), and each backend runs it from a few lines of its own test file:
//!
//! ```ignore
//! struct MyHarness { /* where this case's store lives */ }
//! impl gnn_coder_store::conformance::Harness for MyHarness { /* create, reopen, ... */ }
//! gnn_coder_store::conformance_tests!(MyHarness::new());
//! ```
//!
//! [`conformance_tests!`](crate::conformance_tests) expands to one `#[test]` per case; every
//! case builds its own harness from the expression and its own store through
//! [`Harness::create`], so cases are independent and run in parallel. A [`Harness`] is what
//! differs between backends: where a fresh store comes from (a temporary directory; a fresh
//! database or schema), how the same store is opened again as a second process would open it (a
//! new [`crate::Store`] on the directory; a new connection pool), how to make the stored schema
//! look newer than the code, and how a child process finds the store.
//!
//! The cases assert only what the traits promise, so a remote backend can pass them:
//!
//! - Scores are compared by order and relative facts, never by exact BM25 values; vector scores
//!   are compared with a tolerance (a backend may quantize vectors, the embedded store keeps
//!   int8 rows). Vectors are small (dimension [`DIM`]) and hand-made: unit vectors in one plane
//!   at known angles, so inner-product order is known in advance.
//! - [`crate::UnitId`]s are used only within the snapshot that produced them.
//! - Lock refusal is asserted as "a second writer is refused with [`ErrorKind::Locked`] either
//!   at [`Store::writer`] or at its first write to the repository the first writer holds": the
//!   embedded store refuses the writer itself (one writer per directory), a PostgreSQL store
//!   refuses the first write touching a repository another live writer holds (an advisory lock
//!   per repository). Whether two writers on *different* repositories may run at once differs
//!   between backends and is not asserted.
//! - Repository records are always written with [`StoreWriter::put_repository`] before their
//!   files; whether an upsert alone creates a record is left open. Lists whose order the traits
//!   do not fix (repositories, files) are sorted before comparing.
//! - Filters are checked generically: a filtered leg must return exactly the units of the
//!   unfiltered ranking that pass the filter, in that order (ties aside), and with limit 1 the
//!   best passing unit even when hundreds of better-scoring units fail the filter.
//! - The killed writer is a real process: the case re-executes the test binary
//!   ([`std::env::current_exe`]) with `--exact <this test> --nocapture`, [`CHILD_ENV`] and the
//!   variables of [`Harness::child_env`]; the child ([`child_writer_main`]) opens the store with
//!   [`Harness::open_from_env`], writes a batch without committing, prints [`CHILD_READY`] and
//!   sleeps until the parent kills it with SIGKILL ([`std::process::Child::kill`]).
//!
//! Every case panics (as a test does) on the first broken promise, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Duration;

use crate::{
    CancellationToken, EmbeddingInfo, ErrorKind, FieldBoosts, FileEntry, FileWrite, Filters,
    LexicalQuery, PathGlobs, RepoInfo, Result, Store, StoreReader, StoreWriter, StoredUnit, UnitId,
    UnitKey, UnitRecord, UnitWrite, VectorQuery,
};

/// Dimension of the suite's vectors.
pub const DIM: usize = 8;

/// Set (to `1`) in the environment of the killed-writer child process.
pub const CHILD_ENV: &str = "GNN_CODER_CONFORMANCE_CHILD";

/// The line the child prints once its uncommitted batch is written.
pub const CHILD_READY: &str = "gnn-coder-conformance: child writer ready";

/// Tolerance on vector components and inner products (int8 rows are within about 1/127 per
/// component).
const EPS: f32 = 0.03;

/// What a backend's test supplies: one store per harness value.
pub trait Harness {
    /// Creates this harness's store, empty, holding vectors of `embedding` (or none), and opens
    /// it. Called at most once per harness value, in the test's process.
    fn create(&self, embedding: Option<EmbeddingInfo>) -> Box<dyn Store>;
    /// Opens the same store again, as a second process would (a new store value on the same
    /// directory; a new connection pool on the same database and schema). Errors are returned,
    /// not unwrapped: the version case expects one.
    fn reopen(&self) -> Result<Box<dyn Store>>;
    /// Tampers with the stored schema or format marker so that it claims a version newer than
    /// this build's; [`Harness::reopen`] must then refuse the store.
    fn make_newer_version(&self);
    /// Environment variables telling a child process where this harness's store is.
    fn child_env(&self) -> Vec<(String, String)>;
    /// In a child process started with [`Harness::child_env`]: opens the parent's store. `self`
    /// is a fresh harness value built in the child (it has not created anything).
    fn open_from_env(&self) -> Result<Box<dyn Store>>;
}

/// The suite's embedding model.
pub fn embedding_info() -> EmbeddingInfo {
    EmbeddingInfo {
        model: "gnn-coder-conformance-model".into(),
        dim: DIM,
        trained: false,
    }
}

/// The unit vector at `angle` radians from the first axis, in the plane of the first two axes:
/// its inner product with `vector_at(0.0)` is `cos(angle)`.
pub fn vector_at(angle: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; DIM];
    v[0] = angle.cos();
    v[1] = angle.sin();
    v
}

/// A distinct embedding key per number.
pub fn key(n: u32) -> UnitKey {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_le_bytes());
    b[15] = 0xC0;
    UnitKey(b)
}

/// The suite's description of one unit.
#[derive(Debug, Clone)]
struct U {
    name: String,
    kind: &'static str,
    code: String,
    doc: Option<String>,
    line: u64,
    key: u32,
    /// `None`: written without a vector.
    angle: Option<f32>,
}

fn u(name: &str, kind: &'static str, code: &str, line: u64, key: u32, angle: f32) -> U {
    U {
        name: name.into(),
        kind,
        code: code.into(),
        doc: None,
        line,
        key,
        angle: Some(angle),
    }
}

fn record(path: &str, language: &str, x: &U) -> UnitRecord {
    let lines = x.code.lines().count().max(1) as u64;
    UnitRecord {
        path: path.into(),
        language: language.into(),
        kind: x.kind.into(),
        name: x.name.clone(),
        symbol: format!("{}::{}", path.trim_end_matches(|c| c != '/'), x.name),
        start_line: x.line,
        end_line: x.line + lines - 1,
        def_line: x.line,
        start_byte: x.line * 100,
        end_byte: x.line * 100 + x.code.len() as u64,
        doc: x.doc.clone(),
        code: x.code.clone(),
    }
}

fn file(path: &str, language: &str, hash: &str, bytes: u64, units: &[U]) -> FileWrite {
    FileWrite {
        file: FileEntry {
            path: path.into(),
            hash: hash.into(),
            units: units.len() as u32,
            bytes,
        },
        units: units
            .iter()
            .map(|x| UnitWrite {
                record: record(path, language, x),
                key: key(x.key),
                vector: x.angle.map(vector_at),
            })
            .collect(),
    }
}

fn repo(name: &str) -> RepoInfo {
    RepoInfo {
        name: name.into(),
        root: format!("/src/{name}"),
        head: Some(format!("{name}-head-0123456789")),
        indexed_unix: 1_700_000_000,
        // Deliberately wrong: readers derive the counts from the committed units.
        files: 999,
        units: 999,
        bytes: 1,
        skipped: BTreeMap::from([("binary".to_string(), 2)]),
    }
}

// ---------------------------------------------------------------------------------------------
// The standard corpus.

/// `src/http.py` of `alpha`.
fn alpha_http() -> FileWrite {
    let mut parse_header = u(
        "parse_header",
        "function",
        "def parse_header(line):\n    return line.split(':')",
        1,
        1,
        0.0,
    );
    parse_header.doc = Some("Splits one header line.".into());
    file(
        "src/http.py",
        "python",
        "hash-http-1",
        120,
        &[
            parse_header,
            u(
                "HeaderParser",
                "class",
                "class HeaderParser:\n    def feed(self, data):\n        return parse_header(data)",
                4,
                2,
                0.2,
            ),
        ],
    )
}

fn alpha_files() -> Vec<FileWrite> {
    vec![
        alpha_http(),
        file(
            "src/size.rs",
            "rust",
            "hash-size-1",
            80,
            &[u(
                "parse_size",
                "function",
                "fn parse_size(s: &str) -> u64 { s.len() as u64 }",
                1,
                3,
                0.4,
            )],
        ),
        file(
            "tests/test_http.py",
            "python",
            "hash-test-1",
            60,
            &[u(
                "test_parse_header",
                "function",
                "def test_parse_header():\n    assert parse_header('a: b')",
                1,
                4,
                0.6,
            )],
        ),
    ]
}

fn beta_files() -> Vec<FileWrite> {
    vec![
        // Written out of source order: readers return source order.
        file(
            "lib/parse.go",
            "go",
            "hash-parse-1",
            90,
            &[
                u(
                    "Render",
                    "method",
                    "func (c Config) Render() string { return c.name }",
                    10,
                    6,
                    1.0,
                ),
                u(
                    "parse_config",
                    "function",
                    "func parse_config(path string) Config { return load(path) }",
                    1,
                    5,
                    0.8,
                ),
            ],
        ),
        file(
            "lib/util.go",
            "go",
            "hash-util-1",
            40,
            &[u(
                "format_value",
                "function",
                "func format_value(v int) string { return fmt.Sprint(v) }",
                1,
                7,
                1.2,
            )],
        ),
    ]
}

/// The standard corpus by the order of its vectors against `vector_at(0.0)`.
const BY_ANGLE: [&str; 7] = [
    "parse_header",
    "HeaderParser",
    "parse_size",
    "test_parse_header",
    "parse_config",
    "Render",
    "format_value",
];

fn angle_of(name: &str) -> f32 {
    0.2 * BY_ANGLE
        .iter()
        .position(|n| *n == name)
        .expect("a corpus unit") as f32
}

/// Creates the harness's vector store and commits the standard corpus: `alpha` (3 files, 4
/// units, 260 bytes) and `beta` (2 files, 3 units, 130 bytes).
fn populated(h: &dyn Harness) -> Box<dyn Store> {
    let store = h.create(Some(embedding_info()));
    assert_eq!(store.embedding(), Some(&embedding_info()));
    let mut w = store.writer().expect("a writer on a fresh store");
    w.put_repository(&repo("alpha")).expect("put alpha");
    w.upsert_files("alpha", alpha_files())
        .expect("upsert alpha");
    w.put_repository(&repo("beta")).expect("put beta");
    w.upsert_files("beta", beta_files()).expect("upsert beta");
    commit(w.as_mut());
    drop(w);
    store
}

fn commit(w: &mut dyn StoreWriter) {
    w.commit(&CancellationToken::new()).expect("commit");
}

// ---------------------------------------------------------------------------------------------
// Reading helpers.

fn lex(r: &dyn StoreReader, text: &str, filters: Filters, limit: usize) -> Vec<(UnitId, f32)> {
    r.lexical(&LexicalQuery {
        text: text.into(),
        boosts: FieldBoosts::default(),
        filters,
        limit,
    })
    .unwrap_or_else(|e| panic!("lexical {text:?}: {e}"))
}

fn vec_q(q: &[f32], filters: Filters, limit: usize, exact: bool) -> VectorQuery {
    VectorQuery {
        vector: q.to_vec(),
        filters,
        limit,
        exact,
    }
}

fn dense(r: &dyn StoreReader, angle: f32, filters: Filters, limit: usize) -> Vec<(UnitId, f32)> {
    r.vector(&vec_q(&vector_at(angle), filters, limit, false))
        .unwrap_or_else(|e| panic!("vector: {e}"))
}

fn stored(r: &dyn StoreReader, hits: &[(UnitId, f32)]) -> Vec<StoredUnit> {
    let ids: Vec<UnitId> = hits.iter().map(|h| h.0).collect();
    let units = r.units(&ids).expect("units");
    assert_eq!(units.len(), ids.len(), "every hit resolves to a unit");
    for (u, id) in units.iter().zip(&ids) {
        assert_eq!(u.id, *id, "units come back in the order asked");
    }
    units
}

fn names(r: &dyn StoreReader, hits: &[(UnitId, f32)]) -> Vec<String> {
    stored(r, hits).into_iter().map(|u| u.record.name).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The id of the unit `name` of a file, in snapshot `r`.
fn id_of(r: &dyn StoreReader, repository: &str, path: &str, name: &str) -> UnitId {
    r.units_of_file(repository, path)
        .expect("units_of_file")
        .into_iter()
        .find(|u| u.record.name == name)
        .unwrap_or_else(|| panic!("{repository}:{path} has no unit {name}"))
        .id
}

fn assert_scores_descend(hits: &[(UnitId, f32)], what: &str) {
    for w in hits.windows(2) {
        assert!(
            w[0].1 >= w[1].1,
            "{what}: scores must not increase: {hits:?}"
        );
    }
}

fn assert_close(a: f32, b: f32, what: &str) {
    assert!(
        (a - b).abs() <= EPS,
        "{what}: {a} is not within {EPS} of {b}"
    );
}

fn assert_vector_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: dimension");
    for (g, w) in got.iter().zip(want) {
        assert_close(*g, *w, what);
    }
}

fn passes(f: &Filters, u: &StoredUnit) -> bool {
    (f.languages.is_empty() || f.languages.contains(&u.record.language))
        && (f.kinds.is_empty() || f.kinds.contains(&u.record.kind))
        && (f.repositories.is_empty() || f.repositories.contains(&u.repository))
        && f.path_globs.is_match(&u.record.path)
        && !f.exclude_units.contains(&u.id)
}

fn globs(patterns: &[&str]) -> PathGlobs {
    PathGlobs::new(patterns.iter().copied()).expect("valid globs")
}

/// A leg's filtered answers against its unfiltered ranking `all` (every hit of the query): with
/// a limit covering everything, exactly the passing units in order (ties aside); with limit 1,
/// the best passing one.
fn check_filtered_leg(
    r: &dyn StoreReader,
    what: &str,
    all: &[(UnitId, f32)],
    filters: &Filters,
    run: &dyn Fn(Filters, usize) -> Vec<(UnitId, f32)>,
) {
    let all_units = stored(r, all);
    let expected: Vec<(UnitId, f32)> = all
        .iter()
        .zip(&all_units)
        .filter(|(_, u)| passes(filters, u))
        .map(|(h, _)| *h)
        .collect();
    let got = run(filters.clone(), all.len() + 5);
    assert_scores_descend(&got, what);
    let got_units = stored(r, &got);
    for u in &got_units {
        assert!(
            passes(filters, u),
            "{what}: {filters:?} let through {}:{}:{}",
            u.repository,
            u.record.path,
            u.record.name
        );
    }
    let set = |v: &[(UnitId, f32)]| v.iter().map(|h| h.0).collect::<BTreeSet<_>>();
    assert_eq!(
        set(&got),
        set(&expected),
        "{what}: {filters:?} must give exactly the passing units of the unfiltered ranking"
    );
    // Same order, up to ties in the unfiltered ranking.
    let score_in_all = |id: UnitId| all.iter().find(|h| h.0 == id).map(|h| h.1);
    for (g, e) in got.iter().zip(&expected) {
        let (gs, es) = (score_in_all(g.0).unwrap(), e.1);
        assert!(
            (gs - es).abs() <= 1e-4 * es.abs().max(1.0),
            "{what}: {filters:?}: filtered order differs from the unfiltered one"
        );
    }
    let one = run(filters.clone(), 1);
    match expected.first() {
        None => assert!(
            one.is_empty(),
            "{what}: {filters:?} passes nothing: {one:?}"
        ),
        Some(best) => {
            assert_eq!(one.len(), 1, "{what}: {filters:?} with limit 1: {one:?}");
            let s = score_in_all(one[0].0).expect("the limit-1 hit is a hit of the query");
            assert!(
                (s - best.1).abs() <= 1e-4 * best.1.abs().max(1.0),
                "{what}: {filters:?} with limit 1 must give the best passing unit"
            );
        }
    }
}

/// What a snapshot shows, for comparing snapshots across commits.
#[derive(Debug, PartialEq)]
struct View {
    lexical: Vec<String>,
    dense: Vec<String>,
    units: Vec<(String, String, String)>,
    files: Vec<(String, Vec<FileEntry>)>,
    file_http: Option<FileEntry>,
    repositories: Vec<(String, u64, u64, u64)>,
    stats: (u64, u64, u64),
}

fn view(r: &dyn StoreReader) -> View {
    let lexical_hits = lex(r, "parse", Filters::default(), 100);
    let dense_hits = r
        .vector(&vec_q(&vector_at(0.0), Filters::default(), 100, true))
        .expect("vector");
    let mut units: Vec<(String, String, String)> = stored(r, &dense_hits)
        .into_iter()
        .map(|u| (u.repository, u.record.path, u.record.name))
        .collect();
    units.sort();
    let mut repositories: Vec<(String, u64, u64, u64)> = r
        .repositories()
        .expect("repositories")
        .into_iter()
        .map(|i| (i.name, i.files, i.units, i.bytes))
        .collect();
    repositories.sort();
    let files = ["alpha", "beta", "gamma"]
        .iter()
        .map(|repo| {
            let mut f = r.files(repo).expect("files");
            f.sort_by(|a, b| a.path.cmp(&b.path));
            (repo.to_string(), f)
        })
        .collect();
    let s = r.stats().expect("stats");
    View {
        lexical: sorted(names(r, &lexical_hits)),
        dense: names(r, &dense_hits),
        units,
        files,
        file_http: r.file("alpha", "src/http.py").expect("file"),
        repositories,
        stats: (s.repositories, s.files, s.units),
    }
}

/// A second writer is refused with `Locked`: at `writer()` or at its first write to `repository`.
fn assert_second_writer_refused(store: &dyn Store, repository: &str, what: &str) {
    match store.writer() {
        Err(e) => assert_eq!(e.kind(), ErrorKind::Locked, "{what}: {e}"),
        Ok(mut w) => {
            let r = w.upsert_files(
                repository,
                vec![file(
                    "src/intruder.py",
                    "python",
                    "hash-intruder",
                    10,
                    &[u(
                        "intruder",
                        "function",
                        "def intruder(): pass",
                        1,
                        900,
                        0.3,
                    )],
                )],
            );
            match r {
                Err(e) => assert_eq!(e.kind(), ErrorKind::Locked, "{what}: {e}"),
                Ok(()) => panic!(
                    "{what}: a second writer got a writer and wrote to {repository} while another writer holds it"
                ),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// The cases, each a `fn(&dyn Harness)`; public so a backend can also call one by hand.
pub mod cases {
    use super::*;

    /// Upserted repositories, files and units read back as written; counts come from the
    /// committed units, not the repository record.
    pub fn upsert_and_read_back(h: &dyn Harness) {
        let store = populated(h);
        let r = store.reader().expect("reader");
        let mut repos = r.repositories().expect("repositories");
        repos.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["alpha", "beta"]
        );
        let alpha = &repos[0];
        assert_eq!(alpha.root, "/src/alpha");
        assert_eq!(alpha.head.as_deref(), Some("alpha-head-0123456789"));
        assert_eq!(alpha.indexed_unix, 1_700_000_000);
        assert_eq!(alpha.skipped.get("binary"), Some(&2));
        assert_eq!(
            (alpha.files, alpha.units, alpha.bytes),
            (3, 4, 260),
            "alpha's counts derive from its committed files and units"
        );
        assert_eq!(
            (repos[1].files, repos[1].units, repos[1].bytes),
            (2, 3, 130)
        );
        // One repository alone: the same record and counts as in the list.
        for want in &repos {
            let one = r.repository(&want.name).expect("repository");
            assert_eq!(one.as_ref(), Some(want), "repository({:?})", want.name);
        }
        assert_eq!(r.repository("gamma").expect("unknown repository"), None);
        assert_eq!(r.repository("alph").expect("a prefix"), None);

        let mut files = r.files("alpha").expect("files");
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let written: Vec<FileEntry> = alpha_files().into_iter().map(|f| f.file).collect();
        assert_eq!(files, written);
        assert!(
            r.files("nope")
                .expect("files of an unknown repository")
                .is_empty()
        );
        assert_eq!(
            r.file("alpha", "src/size.rs").expect("file"),
            Some(written[1].clone())
        );
        assert_eq!(r.file("alpha", "src/none.rs").expect("file"), None);
        assert_eq!(
            r.file("beta", "src/size.rs").expect("file"),
            None,
            "file is per repository"
        );

        // Records round-trip; units_of_file is in source order whatever the write order.
        let http = r
            .units_of_file("alpha", "src/http.py")
            .expect("units_of_file");
        let want: Vec<UnitRecord> = alpha_http().units.into_iter().map(|u| u.record).collect();
        assert_eq!(
            http.iter().map(|u| u.record.clone()).collect::<Vec<_>>(),
            want
        );
        assert!(http.iter().all(|u| u.repository == "alpha"));
        let parse = r
            .units_of_file("beta", "lib/parse.go")
            .expect("units_of_file");
        assert_eq!(
            parse
                .iter()
                .map(|u| u.record.name.as_str())
                .collect::<Vec<_>>(),
            ["parse_config", "Render"],
            "units_of_file must give source order"
        );
        assert!(
            r.units_of_file("alpha", "lib/parse.go")
                .expect("units_of_file")
                .is_empty()
        );

        let s = r.stats().expect("stats");
        assert_eq!((s.repositories, s.files, s.units), (2, 5, 7));
        assert_eq!(s.vectors, 7, "one vector per distinct key");
        assert!(s.ann_vectors <= s.vectors);

        // Maintenance never changes what searches find.
        let before = view(r.as_ref());
        let mut w = store.writer().expect("writer");
        w.maintain(&CancellationToken::new()).expect("maintain");
        drop(w);
        assert_eq!(view(store.reader().expect("reader").as_ref()), before);
    }

    /// `units` answers in the order asked and skips unknown ids.
    pub fn units_in_order_and_unknown_skipped(h: &dyn Harness) {
        let store = populated(h);
        let r = store.reader().expect("reader");
        let hits = dense(r.as_ref(), 0.0, Filters::default(), 100);
        assert_eq!(hits.len(), 7);
        let mut ids: Vec<UnitId> = hits.iter().map(|h| h.0).collect();
        ids.reverse();
        let bogus = UnitId(u64::MAX);
        let mut asked = vec![bogus];
        asked.extend(&ids[..3]);
        asked.push(bogus);
        asked.extend(&ids[3..]);
        let got = r.units(&asked).expect("units");
        assert_eq!(got.iter().map(|u| u.id).collect::<Vec<_>>(), ids);
        let mut want: Vec<String> = BY_ANGLE.iter().map(|s| s.to_string()).collect();
        want.reverse();
        assert_eq!(
            got.iter()
                .map(|u| u.record.name.clone())
                .collect::<Vec<_>>(),
            want
        );
        assert!(r.units(&[]).expect("no ids").is_empty());
        assert!(r.units(&[bogus]).expect("unknown id").is_empty());
        // The same id twice is answered twice.
        let twice = r.units(&[ids[0], ids[0]]).expect("units");
        assert_eq!(twice.len(), 2);
    }

    /// BM25 basics: a unit named after the query ranks above one mentioning it once in its
    /// code; scores are positive and descending; an empty analysed query has no hits.
    pub fn lexical_basics(h: &dyn Harness) {
        let store = h.create(Some(embedding_info()));
        let mut w = store.writer().expect("writer");
        w.put_repository(&repo("r")).expect("put");
        w.upsert_files(
            "r",
            vec![
                file(
                    "src/render.rs",
                    "rust",
                    "h1",
                    300,
                    &[u(
                        "render_page",
                        "function",
                        "fn render_page(out: &mut String) {\n    out.push_str(\"<html>\");\n    // the body is split into words later by tokenize\n    out.push_str(\"</html>\");\n}",
                        1,
                        1,
                        0.1,
                    )],
                ),
                file(
                    "src/words.rs",
                    "rust",
                    "h2",
                    100,
                    &[u(
                        "tokenize",
                        "function",
                        "fn tokenize(s: &str) -> Vec<String> { s.split(' ').map(String::from).collect() }",
                        1,
                        2,
                        0.5,
                    )],
                ),
                file(
                    "src/other.rs",
                    "rust",
                    "h3",
                    100,
                    &[u("unrelated", "function", "fn unrelated() -> u8 { 7 }", 1, 3, 0.9)],
                ),
            ],
        )
        .expect("upsert");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let hits = lex(r.as_ref(), "tokenize", Filters::default(), 10);
        assert_eq!(
            names(r.as_ref(), &hits),
            ["tokenize", "render_page"],
            "the unit named tokenize ranks first; the one mentioning it in a comment second; the unrelated one not at all"
        );
        assert!(hits.iter().all(|h| h.1 > 0.0), "{hits:?}");
        assert!(hits[0].1 > hits[1].1, "{hits:?}");
        let limited = lex(r.as_ref(), "tokenize", Filters::default(), 1);
        assert_eq!(names(r.as_ref(), &limited), ["tokenize"]);
        // Identifier words: `render page` finds render_page.
        let words = lex(r.as_ref(), "render page", Filters::default(), 10);
        assert_eq!(
            names(r.as_ref(), &words).first().map(String::as_str),
            Some("render_page")
        );
        for empty in ["", "   ", "()", "{ } ;"] {
            assert!(
                lex(r.as_ref(), empty, Filters::default(), 10).is_empty(),
                "{empty:?} analyses to nothing: no hits"
            );
        }
        assert!(lex(r.as_ref(), "zyxwvut", Filters::default(), 10).is_empty());
        assert!(lex(r.as_ref(), "tokenize", Filters::default(), 0).is_empty());
    }

    /// The vector leg ranks by inner product (approximate and exact alike), honours the
    /// limit, refuses another dimension; `vector_scores` and `unit_vector` agree with it.
    pub fn vector_leg(h: &dyn Harness) {
        let store = populated(h);
        let r = store.reader().expect("reader");
        let q = vector_at(0.0);
        for exact in [false, true] {
            let all = r
                .vector(&vec_q(&q, Filters::default(), 100, exact))
                .expect("vector");
            assert_eq!(names(r.as_ref(), &all), BY_ANGLE, "exact: {exact}");
            for (hit, name) in all.iter().zip(BY_ANGLE) {
                assert_close(hit.1, angle_of(name).cos(), name);
            }
            let top3 = r
                .vector(&vec_q(&q, Filters::default(), 3, exact))
                .expect("vector");
            assert_eq!(names(r.as_ref(), &top3), BY_ANGLE[..3]);
            assert!(
                r.vector(&vec_q(&q, Filters::default(), 0, exact))
                    .expect("limit 0")
                    .is_empty()
            );
        }
        // Another direction, another order.
        let back = dense(r.as_ref(), 1.2, Filters::default(), 2);
        assert_eq!(names(r.as_ref(), &back), ["format_value", "Render"]);
        let err = r
            .vector(&vec_q(&[1.0, 0.0, 0.0], Filters::default(), 5, false))
            .expect_err("a query of another dimension is refused");
        assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");

        let header = id_of(r.as_ref(), "alpha", "src/http.py", "parse_header");
        let fmt = id_of(r.as_ref(), "beta", "lib/util.go", "format_value");
        let scores = r
            .vector_scores(&[fmt, UnitId(u64::MAX), header], &q)
            .expect("vector_scores");
        assert_eq!(scores.len(), 3);
        assert_close(
            scores[0].expect("format_value has a vector"),
            1.2f32.cos(),
            "score",
        );
        assert_eq!(scores[1], None, "an unknown unit has no score");
        assert_close(scores[2].expect("parse_header has a vector"), 1.0, "score");
        assert!(r.vector_scores(&[], &q).expect("no ids").is_empty());
        let v = r.unit_vector(fmt).expect("unit_vector").expect("stored");
        assert_vector_close(&v, &vector_at(1.2), "unit_vector");
        assert_eq!(r.unit_vector(UnitId(u64::MAX)).expect("unknown unit"), None);
    }

    /// Every filter, in both legs, applies before the top-N cut.
    pub fn filters_apply_inside_both_legs(h: &dyn Harness) {
        let store = populated(h);
        let r = store.reader().expect("reader");
        let r = r.as_ref();
        let header = id_of(r, "alpha", "src/http.py", "parse_header");
        let cases: Vec<(Filters, Option<&str>)> = vec![
            (
                Filters {
                    languages: vec!["go".into()],
                    ..Filters::default()
                },
                Some("parse_config"),
            ),
            (
                Filters {
                    languages: vec!["go".into(), "rust".into()],
                    ..Filters::default()
                },
                Some("parse_size"),
            ),
            (
                Filters {
                    kinds: vec!["class".into()],
                    ..Filters::default()
                },
                Some("HeaderParser"),
            ),
            (
                Filters {
                    kinds: vec!["method".into()],
                    ..Filters::default()
                },
                Some("Render"),
            ),
            (
                Filters {
                    repositories: vec!["beta".into()],
                    ..Filters::default()
                },
                Some("parse_config"),
            ),
            (
                Filters {
                    repositories: vec!["nope".into()],
                    ..Filters::default()
                },
                None,
            ),
            (
                Filters {
                    path_globs: globs(&["**/*.rs"]),
                    ..Filters::default()
                },
                Some("parse_size"),
            ),
            (
                Filters {
                    path_globs: globs(&["tests/**", "lib/util.go"]),
                    ..Filters::default()
                },
                Some("test_parse_header"),
            ),
            (
                Filters {
                    path_globs: globs(&["lib/util.go"]),
                    ..Filters::default()
                },
                Some("format_value"),
            ),
            (
                Filters {
                    exclude_units: vec![header],
                    ..Filters::default()
                },
                Some("HeaderParser"),
            ),
            (
                Filters {
                    languages: vec!["python".into()],
                    kinds: vec!["function".into()],
                    path_globs: globs(&["tests/**"]),
                    ..Filters::default()
                },
                Some("test_parse_header"),
            ),
            (
                Filters {
                    repositories: vec!["alpha".into()],
                    languages: vec!["go".into()],
                    ..Filters::default()
                },
                None,
            ),
        ];
        let lex_all = lex(r, "parse", Filters::default(), 100);
        assert!(
            lex_all.len() >= 5,
            "`parse` matches most of the corpus: {lex_all:?}"
        );
        let dense_all = r
            .vector(&vec_q(&vector_at(0.0), Filters::default(), 100, true))
            .expect("vector");
        assert_eq!(dense_all.len(), 7);
        for (filters, best) in &cases {
            check_filtered_leg(r, "lexical", &lex_all, filters, &|f, limit| {
                lex(r, "parse", f, limit)
            });
            for exact in [false, true] {
                check_filtered_leg(r, "vector", &dense_all, filters, &|f, limit| {
                    r.vector(&vec_q(&vector_at(0.0), f, limit, exact))
                        .expect("vector")
                });
            }
            let one = dense(r, 0.0, filters.clone(), 1);
            assert_eq!(
                names(r, &one).first().map(String::as_str),
                *best,
                "vector leg, limit 1, {filters:?}"
            );
        }
    }

    /// Filters apply before the cut even when hundreds of better-scoring units fail them.
    pub fn filters_reach_past_many_better_units(h: &dyn Harness) {
        let store = h.create(Some(embedding_info()));
        let mut w = store.writer().expect("writer");
        w.put_repository(&repo("noise")).expect("put");
        w.put_repository(&repo("target")).expect("put");
        let noise: Vec<U> = (0..300u32)
            .map(|i| {
                u(
                    &format!("parse_noise_{i}"),
                    "function",
                    &format!("def parse_noise_{i}(x):\n    return parse(parse(parse(x)))"),
                    1 + 3 * u64::from(i),
                    100 + i,
                    0.001 * i as f32,
                )
            })
            .collect();
        w.upsert_files(
            "noise",
            vec![file("vendor/noise.py", "python", "hn", 9000, &noise)],
        )
        .expect("upsert noise");
        w.upsert_files(
            "target",
            vec![file(
                "src/target.rs",
                "rust",
                "ht",
                100,
                &[u(
                    "parse_target",
                    "class",
                    "struct parse_target { inner: Vec<u8>, more: Vec<u8>, fields: u64 }",
                    1,
                    1,
                    1.0,
                )],
            )],
        )
        .expect("upsert target");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let r = r.as_ref();
        let target = id_of(r, "target", "src/target.rs", "parse_target");
        let lex_all = lex(r, "parse", Filters::default(), 400);
        let rank = lex_all
            .iter()
            .position(|h| h.0 == target)
            .expect("the target matches");
        assert!(
            rank >= 250,
            "precondition: 250 noise units outrank the target lexically (rank {rank})"
        );
        let dense_all = r
            .vector(&vec_q(&vector_at(0.0), Filters::default(), 400, true))
            .expect("vector");
        assert_eq!(
            dense_all.last().map(|h| h.0),
            Some(target),
            "precondition: the target is last"
        );
        let noise_ids: Vec<UnitId> = dense_all
            .iter()
            .map(|h| h.0)
            .filter(|id| *id != target)
            .collect();
        assert_eq!(noise_ids.len(), 300);
        let filters = [
            Filters {
                languages: vec!["rust".into()],
                ..Filters::default()
            },
            Filters {
                kinds: vec!["class".into()],
                ..Filters::default()
            },
            Filters {
                repositories: vec!["target".into()],
                ..Filters::default()
            },
            Filters {
                path_globs: globs(&["src/**"]),
                ..Filters::default()
            },
            Filters {
                exclude_units: noise_ids,
                ..Filters::default()
            },
        ];
        for f in filters {
            for limit in [1, 3] {
                let l = lex(r, "parse", f.clone(), limit);
                assert_eq!(
                    l.iter().map(|h| h.0).collect::<Vec<_>>(),
                    [target],
                    "lexical {f:?} limit {limit}"
                );
                for exact in [false, true] {
                    let d = r
                        .vector(&vec_q(&vector_at(0.0), f.clone(), limit, exact))
                        .expect("vector");
                    assert_eq!(
                        d.iter().map(|h| h.0).collect::<Vec<_>>(),
                        [target],
                        "vector {f:?} limit {limit} exact {exact}"
                    );
                }
            }
        }
    }

    /// Re-upserting a changed file replaces its units (old ones gone from both legs), its entry
    /// and the counts; an unchanged unit keeps its vector through the key.
    pub fn refresh_replaces_files(h: &dyn Harness) {
        let store = populated(h);
        {
            let r = store.reader().expect("reader");
            assert_eq!(
                names(r.as_ref(), &lex(r.as_ref(), "feed", Filters::default(), 10)),
                ["HeaderParser"]
            );
        }
        let mut w = store.writer().expect("writer");
        let mut header = u(
            "parse_header",
            "function",
            "def parse_header(line):\n    return line.split(':')",
            1,
            1,
            0.0,
        );
        header.angle = None; // known key: reuses the cached vector
        w.upsert_files(
            "alpha",
            vec![file(
                "src/http.py",
                "python",
                "hash-http-2",
                200,
                &[
                    u(
                        "parse_trailer",
                        "function",
                        "def parse_trailer(line):\n    return line.strip()",
                        20,
                        20,
                        0.1,
                    ),
                    header,
                ],
            )],
        )
        .expect("refresh");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let r = r.as_ref();
        assert_eq!(
            r.units_of_file("alpha", "src/http.py")
                .expect("units_of_file")
                .into_iter()
                .map(|u| u.record.name)
                .collect::<Vec<_>>(),
            ["parse_header", "parse_trailer"]
        );
        assert_eq!(
            r.file("alpha", "src/http.py").expect("file"),
            Some(FileEntry {
                path: "src/http.py".into(),
                hash: "hash-http-2".into(),
                units: 2,
                bytes: 200
            })
        );
        assert!(
            lex(r, "feed", Filters::default(), 10).is_empty(),
            "the removed unit is gone from the lexical leg"
        );
        let all = r
            .vector(&vec_q(&vector_at(0.0), Filters::default(), 100, true))
            .expect("vector");
        let all_names = names(r, &all);
        assert!(
            !all_names.contains(&"HeaderParser".to_string()),
            "the removed unit is gone from the vector leg"
        );
        assert_eq!(all_names.len(), 7);
        assert_eq!(&all_names[..2], ["parse_header", "parse_trailer"]);
        assert_eq!(
            all_names.iter().filter(|n| *n == "parse_header").count(),
            1,
            "the old copy of a re-upserted unit is gone"
        );
        let header = id_of(r, "alpha", "src/http.py", "parse_header");
        assert_vector_close(
            &r.unit_vector(header).expect("unit_vector").expect("stored"),
            &vector_at(0.0),
            "cached vector",
        );
        let alpha = r
            .repositories()
            .expect("repositories")
            .into_iter()
            .find(|i| i.name == "alpha")
            .expect("alpha");
        assert_eq!((alpha.files, alpha.units, alpha.bytes), (3, 4, 340));
        let s = r.stats().expect("stats");
        assert_eq!((s.repositories, s.files, s.units), (2, 5, 7));
        assert!(s.vectors >= 8, "the new unit's vector is stored: {s:?}");
    }

    /// Deleting files removes them and their units everywhere; an unknown path is no error.
    pub fn delete_files(h: &dyn Harness) {
        let store = populated(h);
        let mut w = store.writer().expect("writer");
        w.delete_files(
            "alpha",
            &["src/size.rs".to_string(), "no/such/file.rs".to_string()],
        )
        .expect("delete_files");
        // A path of another repository is not touched.
        w.delete_files("beta", &["src/http.py".to_string()])
            .expect("delete_files");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let r = r.as_ref();
        let mut paths: Vec<String> = r
            .files("alpha")
            .expect("files")
            .into_iter()
            .map(|f| f.path)
            .collect();
        paths.sort();
        assert_eq!(paths, ["src/http.py", "tests/test_http.py"]);
        assert_eq!(r.file("alpha", "src/size.rs").expect("file"), None);
        assert!(
            r.units_of_file("alpha", "src/size.rs")
                .expect("units_of_file")
                .is_empty()
        );
        assert_eq!(
            r.units_of_file("alpha", "src/http.py")
                .expect("units_of_file")
                .len(),
            2
        );
        assert!(
            !names(r, &lex(r, "parse size", Filters::default(), 50))
                .contains(&"parse_size".to_string())
        );
        let all = names(r, &dense(r, 0.0, Filters::default(), 100));
        assert_eq!(
            all,
            [
                "parse_header",
                "HeaderParser",
                "test_parse_header",
                "parse_config",
                "Render",
                "format_value"
            ]
        );
        let mut repos = r.repositories().expect("repositories");
        repos.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(
            (repos[0].files, repos[0].units, repos[0].bytes),
            (2, 3, 180)
        );
        assert_eq!((repos[1].files, repos[1].units), (2, 3));
        let s = r.stats().expect("stats");
        assert_eq!((s.repositories, s.files, s.units), (2, 4, 6));
    }

    /// Deleting a repository removes its record, files and units; the others stay.
    pub fn delete_repository(h: &dyn Harness) {
        let store = populated(h);
        let mut w = store.writer().expect("writer");
        w.delete_repository("beta").expect("delete_repository");
        w.delete_repository("never-existed")
            .expect("deleting an unknown repository");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let r = r.as_ref();
        let repos: Vec<String> = r
            .repositories()
            .expect("repositories")
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(repos, ["alpha"]);
        assert!(r.files("beta").expect("files").is_empty());
        assert_eq!(r.file("beta", "lib/util.go").expect("file"), None);
        assert!(
            r.units_of_file("beta", "lib/parse.go")
                .expect("units_of_file")
                .is_empty()
        );
        assert!(
            lex(r, "format value", Filters::default(), 50)
                .iter()
                .all(|h| { r.units(&[h.0]).expect("units")[0].repository == "alpha" })
        );
        assert!(lex(r, "config", Filters::default(), 50).is_empty());
        assert_eq!(
            names(r, &dense(r, 0.0, Filters::default(), 100)),
            BY_ANGLE[..4]
        );
        let beta_only = Filters {
            repositories: vec!["beta".into()],
            ..Filters::default()
        };
        assert!(dense(r, 0.0, beta_only.clone(), 10).is_empty());
        assert!(lex(r, "parse", beta_only, 10).is_empty());
        let s = r.stats().expect("stats");
        assert_eq!((s.repositories, s.files, s.units), (1, 3, 4));
        // The name can be used again.
        let mut w = store.writer().expect("writer");
        w.put_repository(&repo("beta")).expect("put");
        w.upsert_files("beta", beta_files()[1..].to_vec())
            .expect("upsert");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let beta = r
            .repositories()
            .expect("repositories")
            .into_iter()
            .find(|i| i.name == "beta")
            .expect("beta again");
        assert_eq!((beta.files, beta.units), (1, 1));
    }

    /// One text twice in one batch (a copied function), given its vector once: both units
    /// carry it, and the vector is stored once.
    pub fn same_text_twice_in_one_batch(h: &dyn Harness) {
        let store = h.create(Some(embedding_info()));
        let mut w = store.writer().expect("writer");
        w.put_repository(&repo("alpha")).expect("put");
        let original = u("original", "function", "def f(): return 1", 1, 500, 0.3);
        let mut copy = u("copy", "function", "def f(): return 1", 1, 500, 0.3);
        copy.angle = None;
        w.upsert_files(
            "alpha",
            vec![
                file("a.py", "python", "ha", 17, &[original]),
                file("b.py", "python", "hb", 17, &[copy]),
            ],
        )
        .expect("a key given once in the batch");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        for (path, name) in [("a.py", "original"), ("b.py", "copy")] {
            let id = id_of(r.as_ref(), "alpha", path, name);
            assert_vector_close(
                &r.unit_vector(id).expect("unit_vector").expect("a vector"),
                &vector_at(0.3),
                name,
            );
        }
        let top = dense(r.as_ref(), 0.3, Filters::default(), 10);
        assert_eq!(sorted(names(r.as_ref(), &top)), ["copy", "original"]);
        assert_eq!(r.stats().expect("stats").vectors, 1, "one text, one vector");
    }

    /// The embedding cache: `known_keys` says which keys hold a vector; a known key may be
    /// written without one (and the unit gets the cached vector); an unknown one may not.
    pub fn embedding_cache(h: &dyn Harness) {
        let store = populated(h);
        let mut w = store.writer().expect("writer");
        assert_eq!(
            w.known_keys(&[key(1), key(999), key(7)])
                .expect("known_keys"),
            [true, false, true]
        );
        assert!(w.known_keys(&[]).expect("no keys").is_empty());
        let mut copy = u(
            "parse_header_copy",
            "function",
            "def parse_header(line):\n    return line.split(':')",
            1,
            1,
            0.0,
        );
        copy.angle = None;
        w.upsert_files(
            "beta",
            vec![file("lib/copy.py", "python", "hc", 50, &[copy])],
        )
        .expect("a known key without a vector");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let id = id_of(r.as_ref(), "beta", "lib/copy.py", "parse_header_copy");
        assert_vector_close(
            &r.unit_vector(id)
                .expect("unit_vector")
                .expect("the cached vector"),
            &vector_at(0.0),
            "cached vector",
        );
        let top = dense(r.as_ref(), 0.0, Filters::default(), 2);
        assert_eq!(
            sorted(names(r.as_ref(), &top)),
            ["parse_header", "parse_header_copy"]
        );
        assert_close(top[0].1, top[1].1, "same vector, same score");
        assert_eq!(
            r.stats().expect("stats").vectors,
            7,
            "a cached vector is not stored twice"
        );
        let before = view(r.as_ref());
        drop(r);

        // An unknown key without a vector is an error, at the upsert or at the commit.
        let mut w = store.writer().expect("writer");
        let mut orphan = u(
            "orphan_unit",
            "function",
            "def orphan_unit(): pass",
            1,
            999,
            0.0,
        );
        orphan.angle = None;
        let refused = match w.upsert_files(
            "alpha",
            vec![file("src/orphan.py", "python", "ho", 10, &[orphan])],
        ) {
            Err(_) => true,
            Ok(()) => w.commit(&CancellationToken::new()).is_err(),
        };
        assert!(
            refused,
            "a unit with an unknown key and no vector must be refused in a store with vectors"
        );
        drop(w);
        let r = store.reader().expect("reader");
        assert_eq!(view(r.as_ref()), before, "a refused write changes nothing");
        assert!(r.file("alpha", "src/orphan.py").expect("file").is_none());
        let mut w = store.writer().expect("a writer after a refused write");
        assert_eq!(w.known_keys(&[key(999)]).expect("known_keys"), [false]);
        w.upsert_files(
            "alpha",
            vec![file(
                "src/ok.py",
                "python",
                "hk",
                10,
                &[u(
                    "fine_unit",
                    "function",
                    "def fine_unit(): pass",
                    1,
                    998,
                    0.3,
                )],
            )],
        )
        .expect("upsert");
        commit(w.as_mut());
        assert_eq!(w.known_keys(&[key(998)]).expect("known_keys"), [true]);
    }

    /// A store without vectors: lexical works, units need no vectors, the vector leg is refused.
    pub fn lexical_only_store(h: &dyn Harness) {
        let store = h.create(None);
        assert_eq!(store.embedding(), None);
        let mut w = store.writer().expect("writer");
        w.put_repository(&repo("alpha")).expect("put");
        let mut files = alpha_files();
        for f in &mut files {
            for unit in &mut f.units {
                unit.vector = None;
            }
        }
        w.upsert_files("alpha", files)
            .expect("units without vectors");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let hits = lex(r.as_ref(), "parse size", Filters::default(), 10);
        assert_eq!(
            names(r.as_ref(), &hits).first().map(String::as_str),
            Some("parse_size")
        );
        assert_eq!(r.stats().expect("stats").units, 4);
        let err = r
            .vector(&vec_q(&vector_at(0.0), Filters::default(), 5, false))
            .expect_err("no vector leg");
        assert_eq!(err.kind(), ErrorKind::Incompatible, "{err}");
    }

    /// A reader is a snapshot: uncommitted writes are invisible to it and to readers taken
    /// meanwhile, and it keeps showing its commit (lexical, vector, units, files, repositories,
    /// stats) after later commits.
    pub fn snapshot_isolation(h: &dyn Harness) {
        let store = populated(h);
        let r1 = store.reader().expect("reader");
        let before = view(r1.as_ref());
        assert_eq!(before.dense, BY_ANGLE);
        let r1_hits = dense(r1.as_ref(), 0.0, Filters::default(), 100);
        let r1_units = stored(r1.as_ref(), &r1_hits);

        let mut w = store.writer().expect("writer");
        w.upsert_files(
            "alpha",
            vec![file(
                "src/http.py",
                "python",
                "hash-http-2",
                150,
                &[u(
                    "parse_line",
                    "function",
                    "def parse_line(s): return s",
                    1,
                    40,
                    0.05,
                )],
            )],
        )
        .expect("refresh");
        w.delete_files("alpha", &["src/size.rs".to_string()])
            .expect("delete");
        w.delete_repository("beta").expect("delete repository");
        w.put_repository(&repo("gamma")).expect("put gamma");
        w.upsert_files(
            "gamma",
            vec![file(
                "g.py",
                "python",
                "hg",
                30,
                &[u(
                    "parse_gamma",
                    "function",
                    "def parse_gamma(): parse()",
                    1,
                    41,
                    0.1,
                )],
            )],
        )
        .expect("upsert gamma");
        // Uncommitted: invisible to the old reader and to a new one.
        assert_eq!(view(r1.as_ref()), before, "the old reader during writes");
        let mid = store.reader().expect("reader during writes");
        assert_eq!(
            view(mid.as_ref()),
            before,
            "a reader taken during uncommitted writes"
        );
        let other = h.reopen().expect("reopen");
        assert_eq!(
            view(other.reader().expect("reader").as_ref()),
            before,
            "another process during uncommitted writes"
        );
        commit(w.as_mut());

        let r2 = store.reader().expect("reader");
        let after = view(r2.as_ref());
        assert_eq!(
            after.dense,
            ["parse_line", "parse_gamma", "test_parse_header"]
        );
        assert_eq!(
            after
                .repositories
                .iter()
                .map(|r| r.0.as_str())
                .collect::<Vec<_>>(),
            ["alpha", "gamma"]
        );
        assert_eq!(
            after.file_http.as_ref().map(|f| f.hash.as_str()),
            Some("hash-http-2")
        );
        assert_eq!(after.stats, (2, 3, 3));
        // Another process sees the commit.
        assert_eq!(view(other.reader().expect("reader").as_ref()), after);

        // A second commit on top.
        w.upsert_files(
            "gamma",
            vec![file(
                "g2.py",
                "python",
                "hg2",
                30,
                &[u(
                    "parse_more",
                    "function",
                    "def parse_more(): pass",
                    1,
                    42,
                    0.15,
                )],
            )],
        )
        .expect("upsert");
        commit(w.as_mut());
        drop(w);
        assert_eq!(
            store
                .reader()
                .expect("reader")
                .stats()
                .expect("stats")
                .units,
            4
        );

        // The first snapshot is unchanged in every read, and its ids still resolve.
        assert_eq!(
            view(r1.as_ref()),
            before,
            "the old reader after two commits"
        );
        assert_eq!(view(mid.as_ref()), before);
        assert_eq!(
            view(r2.as_ref()),
            after,
            "the second reader after a later commit"
        );
        let ids: Vec<UnitId> = r1_hits.iter().map(|h| h.0).collect();
        assert_eq!(r1.units(&ids).expect("units"), r1_units);
        let header = r1_units
            .iter()
            .find(|u| u.record.name == "parse_header")
            .expect("in r1")
            .id;
        assert_vector_close(
            &r1.unit_vector(header)
                .expect("unit_vector")
                .expect("stored"),
            &vector_at(0.0),
            "old snapshot vector",
        );
        let scores = r1
            .vector_scores(&[header], &vector_at(0.0))
            .expect("vector_scores");
        assert_close(scores[0].expect("a score"), 1.0, "old snapshot score");
        assert_eq!(
            r1.units_of_file("beta", "lib/parse.go")
                .expect("units_of_file")
                .len(),
            2
        );
        assert_eq!(
            names(
                r1.as_ref(),
                &lex(r1.as_ref(), "feed", Filters::default(), 5)
            ),
            ["HeaderParser"]
        );
        let beta = Filters {
            repositories: vec!["beta".into()],
            ..Filters::default()
        };
        assert_eq!(
            names(r1.as_ref(), &dense(r1.as_ref(), 0.0, beta, 1)),
            ["parse_config"]
        );
    }

    /// A writer dropped without committing leaves the last commit, also for the next writer's
    /// commit and for another process.
    pub fn dropped_writer_leaves_last_commit(h: &dyn Harness) {
        let store = populated(h);
        let before = view(store.reader().expect("reader").as_ref());
        {
            let mut w = store.writer().expect("writer");
            w.delete_repository("beta").expect("delete repository");
            w.delete_files("alpha", &["src/size.rs".to_string()])
                .expect("delete");
            w.put_repository(&repo("gamma")).expect("put");
            w.upsert_files(
                "gamma",
                vec![file(
                    "g.py",
                    "python",
                    "hg",
                    30,
                    &[u(
                        "parse_gamma",
                        "function",
                        "def parse_gamma(): pass",
                        1,
                        41,
                        0.1,
                    )],
                )],
            )
            .expect("upsert");
            w.upsert_files("alpha", vec![alpha_http()]).expect("upsert");
            // dropped here without commit
        }
        assert_eq!(view(store.reader().expect("reader").as_ref()), before);
        let other = h.reopen().expect("reopen");
        assert_eq!(view(other.reader().expect("reader").as_ref()), before);
        // The next writer commits something else; nothing of the dropped batch comes back.
        let mut w = store.writer().expect("a writer after a dropped one");
        w.upsert_files(
            "alpha",
            vec![file(
                "src/extra.py",
                "python",
                "he",
                10,
                &[u(
                    "extra_unit",
                    "function",
                    "def extra_unit(): pass",
                    1,
                    50,
                    1.4,
                )],
            )],
        )
        .expect("upsert");
        commit(w.as_mut());
        drop(w);
        let r = store.reader().expect("reader");
        let after = view(r.as_ref());
        assert_eq!(
            after.repositories,
            before
                .repositories
                .iter()
                .map(|r| if r.0 == "alpha" {
                    (r.0.clone(), 4, 5, 270)
                } else {
                    r.clone()
                })
                .collect::<Vec<_>>()
        );
        let mut want_dense: Vec<String> = BY_ANGLE.iter().map(|s| s.to_string()).collect();
        want_dense.push("extra_unit".into());
        assert_eq!(after.dense, want_dense);
        assert_eq!(after.stats, (2, 6, 8));
        assert!(r.files("gamma").expect("files").is_empty());
    }

    /// Two writers on the same repository: the second is refused with `Locked` (at `writer()`
    /// or at its first write there), from the same store value and from another one; after the
    /// first is gone a writer is granted.
    pub fn lock_refusal(h: &dyn Harness) {
        let store = populated(h);
        let other = h.reopen().expect("reopen");
        let mut w = store.writer().expect("writer");
        w.upsert_files(
            "alpha",
            vec![file(
                "src/first.py",
                "python",
                "hf",
                10,
                &[u(
                    "first_unit",
                    "function",
                    "def first_unit(): pass",
                    1,
                    60,
                    0.7,
                )],
            )],
        )
        .expect("the first writer writes");
        assert_second_writer_refused(
            store.as_ref(),
            "alpha",
            "a second writer from the same store",
        );
        assert_second_writer_refused(
            other.as_ref(),
            "alpha",
            "a second writer from another process",
        );
        // Readers are never blocked.
        assert_eq!(
            other
                .reader()
                .expect("reader")
                .stats()
                .expect("stats")
                .units,
            7
        );
        commit(w.as_mut());
        // Still held after a commit, until dropped.
        assert_second_writer_refused(
            other.as_ref(),
            "alpha",
            "a writer while the first one lives on after its commit",
        );
        drop(w);
        let mut w2 = other.writer().expect("a writer once the first is gone");
        w2.upsert_files(
            "alpha",
            vec![file(
                "src/second.py",
                "python",
                "hs",
                10,
                &[u(
                    "second_unit",
                    "function",
                    "def second_unit(): pass",
                    1,
                    61,
                    0.9,
                )],
            )],
        )
        .expect("the next writer writes");
        commit(w2.as_mut());
        drop(w2);
        let r = store.reader().expect("reader");
        assert_eq!(r.stats().expect("stats").units, 9);
        assert!(
            r.file("alpha", "src/intruder.py").expect("file").is_none(),
            "the refused writer wrote nothing"
        );
    }

    /// Reopening a store of this version keeps its data; a store claiming a newer version is
    /// refused with `Incompatible`.
    pub fn version_refusal(h: &dyn Harness) {
        let store = populated(h);
        let before = view(store.reader().expect("reader").as_ref());
        drop(store);
        let again = h.reopen().expect("reopening a store of this version");
        assert_eq!(again.embedding(), Some(&embedding_info()));
        assert_eq!(view(again.reader().expect("reader").as_ref()), before);
        drop(again);
        h.make_newer_version();
        match h.reopen() {
            Ok(_) => panic!("a store of a newer version must be refused"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
                assert!(
                    e.to_string().contains("version"),
                    "the error names the version: {e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The killed writer.

/// The batch the child writes and never commits.
fn child_batch(w: &mut dyn StoreWriter) -> Result<()> {
    w.delete_files("alpha", &["src/size.rs".to_string()])?;
    w.upsert_files(
        "alpha",
        vec![
            file(
                "src/http.py",
                "python",
                "hash-http-child",
                500,
                &[u(
                    "child_header",
                    "function",
                    "def child_header(): pass",
                    1,
                    70,
                    0.05,
                )],
            ),
            file(
                "src/child.py",
                "python",
                "hash-child",
                500,
                &(0..50u32)
                    .map(|i| {
                        u(
                            &format!("child_unit_{i}"),
                            "function",
                            "def child_unit(): pass",
                            1 + u64::from(i),
                            200 + i,
                            0.01,
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
        ],
    )?;
    w.delete_repository("beta")?;
    Ok(())
}

/// The child side of [`writer_killed_mid_run`]: opens the parent's store, writes a batch
/// without committing, prints [`CHILD_READY`] and sleeps until killed.
pub fn child_writer_main(h: &dyn Harness) -> ! {
    let run = || -> Result<Box<dyn StoreWriter>> {
        let store = h.open_from_env()?;
        let mut w = store.writer()?;
        child_batch(w.as_mut())?;
        // The store value is leaked so nothing of it is dropped before the kill.
        std::mem::forget(store);
        Ok(w)
    };
    match run() {
        Ok(w) => {
            println!("{CHILD_READY}");
            std::thread::sleep(Duration::from_secs(120));
            drop(w);
            eprintln!("conformance child: not killed within 120 s");
            std::process::exit(3)
        }
        Err(e) => {
            eprintln!("conformance child: {e}");
            println!("gnn-coder-conformance: child failed: {e}");
            std::process::exit(2)
        }
    }
}

/// Kills the child when dropped, so a failing parent leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The name libtest knows a test by, from the `module_path!()` of its expansion (the first
/// segment is the test crate).
pub fn test_name(module_path: &str, function: &str) -> String {
    match module_path.split_once("::") {
        Some((_, rest)) => format!("{rest}::{function}"),
        None => function.to_string(),
    }
}

/// A writer killed with SIGKILL while holding an uncommitted batch: the committed state is
/// intact, a new writer is granted and its commit is sound. `test` is this test's libtest name
/// (the child re-runs it); in the child (with [`CHILD_ENV`] set) it runs
/// [`child_writer_main`].
pub fn writer_killed_mid_run(h: &dyn Harness, test: &str) {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_writer_main(h);
    }
    let store = populated(h);
    let before = view(store.reader().expect("reader").as_ref());
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    for (k, v) in h.child_env() {
        cmd.env(k, v);
    }
    let mut child = KillOnDrop(cmd.spawn().expect("spawning the child writer"));
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<(), String>>();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(CHILD_READY) {
                let _ = tx.send(Ok(()));
                return;
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => {}
        Ok(Err(out)) => panic!("the child writer ended before it was ready:\n{out}"),
        Err(_) => panic!("the child writer was not ready within 60 s"),
    }
    // While the child holds its batch: nothing of it is visible, and its repository is locked.
    assert_eq!(
        view(store.reader().expect("reader").as_ref()),
        before,
        "an uncommitted batch of another process"
    );
    let other = h.reopen().expect("reopen");
    assert_second_writer_refused(
        other.as_ref(),
        "alpha",
        "a writer while a child process holds the lock",
    );
    drop(other);

    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("wait for the child");
    assert!(!status.success(), "the child was killed: {status:?}");
    drop(child);

    // The committed state is intact, for this store and another process.
    assert_eq!(
        view(store.reader().expect("reader").as_ref()),
        before,
        "after the kill"
    );
    let other: Arc<dyn Store> = Arc::from(h.reopen().expect("reopen after the kill"));
    assert_eq!(
        view(other.reader().expect("reader").as_ref()),
        before,
        "another process after the kill"
    );
    // A new writer is granted and writes soundly (new vectors land where they belong).
    let mut w = other.writer().expect("a writer after the killed one");
    assert_eq!(
        w.known_keys(&[key(1), key(70)]).expect("known_keys"),
        [true, false],
        "an uncommitted vector is not cached"
    );
    w.upsert_files(
        "alpha",
        vec![file(
            "src/after.py",
            "python",
            "ha",
            10,
            &[
                u(
                    "after_kill",
                    "function",
                    "def after_kill(): pass",
                    1,
                    80,
                    0.1,
                ),
                u(
                    "after_kill_two",
                    "function",
                    "def after_kill_two(): pass",
                    5,
                    81,
                    1.3,
                ),
            ],
        )],
    )
    .expect("upsert after the kill");
    commit(w.as_mut());
    drop(w);
    for s in [store.as_ref(), other.as_ref()] {
        let r = s.reader().expect("reader");
        let r = r.as_ref();
        let got = names(r, &dense(r, 0.0, Filters::default(), 100));
        let mut want: Vec<String> = BY_ANGLE.iter().map(|s| s.to_string()).collect();
        want.insert(1, "after_kill".into());
        want.push("after_kill_two".into());
        assert_eq!(got, want, "the new writer's vectors");
        let id = id_of(r, "alpha", "src/after.py", "after_kill_two");
        assert_vector_close(
            &r.unit_vector(id).expect("unit_vector").expect("stored"),
            &vector_at(1.3),
            "a vector written after the kill",
        );
        assert!(r.file("alpha", "src/child.py").expect("file").is_none());
        assert!(lex(r, "child", Filters::default(), 10).is_empty());
        assert_eq!(r.stats().expect("stats").units, 9);
    }
}

/// Expands to one `#[test]` per conformance case, each building its own harness from
/// `$harness` (an expression evaluated once per test), plus the killed-writer test whose child
/// process re-runs it.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            upsert_and_read_back,
            units_in_order_and_unknown_skipped,
            lexical_basics,
            vector_leg,
            filters_apply_inside_both_legs,
            filters_reach_past_many_better_units,
            refresh_replaces_files,
            delete_files,
            delete_repository,
            embedding_cache,
            same_text_twice_in_one_batch,
            lexical_only_store,
            snapshot_isolation,
            dropped_writer_leaves_last_commit,
            lock_refusal,
            version_refusal,
        );

        #[test]
        fn writer_killed_mid_run() {
            let harness = $harness;
            $crate::conformance::writer_killed_mid_run(
                &harness,
                &$crate::conformance::test_name(module_path!(), "writer_killed_mid_run"),
            );
        }
    };
    (@cases $harness:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let harness = $harness;
                $crate::conformance::cases::$case(&harness);
            }
        )*
    };
}
