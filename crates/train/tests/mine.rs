//! The miner on small fixture packages written at test time.

use std::collections::BTreeSet;
use std::path::Path;

use gnn_coder_syntax::{ExtractOptions, Language, extract_file};
use gnn_coder_train::{
    Drop, MineOptions, MineOutput, Pair, first_sentence, is_test_path, mine_sources, query_filter,
    split_packages, strip_docs,
};

const ALPHA_CORE: &str = r#"import os


def documented_function(path, mode="r"):
    """Open the file at the given path and read it.

    More details here. Not in the query.
    """
    with open(path, mode) as f:
        data = f.read()
    return data


class Reader:
    """A reader class that is not a function."""

    def read_all(self, n):
        """Read all the records from the underlying stream.

        Args:
            n: how many.
        """
        out = []
        for i in range(n):
            out.append(i)
        return out

    def __call__(self, x):
        """Call the reader with some input value here."""
        a = x
        b = a
        return b

    def _private_helper(self, x):
        """Compute a private value for internal use only."""
        a = x
        b = a
        return b

    def tiny(self):
        """Return a tiny constant value to the caller."""
        return 1

    def test_something_here(self):
        """Check that something works as it is expected to."""
        a = 1
        b = 2
        assert a != b

    def see_also(self):
        """See the other method for more details please."""
        a = 1
        b = 2
        return a + b

    def short_query(self):
        """Do it now."""
        a = 1
        b = 2
        return a + b

    def url_query(self):
        """Fetch data from https://example.com for the caller."""
        a = 1
        b = 2
        return a + b

    def nested_docs(self, items):
        """Build a nested closure that sums the given items."""
        def inner():
            """Inner docstring that must go away too."""
        return inner

    def noqa_doc(self):
        """Compute the noqa value for the linter right now."""  # noqa: E501
        x = 1
        y = 2
        return x + y

    def duplicate_one(self):
        """Return the duplicated description of this function."""
        x = 1
        y = 2
        return x


def inline_doc(): "An inline docstring that cannot be removed."; return 1


def latest_version(versions):
    """Pick the most recent version from the list given."""
    best = max(versions)
    return best
"#;

const ALPHA_OTHER: &str = r#"
def duplicate_two(x):
    """return the DUPLICATED description of this function."""
    y = x
    return y


def two_strings(x):
    """Compute the value with two leading strings here."""
    """This second string becomes the docstring once the first is gone."""
    y = x
    return y


def other_function(x):
    """Compute another value from the input for later."""
    y = x
    return y
"#;

const ALPHA_TEST: &str = r#"
def helper_in_tests(x):
    """Build a fixture value for the test suite here."""
    y = x
    return y
"#;

const BETA_LIB: &str = r#"//! Crate docs.

/// Parse the input string into a vector of numbers.
///
/// More text.
pub fn parse_numbers(input: &str) -> Vec<u32> {
    input
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(feature = "x")]
/// Compute the checksum of the given byte buffer.
#[inline]
pub fn checksum(data: &[u8]) -> u32 {
    let mut sum = 0u32;
    for b in data {
        sum = sum.wrapping_add(*b as u32);
    }
    sum
}

pub struct Thing;

impl Thing {
    /// Create a new thing with the default settings applied.
    pub fn new() -> Self {
        let t = Thing;
        t
    }

    /// Return the size of the thing in bytes here.
    pub fn size(&self) -> usize { 0 }
}

/// Holds a cached thread id for the current thread now.
fn cached_id() -> u64 {
    /// Inner static doc that must go away.
    static ID: u64 = 7;
    ID
}

/// Runs the async check of the whole runtime here.
#[tokio::test]
async fn runs_ok() {
    let a = 1;
    assert_eq!(a, 1);
}

#[cfg(test)]
mod checks {
    /// Build the fixture that the checks below use.
    fn build_fixture() -> u32 {
        let a = 1;
        a + 1
    }
}

/// Helper that builds the widget for the caller.
pub fn make_widget() -> u32 {
    let a = 1;
    a + 1
}
"#;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn simple_py(name: &str) -> String {
    format!(
        "def {name}_func(x):\n    \"\"\"Compute the {name} value of the input here.\"\"\"\n    y = x\n    return y\n"
    )
}

fn simple_rs(name: &str) -> String {
    format!(
        "/// Compute the {name} value of the input here.\npub fn {name}_func(x: u32) -> u32 {{\n    let y = x;\n    y\n}}\n"
    )
}

/// A sources tree: python/{alpha,gamma,delta,zeta}, rust/{beta-1.2.3,epsilon-0.1.0,eta-2.0.0}.
fn fixture(root: &Path) {
    write(root, "python/alpha/alpha/core.py", ALPHA_CORE);
    write(root, "python/alpha/alpha/other.py", ALPHA_OTHER);
    write(root, "python/alpha/alpha/tests/helpers.py", ALPHA_TEST);
    write(root, "python/alpha/alpha/test_utils.py", ALPHA_TEST);
    write(
        root,
        "python/alpha/alpha/_vendor/dep/mod.py",
        &simple_py("vendored"),
    );
    write(root, "python/alpha/alpha/stubs.pyi", &simple_py("stub"));
    for p in ["gamma", "delta", "zeta"] {
        write(root, &format!("python/{p}/{p}/__init__.py"), &simple_py(p));
    }
    write(root, "rust/beta-1.2.3/src/lib.rs", BETA_LIB);
    write(
        root,
        "rust/beta-1.2.3/tests/it.rs",
        &simple_rs("integration"),
    );
    write(root, "rust/beta-1.2.3/src/helper.py", &simple_py("script"));
    for p in ["epsilon-0.1.0", "eta-2.0.0"] {
        let name = p.split('-').next().unwrap();
        write(root, &format!("rust/{p}/src/lib.rs"), &simple_rs(name));
    }
}

fn mine(root: &Path, opts: &MineOptions) -> MineOutput {
    mine_sources(root, opts, &|_| {}).unwrap()
}

fn all(out: &MineOutput) -> Vec<&Pair> {
    out.train.iter().chain(&out.valid).collect()
}

fn pair<'a>(out: &'a MineOutput, symbol: &str) -> Option<&'a Pair> {
    all(out).into_iter().find(|p| p.symbol == symbol)
}

fn mined() -> (tempfile::TempDir, MineOutput) {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let out = mine(dir.path(), &MineOptions::default());
    (dir, out)
}

/// The code parses on its own (methods re-indented into a class) and has no doc left.
fn check_parses(p: &Pair) {
    let lang = Language::by_name(&p.lang).unwrap();
    let text = if p.lang == "python" && p.symbol.contains('.') {
        format!("class C:\n    {}\n", p.code)
    } else {
        p.code.clone()
    };
    let parsed = extract_file(lang, "x", text.as_bytes(), &ExtractOptions::default()).unwrap();
    assert!(
        !parsed.has_syntax_errors,
        "{} does not parse:\n{text}",
        p.symbol
    );
    for u in &parsed.units {
        assert!(
            u.doc.is_none(),
            "{} still has a doc in {}:\n{text}",
            u.symbol,
            p.symbol
        );
    }
}

#[test]
fn python_docstring_removed_rest_intact() {
    let (_d, out) = mined();
    let p = pair(&out, "documented_function").expect("documented_function mined");
    assert_eq!(p.query, "Open the file at the given path and read it.");
    assert_eq!(
        p.code,
        "def documented_function(path, mode=\"r\"):\n    with open(path, mode) as f:\n        data = f.read()\n    return data"
    );
    assert_eq!((p.start_line, p.end_line), (4, 11));
    assert_eq!(p.package, "alpha");
    assert_eq!(p.lang, "python");
    assert_eq!(p.path, "python/alpha/alpha/core.py");
    assert_eq!(p.id, "python/alpha/alpha/core.py:4");

    let p = pair(&out, "Reader.read_all").expect("method mined");
    assert_eq!(p.query, "Read all the records from the underlying stream.");
    assert_eq!(
        p.code,
        "def read_all(self, n):\n        out = []\n        for i in range(n):\n            out.append(i)\n        return out"
    );

    // A nested function's docstring goes too; as its only statement it becomes `pass`.
    let p = pair(&out, "Reader.nested_docs").expect("nested_docs mined");
    assert_eq!(
        p.code,
        "def nested_docs(self, items):\n        def inner():\n            pass\n        return inner"
    );
    // A trailing comment on the docstring's line goes with it.
    let p = pair(&out, "Reader.noqa_doc").expect("noqa_doc mined");
    assert_eq!(
        p.code,
        "def noqa_doc(self):\n        x = 1\n        y = 2\n        return x + y"
    );
    for p in all(&out) {
        check_parses(p);
        assert!(!p.code.contains("\"\"\""), "docstring left in {}", p.symbol);
    }
}

#[test]
fn rust_doc_comments_not_in_code() {
    let (_d, out) = mined();
    let p = pair(&out, "parse_numbers").expect("parse_numbers mined");
    assert_eq!(p.query, "Parse the input string into a vector of numbers.");
    assert!(
        p.code.starts_with("pub fn parse_numbers(input: &str)"),
        "{}",
        p.code
    );
    assert_eq!(p.package, "beta");
    assert_eq!(p.path, "rust/beta-1.2.3/src/lib.rs");

    // A doc comment after an attribute is inside the unit's span: removed, attributes kept.
    let p = pair(&out, "checksum").expect("checksum mined");
    assert_eq!(p.query, "Compute the checksum of the given byte buffer.");
    assert_eq!(
        p.code,
        "#[cfg(feature = \"x\")]\n#[inline]\npub fn checksum(data: &[u8]) -> u32 {\n    let mut sum = 0u32;\n    for b in data {\n        sum = sum.wrapping_add(*b as u32);\n    }\n    sum\n}"
    );
    // Doc comments of non-unit items inside the body go too.
    let p = pair(&out, "cached_id").expect("cached_id mined");
    assert_eq!(
        p.code,
        "fn cached_id() -> u64 {\n    static ID: u64 = 7;\n    ID\n}"
    );

    let p = pair(&out, "Thing::new").expect("method mined");
    assert_eq!(
        p.code,
        "pub fn new() -> Self {\n        let t = Thing;\n        t\n    }"
    );
    for p in all(&out).into_iter().filter(|p| p.lang == "rust") {
        assert!(!p.code.contains("///"), "doc comment left in {}", p.symbol);
        check_parses(p);
    }
}

#[test]
fn filters_drop_and_keep() {
    let (_d, out) = mined();
    let symbols: BTreeSet<&str> = all(&out).iter().map(|p| p.symbol.as_str()).collect();
    let kept = [
        "documented_function",
        "Reader.read_all",
        "Reader.nested_docs",
        "Reader.noqa_doc",
        "Reader.duplicate_one",
        "latest_version", // `latest` is not a test word
        "other_function",
        "parse_numbers",
        "checksum",
        "Thing::new",
        "cached_id",
        "gamma_func",
        "epsilon_func",
    ];
    for s in kept {
        assert!(symbols.contains(s), "{s} should be kept; got {symbols:?}");
    }
    let dropped = [
        ("Reader.__call__", Drop::PrivateName),
        ("Reader._private_helper", Drop::PrivateName),
        ("Reader.tiny", Drop::TooShort),
        ("Thing::size", Drop::TooShort),
        ("Reader.test_something_here", Drop::TestName),
        ("Reader.see_also", Drop::QuerySkipStart),
        ("Reader.short_query", Drop::QueryTooShort),
        ("Reader.url_query", Drop::QueryUrl),
        ("inline_doc", Drop::InlineDoc),
        ("two_strings", Drop::StripFailed),
        ("duplicate_two", Drop::DuplicateQuery),
        ("helper_in_tests", Drop::TestPath),
        ("runs_ok", Drop::TestAttribute),
        ("checks::build_fixture", Drop::TestAttribute),
        ("make_widget", Drop::QuerySkipStart), // "Helper ..."
        ("vendored_func", Drop::TestPath),     // _vendor is not walked
        ("stub_func", Drop::TestPath),         // .pyi is not walked
        ("integration_func", Drop::TestPath),  // tests/ is not walked
        ("script_func", Drop::TestPath),       // Python in a crate is not mined
    ];
    for (s, why) in dropped {
        assert!(!symbols.contains(s), "{s} should be dropped ({why:?})");
    }
    let count = |d: Drop| out.stats.dropped.get(d.as_str()).copied().unwrap_or(0);
    assert_eq!(count(Drop::PrivateName), 2);
    assert_eq!(count(Drop::TooShort), 3); // tiny, Thing::size, nested_docs.inner (`pass` only)
    assert_eq!(count(Drop::TestName), 1);
    assert_eq!(count(Drop::QuerySkipStart), 2);
    assert_eq!(count(Drop::QueryTooShort), 1);
    assert_eq!(count(Drop::QueryUrl), 1);
    assert_eq!(count(Drop::InlineDoc), 1);
    assert_eq!(count(Drop::DuplicateQuery), 1);
    assert_eq!(count(Drop::TestPath), 1); // alpha/tests is pruned; test_utils.py is counted
    assert_eq!(count(Drop::TestAttribute), 2);
    assert_eq!(count(Drop::StripFailed), 1); // two_strings: a docstring would be left
    let total: usize = out
        .stats
        .per_language
        .values()
        .flat_map(|m| m.values())
        .sum();
    assert_eq!(total, out.stats.pairs);
    assert_eq!(out.stats.pairs, kept.len() + 3); // + delta, zeta, eta
}

#[test]
fn duplicates_keep_the_first() {
    let (_d, out) = mined();
    let p = pair(&out, "Reader.duplicate_one").unwrap();
    assert_eq!(
        p.query,
        "Return the duplicated description of this function."
    );
    let queries: Vec<String> = all(&out).iter().map(|p| p.query.to_lowercase()).collect();
    let unique: BTreeSet<&String> = queries.iter().collect();
    assert_eq!(unique.len(), queries.len());
}

#[test]
fn output_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let mut texts = Vec::new();
    for threads in [1, 2, 0] {
        let opts = MineOptions {
            threads,
            ..MineOptions::default()
        };
        let out = mine(dir.path(), &opts);
        let o = dir.path().join(format!("out{threads}"));
        out.write(&o).unwrap();
        let read = |n: &str| std::fs::read_to_string(o.join(n)).unwrap();
        texts.push((
            read("pairs-train.jsonl"),
            read("pairs-valid.jsonl"),
            read("stats.json"),
        ));
        std::fs::remove_dir_all(&o).unwrap();
    }
    assert!(!texts[0].0.is_empty());
    assert_eq!(texts[0], texts[1]);
    assert_eq!(texts[0], texts[2]);
    let first: Pair = serde_json::from_str(texts[0].0.lines().next().unwrap()).unwrap();
    assert!(!first.query.is_empty());
}

#[test]
fn split_is_by_package() {
    let (_d, out) = mined();
    let train: BTreeSet<&str> = out.train.iter().map(|p| p.package.as_str()).collect();
    let valid: BTreeSet<&str> = out.valid.iter().map(|p| p.package.as_str()).collect();
    assert!(train.is_disjoint(&valid), "{train:?} / {valid:?}");
    assert!(!valid.is_empty() && !train.is_empty());
    // One of the 4 Python and one of the 3 Rust packages (10% rounds to 0, at least 1).
    let vp = &out.stats.valid_packages;
    assert_eq!(vp["python"].len(), 1, "{vp:?}");
    assert_eq!(vp["rust"].len(), 1, "{vp:?}");
    for p in &out.valid {
        assert!(vp[&p.lang].contains(&p.package));
    }
    // Stable: the split of a package depends on its name only, not on the order given.
    let names: Vec<String> = (0..40).map(|i| format!("pkg{i}")).collect();
    let mut rev = names.clone();
    rev.reverse();
    let v = split_packages(&names, 0.1);
    assert_eq!(v.len(), 4);
    assert_eq!(v, split_packages(&rev, 0.1));
    assert!(split_packages(&names[..1], 0.1).is_empty());
}

#[test]
fn denied_packages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path());
    let opts = MineOptions {
        deny: ["Gamma".to_string(), "epsilon".to_string()].into(),
        deny_queries: ["compute the delta value of the input here.".to_string()].into(),
        ..MineOptions::default()
    };
    let out = mine(dir.path(), &opts);
    let packages: BTreeSet<&str> = all(&out).iter().map(|p| p.package.as_str()).collect();
    assert!(!packages.contains("gamma") && !packages.contains("epsilon"));
    assert!(!packages.contains("delta"), "its only query is denied");
    assert!(packages.contains("alpha") && packages.contains("beta"));
    assert_eq!(
        out.stats.denied,
        ["python/gamma".to_string(), "rust/epsilon-0.1.0".to_string()]
    );
    assert_eq!(out.stats.dropped.get("dev_query"), Some(&1));
}

#[test]
fn first_sentence_rule() {
    let cases = [
        ("Open the file. More text.", "Open the file."),
        ("  Leading space!  Then more", "Leading space!"),
        ("Is it? yes", "Is it?"),
        (
            "Version 1.2 of the parser is used. Next",
            "Version 1.2 of the parser is used.",
        ),
        (
            "First line\n    continues here.\n\nSecond paragraph.",
            "First line continues here.",
        ),
        (
            "No terminator at all\nsecond line",
            "No terminator at all second line",
        ),
        ("Summary line\n\nDetails. More.", "Summary line"),
        ("Ends with dot.", "Ends with dot."),
        (".hidden files are. skipped", ".hidden files are."),
        ("Uses e.g. this one", "Uses e.g."),
        ("Returns `a.b` value.\nNext.", "Returns `a.b` value."),
    ];
    for (doc, want) in cases {
        assert_eq!(first_sentence(doc), want, "doc {doc:?}");
    }
}

#[test]
fn query_filter_rules() {
    let o = MineOptions::default();
    let f = |q: &str| query_filter(q, &o);
    assert_eq!(f("Open the file at the given path."), None);
    assert_eq!(f("Open the file."), Some(Drop::QueryTooShort));
    assert_eq!(f("One two three four"), None);
    let long = vec!["word"; 41].join(" ");
    assert_eq!(f(&long), Some(Drop::QueryTooLong));
    assert_eq!(f(&vec!["word"; 40].join(" ")), None);
    for q in [
        "See the other function for details.",
        "Same as the method above but faster.",
        "DEPRECATED: use the new API instead.",
        "Internal method to compute stuff.",
        "This is a helper for the parser.",
        "TODO: write a proper docstring here.",
        "Returns self for chaining the calls.",
        "Calls the underlying function with args.",
        "foo() does the real work here.",
        "Overridden from the base class here.",
    ] {
        assert_eq!(f(q), Some(Drop::QuerySkipStart), "{q}");
    }
    for q in [
        "`foo` returns the value of things.",
        ">>> foo(1) returns the value.",
        ":param x: the value to use.",
        "[deprecated] compute the value here.",
        "# Examples of using the thing.",
        "- a list item in the doc.",
        "* a list item in the doc.",
    ] {
        assert_eq!(f(q), Some(Drop::QueryBadStart), "{q}");
    }
    assert_eq!(
        f("Fetch it from http://x.org please."),
        Some(Drop::QueryUrl)
    );
    // mine.py's prefixes have no word boundary: `Notes ...` is skipped, `Seed ...` is not.
    assert_eq!(
        f("Notes are parsed from the given text."),
        Some(Drop::QuerySkipStart)
    );
    assert_eq!(f("Seed the random generator with a value."), None);
    assert_eq!(f("Return the selfie count for the user."), None);
}

#[test]
fn test_paths() {
    for p in [
        "pkg/tests/a.py",
        "pkg/test/a.py",
        "pkg/test_things/a.py",
        "pkg/test_a.py",
        "pkg/a_test.py",
        "src/tests.rs",
        "src/parser_tests.rs",
        "conftest.py",
    ] {
        assert!(is_test_path(p), "{p}");
    }
    for p in [
        "pkg/testing/utils.py",
        "pkg/latest.py",
        "src/contest.rs",
        "pkg/attest/a.py",
    ] {
        assert!(!is_test_path(p), "{p}");
    }
}

#[test]
fn strip_docs_direct() {
    let lang = Language::by_name("python").unwrap();
    let src = "class A:\n    def f(self):\n        '''Doc here.'''\n\n        # comment\n        return 1\n";
    let parsed = extract_file(lang, "a.py", src.as_bytes(), &ExtractOptions::default()).unwrap();
    let f = parsed.units.iter().find(|u| u.symbol == "A.f").unwrap();
    let s = strip_docs(f, &parsed.units).unwrap();
    assert_eq!(
        s.code,
        "def f(self):\n\n        # comment\n        return 1"
    );
    assert_eq!(s.body_lines, 4);
    // The class: its docstring-less body is left as is, the method's docstring goes.
    let a = parsed.units.iter().find(|u| u.symbol == "A").unwrap();
    let s = strip_docs(a, &parsed.units).unwrap();
    assert_eq!(
        s.code,
        "class A:\n    def f(self):\n\n        # comment\n        return 1"
    );

    // Only a docstring: replaced by `pass`.
    let src = "def g():\n    \"\"\"Only a doc.\n\n    More.\n    \"\"\"\n\n\nx = 1\n";
    let parsed = extract_file(lang, "a.py", src.as_bytes(), &ExtractOptions::default()).unwrap();
    let s = strip_docs(&parsed.units[0], &parsed.units).unwrap();
    assert_eq!(s.code, "def g():\n    pass");
    assert_eq!(s.body_lines, 2);
    // Sharing the `def` line: not removable.
    let src = "def h(): \"Doc.\"; return 1\n";
    let parsed = extract_file(lang, "a.py", src.as_bytes(), &ExtractOptions::default()).unwrap();
    assert_eq!(
        strip_docs(&parsed.units[0], &parsed.units),
        Err(Drop::InlineDoc)
    );
}
