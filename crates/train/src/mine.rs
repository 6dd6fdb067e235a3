//! Mining (query, code) training pairs from real packages, the CodeSearchNet way.
//!
//! # Method
//!
//! The input is a *sources tree* as written by `training/fetch_train_sources.sh`:
//! `SOURCES/<group>/<package dir>/...`, where `<group>` is `python` (unpacked wheels / sdists,
//! one directory per package) or `rust` (crates as cargo unpacks them, `<crate>-<version>`). The
//! package name is the directory name without a trailing `-<version>`. When `<group>` is the name
//! of a registered language, only files of that language are mined in it (a crate's helper
//! Python scripts are not Rust training data), as in `../shared/bench/mine.py`.
//!
//! Every package is walked with [`gnn_coder_syntax::walk_repo`] (which skips vendored, build and
//! generated code), ignoring `.gitignore` files (a package ships what it ships) and, in addition
//! to the walker's defaults, the directories in [`EXTRA_EXCLUDED_DIRS`] (tests, benches,
//! examples, and the vendored-copy directories mine.py skips: `_vendor`, `_vendored`, `extern`,
//! `_externals`, plus `vendored`, `externals`: setuptools and scikit-learn vendor `packaging`, a
//! dev-benchmark package), the known copies of dev-benchmark code in [`DEV_COPIES`], and Python
//! stubs (`*.pyi`). For every function or method that has documentation (the unit's `doc`, which the
//! syntax crate extracts for every language), one pair is made:
//!
//! * **query** = [`first_sentence`] of the doc: first paragraph, lines joined, cut after the first
//!   `.`, `!` or `?` followed by whitespace (mine.py's `first_sentence`, character for character),
//!   for Python and Rust. Every other language follows its own documentation convention
//!   ([`crate::doc`]: JSDoc/TSDoc, Javadoc, PHPDoc, Go doc comments, YARD/RDoc, Doxygen): only
//!   the comment its doc tools read counts, and the query is the first sentence of its
//!   description, without tags, markup or the declared name repeated.
//! * **code** = the unit's code with its documentation removed ([`strip_docs`]). The syntax crate
//!   records where each doc was read from ([`CodeUnit::doc_spans`]); every such range inside the
//!   unit — the unit's own docstring and those of nested functions and classes, as the benchmark
//!   corpus has all of them removed — is cut out together with its lines when it stands on lines
//!   of its own. Language rules are data ([`LangRules`]): a Python docstring that was the only
//!   statement of its body is replaced by `pass`, so the code still parses; Rust doc comments
//!   normally precede the unit's span, but a `///` after an attribute (`#[cfg(x)] /// doc fn f`)
//!   is inside it and is removed the same way. The result is re-parsed on its own: it must still
//!   parse (when the original did; [`parse_alone`] puts a method back into a class where its
//!   language needs one, and PHP code after `<?php`) and its definition must have no documentation left, otherwise the unit is
//!   dropped ([`Drop::StripFailed`]). A docstring sharing a line with code (`def f(): "doc"`) is
//!   not removed; such a unit is dropped ([`Drop::InlineDoc`]).
//!
//! # Filters
//!
//! Applied in this order; the first that matches is counted in [`MineStats::dropped`]:
//!
//! | [`Drop`] | rule |
//! |---|---|
//! | `test_path` | a file named `test_*`, `*_test`, `*_tests`, `*_spec`, `test`, `tests`, `conftest`, `*.test.*`, `*.spec.*`, `FooTest.*`, or under a directory `test`, `tests`, `test_*`, `spec`, `specs`, `__tests__` (`test`, `tests` are not even walked); the rule the search engine demotes by too ([`gnn_coder_store::test_code`]) |
//! | `private_name` | the name starts with `_` — all of them, dunder methods (`__init__`, `__call__`) included, as mine.py does |
//! | `test_name` | the qualified symbol or the name has a word starting with `test` (`test_parse`, `TestCase.setUp`, `tests::helper`, `parse_test`, `HTTPTestServer`), words split as the search index splits identifiers ([`gnn_coder_store::words`]) — CodeSearchNet drops names containing `test`; splitting into words keeps `latest`, `contest`, `pytest_configure`, and `Testament`, `testimony` are not test words |
//! | `test_attribute` | the unit or an enclosing unit (a `mod tests`) carries a test attribute or decorator: `#[test]`, `#[cfg(test)]`, `#[tokio::test]`, `#[bench]`, `@pytest.mark...` (an `#[...]` / `@...` line before the definition line with a word `pytest` or starting with `test` or `bench`, not `not(test)`; [`gnn_coder_store::test_code::is_test_attribute`]) |
//! | `not_doc_comment` | the comment above is not the language's documentation form: a `//` comment above a JavaScript, Java or PHP function, a plain `/* */` in C, a file header (`@file`, `@license`), Ruby's `:nodoc:` ([`crate::doc`]) |
//! | `deprecated` | the doc marks the unit deprecated (`@deprecated`, Go's `Deprecated:`, `\deprecated`) |
//! | `no_description` | the doc holds only tags, or only `{@inheritDoc}` |
//! | `query_not_prose` | (languages other than Python and Rust) the first sentence is a ruler, `For example: ...`, or under 75% letters and spaces |
//! | `query_too_short` / `query_too_long` | fewer than 4 or more than 40 whitespace-separated words |
//! | `query_skip_start` | starts with mine.py's `SKIP_START` (`see `, `same as`, `alias`, `deprecated`, `internal`, `equivalent to`, `shorthand`, `this is `, `todo`, `note`, `helper`, `wrapper`, `backward`, `compat`, `implementation of`, `return(s) self`, `overrid(e)`, `call(s) `, `like `, `name() `), case-insensitively |
//! | `query_bad_start` | a backtick in the first 3 characters, or starts with `>>>`, `:`, `[`, `#`, `-`, `*` |
//! | `query_url` | contains `http://` or `https://` |
//! | `dev_query` | the query is one of the dev benchmark's ([`MineOptions::deny_queries`]) |
//! | `inline_doc` | the docstring shares a line with code, so it cannot be removed cleanly |
//! | `strip_failed` | the code does not parse after removal (when it did before), or still has a doc |
//! | `too_short` | fewer than 3 lines from the definition line (`def`/`fn`) to the end, after removal (mine.py: `end_lineno - lineno < 2`) |
//! | `duplicate_query` | the same query (case-insensitively) as an earlier pair in the order group, package, path, line: the first is kept (mine.py drops every copy, which a benchmark needs and training does not) |
//!
//! # Split
//!
//! Train and validation are split **by package**, never by function: in each group the packages
//! are ranked by a fixed 64-bit FNV-1a hash of their name and the first `round(10%)` (at least
//! one when the group has two packages or more) go to validation ([`split_packages`]).
//! Packages named in a deny list (the dev benchmark manifest) are refused before walking.
//!
//! Everything is deterministic: files are processed in parallel but collected in path order, and
//! `stats.json` holds no timings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use gnn_coder_syntax::{
    CodeUnit, DEFAULT_EXCLUDED_DIRS, ExtractOptions, Language, WalkOptions, extract_file,
    standalone_contexts, walk_repo,
};
use serde::{Deserialize, Serialize};

/// Directories skipped in addition to the walker's [`DEFAULT_EXCLUDED_DIRS`].
pub const EXTRA_EXCLUDED_DIRS: &[&str] = &[
    "test",
    "tests",
    "benches",
    "examples",
    "_vendor",
    "_vendored",
    "vendored",
    "extern",
    "_externals",
    "externals",
];

/// Code in training packages copied from dev-benchmark packages (found by grepping the fetched
/// sources for "vendored from" / "fork of"), excluded by default ([`MineOptions::exclude`]):
/// `group/package/glob`, the glob relative to the package directory.
pub const DEV_COPIES: &[&str] = &[
    // "Vendored from https://github.com/pypa/packaging" (packaging is a dev package)
    "python/pandas/pandas/util/version/**",
    "python/seaborn/seaborn/external/version.py",
    // "Fork of `textwrap` crate"
    "rust/clap_builder/src/output/textwrap/**",
    // "copied verbatim from the regex-syntax crate" (Look, LookSet)
    "rust/regex-automata/src/util/look.rs",
];

/// One training pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// `path:start_line`, unique in a run.
    pub id: String,
    /// Package name (`django`, `tokio`), without version.
    pub package: String,
    /// Language of the code (`python`, `rust`).
    pub lang: String,
    /// Path relative to the sources root, `/`-separated (`python/django/django/db/utils.py`).
    pub path: String,
    /// Qualified symbol (`Class.method`, `Type::method`).
    pub symbol: String,
    /// First sentence of the documentation.
    pub query: String,
    /// The unit's code with its documentation removed.
    pub code: String,
    /// 1-based line span of the unit in the file (before removal).
    pub start_line: usize,
    pub end_line: usize,
    /// Column (bytes of leading whitespace) of the unit's first line in its file: lines after
    /// the first lose up to this much indentation to re-parse the code on its own
    /// ([`dedent_tail`]).
    #[serde(default)]
    pub indent: usize,
}

/// Why a documented function was not turned into a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drop {
    TestPath,
    PrivateName,
    TestName,
    TestAttribute,
    QueryTooShort,
    QueryTooLong,
    QuerySkipStart,
    QueryBadStart,
    QueryUrl,
    InlineDoc,
    StripFailed,
    TooShort,
    DevQuery,
    DuplicateQuery,
    /// The comment above is not the language's documentation form (a `//` comment above a
    /// JavaScript function, a plain `/* */` in C, a file header, `:nodoc:`).
    NotDocComment,
    /// The documentation has no description: only tags, or `{@inheritDoc}`.
    NoDescription,
    /// The documentation marks the unit deprecated.
    Deprecated,
    /// The first sentence is not prose (a ruler, `For example: ...`, mostly symbols).
    NotProse,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::TestPath => "test_path",
            Drop::PrivateName => "private_name",
            Drop::TestName => "test_name",
            Drop::TestAttribute => "test_attribute",
            Drop::QueryTooShort => "query_too_short",
            Drop::QueryTooLong => "query_too_long",
            Drop::QuerySkipStart => "query_skip_start",
            Drop::QueryBadStart => "query_bad_start",
            Drop::QueryUrl => "query_url",
            Drop::InlineDoc => "inline_doc",
            Drop::StripFailed => "strip_failed",
            Drop::TooShort => "too_short",
            Drop::DevQuery => "dev_query",
            Drop::DuplicateQuery => "duplicate_query",
            Drop::NotDocComment => "not_doc_comment",
            Drop::NoDescription => "no_description",
            Drop::Deprecated => "deprecated",
            Drop::NotProse => "query_not_prose",
        }
    }
}

/// Which split a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Valid,
}

/// Options of [`mine_sources`] / [`mine_package`].
#[derive(Debug, Clone)]
pub struct MineOptions {
    /// Languages mined in groups not named after a language; empty = all registered.
    pub languages: Vec<String>,
    /// Minimum lines from the definition line to the end, after removal. Default 3.
    pub min_code_lines: usize,
    /// Query length bounds in words. Default 4..=40.
    pub min_query_words: usize,
    pub max_query_words: usize,
    /// Fraction of the packages of each group that go to validation. Default 0.1.
    pub valid_fraction: f64,
    /// Package names (any spelling; compared normalised) that must never be mined.
    pub deny: BTreeSet<String>,
    /// Queries (compared lowercased) that must not appear in the output: the dev benchmark's,
    /// so that code copied between packages cannot leak a dev pair ([`Drop::DevQuery`]).
    pub deny_queries: BTreeSet<String>,
    /// Files never mined: `group/package/glob` (package name without version, glob relative to
    /// the package directory). Default [`DEV_COPIES`].
    pub exclude: Vec<String>,
    /// Parser threads; 0 = all cores.
    pub threads: usize,
}

impl Default for MineOptions {
    fn default() -> Self {
        MineOptions {
            languages: vec!["python".into(), "rust".into()],
            min_code_lines: 3,
            min_query_words: 4,
            max_query_words: 40,
            valid_fraction: 0.1,
            deny: BTreeSet::new(),
            deny_queries: BTreeSet::new(),
            exclude: DEV_COPIES.iter().map(|s| s.to_string()).collect(),
            threads: 0,
        }
    }
}

/// Counts of one package.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageStats {
    pub group: String,
    pub split: Option<Split>,
    pub files: usize,
    /// Functions and methods found.
    pub functions: usize,
    /// ... of which have documentation.
    pub documented: usize,
    /// Pairs kept (after deduplication).
    pub pairs: usize,
}

/// What a run did (`stats.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MineStats {
    pub packages: usize,
    pub files: usize,
    pub functions: usize,
    pub documented: usize,
    /// Documented functions dropped, per [`Drop`] reason.
    pub dropped: BTreeMap<String, usize>,
    /// Files the walker skipped (or directories it pruned), per reason.
    pub walker_skips: BTreeMap<String, usize>,
    pub pairs: usize,
    pub train: usize,
    pub valid: usize,
    /// language -> split -> pairs.
    pub per_language: BTreeMap<String, BTreeMap<Split, usize>>,
    /// `group/package` -> counts.
    pub per_package: BTreeMap<String, PackageStats>,
    /// group -> packages in validation.
    pub valid_packages: BTreeMap<String, Vec<String>>,
    /// Package directories refused because they are in the deny list.
    pub denied: Vec<String>,
}

/// The pairs of a run, split, and its stats.
#[derive(Debug, Clone, Default)]
pub struct MineOutput {
    pub train: Vec<Pair>,
    pub valid: Vec<Pair>,
    pub stats: MineStats,
}

impl MineOutput {
    /// Writes `pairs-train.jsonl`, `pairs-valid.jsonl` and `stats.json` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, pairs) in [
            ("pairs-train.jsonl", &self.train),
            ("pairs-valid.jsonl", &self.valid),
        ] {
            let path = dir.join(name);
            let mut text = String::new();
            for p in pairs {
                text.push_str(&serde_json::to_string(p)?);
                text.push('\n');
            }
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let path = dir.join("stats.json");
        std::fs::write(&path, serde_json::to_string_pretty(&self.stats)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Queries

/// Python's `str.splitlines` boundaries.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// The first sentence of a doc, exactly as mine.py's `first_sentence`: strip, keep the first
/// paragraph (up to the first `"\n\n"`), join its lines (each stripped) with spaces, and cut after
/// the first `.`, `!` or `?` that follows at least one character and is followed by whitespace or
/// the end.
pub fn first_sentence(doc: &str) -> String {
    first_sentence_where(doc, |_| true)
}

/// [`first_sentence`] that cuts only where `may_end(text before the mark)` agrees (the later
/// languages' rule skips abbreviations, [`crate::doc::first_sentence_ml`]).
pub(crate) fn first_sentence_where(doc: &str, may_end: impl Fn(&str) -> bool) -> String {
    let doc = doc.trim();
    let para = doc.split("\n\n").next().unwrap_or("");
    let mut lines: Vec<&str> = Vec::new();
    let mut rest = para;
    while !rest.is_empty() {
        match rest.char_indices().find(|&(_, c)| is_line_break(c)) {
            Some((i, c)) => {
                lines.push(&rest[..i]);
                let mut next = i + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    let para = lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ");
    let chars: Vec<(usize, char)> = para.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if k >= 1
            && matches!(c, '.' | '!' | '?')
            && chars.get(k + 1).is_none_or(|&(_, n)| n.is_whitespace())
            && may_end(&para[..i])
        {
            return para[..i + c.len_utf8()].trim().to_string();
        }
    }
    para.trim().to_string()
}

/// mine.py's `SKIP_START` alternatives (matched case-insensitively at the start), except
/// `\w+\(\) ` which is checked by hand.
const SKIP_START: &[&str] = &[
    "see ",
    "same as",
    "alias",
    "deprecated",
    "internal",
    "equivalent to",
    "shorthand",
    "this is ",
    "todo",
    "note",
    "helper",
    "wrapper",
    "backward",
    "compat",
    "implementation of",
    "return self",
    "returns self",
    "override",
    "overrid",
    "call ",
    "calls ",
    "like ",
];

/// Why a query is not usable (mine.py's `good_query` with the word bounds of `opts`), or `None`.
pub fn query_filter(q: &str, opts: &MineOptions) -> Option<Drop> {
    let words = q.split_whitespace().count();
    if words < opts.min_query_words {
        return Some(Drop::QueryTooShort);
    }
    if words > opts.max_query_words {
        return Some(Drop::QueryTooLong);
    }
    let lower = q.to_lowercase();
    if SKIP_START.iter().any(|p| lower.starts_with(p)) {
        return Some(Drop::QuerySkipStart);
    }
    // `\w+\(\) `
    let word_end = q
        .char_indices()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
        .map_or(q.len(), |(i, _)| i);
    if word_end > 0 && q[word_end..].starts_with("() ") {
        return Some(Drop::QuerySkipStart);
    }
    if q.chars().take(3).any(|c| c == '`')
        || [">>>", ":", "[", "#", "-", "*"]
            .iter()
            .any(|p| q.starts_with(p))
    {
        return Some(Drop::QueryBadStart);
    }
    if q.contains("http://") || q.contains("https://") {
        return Some(Drop::QueryUrl);
    }
    None
}

// ------------------------------------------------------------------------------------------
// Names and paths

/// A test file: the shared rule of [`gnn_coder_store::test_code`] (`test_*`, `*_test`,
/// `*_tests`, `test`, `tests`, `conftest`, `*.spec.*`, `FooTest.java`, ..., or under a directory
/// `test`, `tests`, `test_*`, `spec`, `specs`, `__tests__`). `rel` is `/`-separated.
pub use gnn_coder_store::test_code::is_test_path;

/// Attribute / decorator lines of a unit before its definition line mark it as a test
/// ([`gnn_coder_store::test_code::is_test_attribute`]).
fn has_test_marker(unit: &CodeUnit) -> bool {
    let header = unit.def_line.saturating_sub(unit.start_line);
    unit.code
        .lines()
        .take(header)
        .any(gnn_coder_store::test_code::is_test_attribute)
}

/// Normalised package name: lowercase, runs of `-`, `_`, `.` as one `-` (PEP 503; crates alike).
pub fn normalize_package(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Package name of a package directory: the name without a trailing `-<version>`.
pub fn package_name(dir: &str) -> String {
    match dir.rsplit_once('-') {
        Some((name, ver)) if !name.is_empty() && ver.starts_with(|c: char| c.is_ascii_digit()) => {
            name.to_string()
        }
        _ => dir.to_string(),
    }
}

/// Package names in a benchmark manifest (`{"python": ["pkg==ver"], "rust": {"crate": "ver"},
/// "javascript": {"@scope/pkg": "ver"}, "go": {"golang-x-dev": "ver"}, "java": {"pkg/sub": "ver"}}`),
/// normalised.
pub fn manifest_packages(json: &str) -> Result<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_str(json).context("parsing manifest")?;
    let mut out = BTreeSet::new();
    if let Some(list) = v.get("python").and_then(|p| p.as_array()) {
        for s in list.iter().filter_map(|s| s.as_str()) {
            let name = s
                .split(['=', '<', '>', '!', '~', ' ', '['])
                .next()
                .unwrap_or(s);
            out.insert(normalize_package(name));
        }
    }
    if let Some(map) = v.get("rust").and_then(|r| r.as_object()) {
        out.extend(map.keys().map(|k| normalize_package(k)));
    }
    // npm packages, Debian packages, "debian-pkg/SUBDIR": named as the fetch script names their
    // folders (`@scope/name` -> `scope__name`, `pkg/sub` -> `pkg__sub`).
    for group in ["javascript", "typescript", "go", "java"] {
        if let Some(map) = v.get(group).and_then(|r| r.as_object()) {
            out.extend(
                map.keys()
                    .map(|k| normalize_package(&k.trim_start_matches('@').replace('/', "__"))),
            );
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// Removing documentation

/// Per-language rules for removing documentation from code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LangRules {
    /// Line-comment prefix, skipped when looking for the statement after a removed docstring.
    pub line_comment: &'static str,
    /// Statement put in place of documentation that was the only statement of a block
    /// (Python `pass`); `None` when removing documentation never empties a block.
    pub empty_block: Option<&'static str>,
    /// Prefixes of comment lines that are documentation wherever they stand (Rust `///`, `//!`;
    /// a prefix followed by its own last character, `////`, is not): such lines inside a unit
    /// are removed too, e.g. the doc of a `static` in a function body, which is no unit.
    pub doc_lines: &'static [&'static str],
}

/// The rules of a language. Languages whose docs are comments before the definition need no
/// entry: removing whole comment lines is always valid.
pub fn lang_rules(language: &str) -> LangRules {
    match language {
        "python" => LangRules {
            line_comment: "#",
            empty_block: Some("pass"),
            doc_lines: &[],
        },
        "rust" => LangRules {
            line_comment: "//",
            empty_block: None,
            doc_lines: &["///", "//!"],
        },
        "ruby" => LangRules {
            line_comment: "#",
            empty_block: None,
            doc_lines: &[],
        },
        _ => LangRules {
            line_comment: "//",
            empty_block: None,
            doc_lines: &[],
        },
    }
}

/// A unit's code with its documentation removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    pub code: String,
    /// Lines from the definition line to the end, after removal.
    pub body_lines: usize,
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_whitespace())
}

/// Removes from `unit.code` its own documentation and that of every unit of `file_units` nested
/// in it (the units of the same file, as extracted). A doc range standing on lines of its own is
/// removed with its lines; a nested one sharing a line with code is left alone; the unit's own
/// sharing a line with code gives [`Drop::InlineDoc`]. See [`LangRules`] for emptied blocks.
pub fn strip_docs(unit: &CodeUnit, file_units: &[CodeUnit]) -> Result<Stripped, Drop> {
    let rules = lang_rules(&unit.language);
    let code = unit.code.as_bytes();
    let (base, n) = (unit.start_byte, code.len());
    if unit.end_byte.checked_sub(base) != Some(n) {
        // Lossy UTF-8 decoding changed the length: byte ranges do not map onto `code`.
        return Err(Drop::StripFailed);
    }
    let mut spans: Vec<((usize, usize), bool)> =
        unit.doc_spans.iter().map(|&s| (s, true)).collect();
    for u in file_units {
        let nested = u.start_byte >= base
            && u.end_byte <= unit.end_byte
            && (u.start_byte, u.end_byte) != (unit.start_byte, unit.end_byte);
        if nested {
            spans.extend(u.doc_spans.iter().map(|&s| (s, false)));
        }
    }
    spans.sort();
    spans.dedup_by(|a, b| a.0 == b.0);

    // (start, end, replacement) relative to `code`.
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for ((s, e), own) in spans {
        if s < base || e > base + n || s >= e {
            if own && s < base + n && e > base {
                return Err(Drop::StripFailed); // straddles the span
            }
            continue; // outside the code (a doc comment above the span)
        }
        let (s, e) = (s - base, e - base);
        let ls = code[..s]
            .iter()
            .rposition(|&c| c == b'\n')
            .map_or(0, |i| i + 1);
        // A line comment node may end with its newline.
        let le = if code[e - 1] == b'\n' {
            e
        } else {
            code[e..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(n, |i| e + i + 1)
        };
        // Only whitespace before it on its line, and whitespace or a comment (`# noqa`) after it.
        let after = String::from_utf8_lossy(&code[e..le]);
        let after = after.trim();
        let own_lines = (ls > 0 || s == 0)
            && is_blank(&code[ls..s])
            && (after.is_empty() || after.starts_with(rules.line_comment));
        if !own_lines {
            if own {
                return Err(Drop::InlineDoc);
            }
            continue;
        }
        let mut replacement = String::new();
        if let Some(stmt) = rules.empty_block {
            let indent = s - ls;
            let next = code[le..]
                .split(|&c| c == b'\n')
                .map(|l| {
                    let t = l
                        .iter()
                        .position(|c| !c.is_ascii_whitespace())
                        .unwrap_or(l.len());
                    (t, &l[t..])
                })
                .find(|(_, t)| !t.is_empty() && !t.starts_with(rules.line_comment.as_bytes()));
            if next.is_none_or(|(t, _)| t < indent) {
                replacement.push_str(&String::from_utf8_lossy(&code[ls..s]));
                replacement.push_str(stmt);
                if code[le - 1] == b'\n' {
                    replacement.push('\n');
                }
            }
        }
        edits.push((ls, le, replacement));
    }
    // Doc comments of items that are not units (a `static` in a body, `//!`): whole lines.
    if !rules.doc_lines.is_empty() {
        let mut ls = 0;
        for line in code.split_inclusive(|&c| c == b'\n') {
            let t = String::from_utf8_lossy(line);
            let t = t.trim_start();
            let is_doc = rules
                .doc_lines
                .iter()
                .any(|p| t.starts_with(p) && !t[p.len()..].starts_with(&p[p.len() - 1..]));
            if is_doc && ls > 0 {
                edits.push((ls, ls + line.len(), String::new()));
            }
            ls += line.len();
        }
    }
    edits.sort_by_key(|&(s, e, _)| (s, e));
    let mut end = 0;
    edits.retain(|&(s, e, _)| {
        let keep = s >= end;
        if keep {
            end = e;
        }
        keep
    });

    let header = unit.def_line.saturating_sub(unit.start_line);
    let def_off = if header == 0 {
        0
    } else {
        code.iter()
            .enumerate()
            .filter(|&(_, &c)| c == b'\n')
            .nth(header - 1)
            .map_or(n, |(i, _)| i + 1)
    };
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut pos = 0;
    let mut new_def_off = def_off as isize;
    for (s, e, rep) in &edits {
        if *e <= def_off {
            new_def_off += rep.len() as isize - (e - s) as isize;
        } else if *s < def_off {
            new_def_off -= (def_off - s) as isize;
        }
        out.extend_from_slice(&code[pos..*s]);
        out.extend_from_slice(rep.as_bytes());
        pos = *e;
    }
    let new_def_off = new_def_off.max(0) as usize;
    out.extend_from_slice(&code[pos..]);
    let code = String::from_utf8(out).map_err(|_| Drop::StripFailed)?;
    let body_lines = code
        .get(new_def_off.min(code.len())..)
        .map_or(0, |t| t.lines().count());
    Ok(Stripped { code, body_lines })
}

/// Lines after the first lose up to `indent` leading whitespace bytes: a method's text becomes a
/// module-level definition that parses on its own.
pub fn dedent_tail(code: &str, indent: usize) -> String {
    let mut out = String::with_capacity(code.len());
    for (i, line) in code.split_inclusive('\n').enumerate() {
        if i == 0 || indent == 0 {
            out.push_str(line);
        } else {
            let ws = line
                .bytes()
                .take(indent)
                .take_while(|&c| c == b' ' || c == b'\t')
                .count();
            out.push_str(&line[ws..]);
        }
    }
    out
}

/// A unit's code parsed on its own ([`parse_alone`]).
#[derive(Debug)]
pub struct Alone {
    pub parsed: gnn_coder_syntax::FileResult,
    /// Index of the first function-like unit in `parsed.units`.
    pub unit: usize,
    /// Parsed without syntax errors.
    pub clean: bool,
}

/// Parses one unit's code (already dedented, [`dedent_tail`]) on its own, in the first context
/// of its language where it parses cleanly into a function-like unit ([`standalone_contexts`]),
/// else the first where it gives such a unit at all. `None` when no context gives one.
pub fn parse_alone(
    lang: &Language,
    path: &str,
    code: &str,
    opts: &ExtractOptions,
) -> Option<Alone> {
    let mut fallback = None;
    for (pre, post) in standalone_contexts(lang.name()) {
        let text = format!("{pre}{code}{post}");
        let Ok(parsed) = extract_file(lang, path, text.as_bytes(), opts) else {
            continue;
        };
        let Some(unit) = parsed.units.iter().position(|u| u.kind.is_callable()) else {
            continue;
        };
        if !parsed.has_syntax_errors {
            return Some(Alone {
                parsed,
                unit,
                clean: true,
            });
        }
        fallback.get_or_insert(Alone {
            parsed,
            unit,
            clean: false,
        });
    }
    fallback
}

/// Whether the code parses without syntax errors in some context of its language.
fn parses_clean(lang: &Language, code: &str) -> bool {
    standalone_contexts(lang.name()).iter().any(|(pre, post)| {
        let text = format!("{pre}{code}{post}");
        extract_file(lang, "check", text.as_bytes(), &ExtractOptions::default())
            .is_ok_and(|p| !p.has_syntax_errors)
    })
}

/// The stripped code parses (when the original did) and its definition has no doc left.
fn check_stripped(lang: &Language, original: &str, stripped: &str, indent: usize) -> bool {
    let text = dedent_tail(stripped, indent);
    let Some(alone) = parse_alone(lang, "check", &text, &ExtractOptions::default()) else {
        return false;
    };
    if alone.parsed.units[alone.unit].doc.is_some() {
        return false;
    }
    // Syntax errors are fine only where the original had them too.
    alone.clean || !parses_clean(lang, &dedent_tail(original, indent))
}

// ------------------------------------------------------------------------------------------
// Mining

/// Candidate pairs of one package, in path / line order, before deduplication and split, with
/// the package's counts.
#[derive(Debug, Clone, Default)]
pub struct PackageMined {
    pub pairs: Vec<Pair>,
    pub stats: PackageStats,
    pub dropped: BTreeMap<Drop, usize>,
    pub walker_skips: BTreeMap<String, usize>,
}

struct FileMined {
    path: String,
    pairs: Vec<Pair>,
    functions: usize,
    documented: usize,
    dropped: BTreeMap<Drop, usize>,
}

fn mine_file(
    file: &gnn_coder_syntax::FileResult,
    root: &Path,
    prefix: &str,
    package: &str,
    opts: &MineOptions,
) -> FileMined {
    let mut fm = FileMined {
        path: file.path.clone(),
        pairs: Vec::new(),
        functions: 0,
        documented: 0,
        dropped: BTreeMap::new(),
    };
    let test_path = is_test_path(&file.path);
    let mut source: Option<Vec<u8>> = None;
    let lang = Language::by_name(&file.language).ok();
    for (i, u) in file.units.iter().enumerate() {
        if !u.kind.is_callable() {
            continue;
        }
        fm.functions += 1;
        let Some(doc) = u.doc.as_deref() else {
            continue;
        };
        fm.documented += 1;
        let raw: Vec<String> = if crate::doc::needs_raw(&u.language) {
            let src = source
                .get_or_insert_with(|| std::fs::read(root.join(&file.path)).unwrap_or_default());
            u.doc_spans
                .iter()
                .filter_map(|&(a, b)| src.get(a..b))
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect()
        } else {
            Vec::new()
        };
        let raw: Vec<&str> = raw.iter().map(String::as_str).collect();
        let query = crate::doc::doc_query(&u.language, doc, &raw, &u.name);
        let enclosing = file.units[..i]
            .iter()
            .filter(|o| o.start_byte <= u.start_byte && u.end_byte <= o.end_byte);
        let drop = if test_path {
            Some(Drop::TestPath)
        } else if u.name.starts_with('_') {
            Some(Drop::PrivateName)
        } else if gnn_coder_store::test_code::is_test_name(&u.symbol, &u.name) {
            Some(Drop::TestName)
        } else if has_test_marker(u) || enclosing.clone().any(has_test_marker) {
            Some(Drop::TestAttribute)
        } else {
            match &query {
                Err(d) => Some(*d),
                Ok(q) => query_filter(q, opts).or_else(|| {
                    opts.deny_queries
                        .contains(&q.to_lowercase())
                        .then_some(Drop::DevQuery)
                }),
            }
        };
        let query = match (drop, query) {
            (None, Ok(q)) => q,
            (Some(d), _) | (None, Err(d)) => {
                *fm.dropped.entry(d).or_default() += 1;
                continue;
            }
        };
        let stripped = match strip_docs(u, &file.units) {
            Ok(s) => s,
            Err(d) => {
                *fm.dropped.entry(d).or_default() += 1;
                continue;
            }
        };
        if stripped.body_lines < opts.min_code_lines {
            *fm.dropped.entry(Drop::TooShort).or_default() += 1;
            continue;
        }
        // Column of the unit's first line, to re-parse a method on its own.
        let src =
            source.get_or_insert_with(|| std::fs::read(root.join(&file.path)).unwrap_or_default());
        let indent = src.get(..u.start_byte).map_or(0, |b| {
            b.iter()
                .rev()
                .take_while(|&&c| c == b' ' || c == b'\t')
                .count()
        });
        if !lang.is_some_and(|l| check_stripped(l, &u.code, &stripped.code, indent)) {
            *fm.dropped.entry(Drop::StripFailed).or_default() += 1;
            continue;
        }
        let path = format!("{prefix}{}", file.path);
        fm.pairs.push(Pair {
            id: format!("{path}:{}", u.start_line),
            package: package.to_string(),
            lang: u.language.clone(),
            path,
            symbol: u.symbol.clone(),
            query,
            code: stripped.code,
            start_line: u.start_line,
            end_line: u.end_line,
            indent,
        });
    }
    fm
}

/// Mines one package directory. `package` names the package in the pairs; `prefix` is prepended
/// to the paths (relative to the package directory) to make them relative to the sources root
/// (`"python/django/"`); `languages` restricts the languages (empty: all registered);
/// `exclude_globs` (relative to `dir`) are not walked, nor are Python stubs.
pub fn mine_package(
    dir: &Path,
    package: &str,
    prefix: &str,
    languages: &[String],
    exclude_globs: &[String],
    opts: &MineOptions,
) -> Result<PackageMined> {
    let mut exclude = vec!["**/*.pyi".to_string()];
    exclude.extend(exclude_globs.iter().cloned());
    let mut wopts = WalkOptions {
        respect_ignore_files: false,
        languages: languages.to_vec(),
        threads: opts.threads,
        exclude_globs: exclude,
        ..WalkOptions::default()
    };
    wopts.excluded_dirs = DEFAULT_EXCLUDED_DIRS
        .iter()
        .chain(EXTRA_EXCLUDED_DIRS)
        .map(|s| s.to_string())
        .collect();
    let results: Mutex<Vec<FileMined>> = Mutex::new(Vec::new());
    let summary = walk_repo(dir, &wopts, &|_| {}, &|file| {
        let fm = mine_file(&file, dir, prefix, package, opts);
        results.lock().unwrap_or_else(|p| p.into_inner()).push(fm);
    })
    .with_context(|| format!("walking {}", dir.display()))?;
    let mut files = results.into_inner().unwrap_or_else(|p| p.into_inner());
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out = PackageMined::default();
    out.stats.files = files.len();
    for f in files {
        out.stats.functions += f.functions;
        out.stats.documented += f.documented;
        for (d, c) in f.dropped {
            *out.dropped.entry(d).or_default() += c;
        }
        out.pairs.extend(f.pairs);
    }
    out.stats.pairs = out.pairs.len();
    for (reason, count) in summary.skip_counts {
        out.walker_skips.insert(reason.as_str().to_string(), count);
    }
    Ok(out)
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The packages of one group that go to validation: ranked by the FNV-1a hash of their
/// normalised name, the first `round(n * fraction)` (at least 1 and at most `n - 1` when
/// `n >= 2`; none when `n < 2` or `fraction <= 0`).
pub fn split_packages(names: &[String], valid_fraction: f64) -> BTreeSet<String> {
    let n = names.len();
    if n < 2 || valid_fraction <= 0.0 {
        return BTreeSet::new();
    }
    let k = ((n as f64 * valid_fraction).round() as usize).clamp(1, n - 1);
    let mut ranked: Vec<&String> = names.iter().collect();
    ranked.sort_by_key(|s| (fnv1a(&normalize_package(s)), s.as_str()));
    ranked.into_iter().take(k).cloned().collect()
}

/// One package directory of a sources tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackageDir {
    /// `python`, `rust`, ...
    pub group: String,
    /// Directory name (`tokio-1.42.0`).
    pub dir_name: String,
    /// Package name (`tokio`).
    pub name: String,
    pub path: PathBuf,
}

fn visible_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.ends_with(".tmp") || !e.file_type()?.is_dir() {
            continue;
        }
        out.push((name, e.path()));
    }
    out.sort();
    Ok(out)
}

/// The package directories of a sources tree (`SOURCES/<group>/<package dir>`), sorted.
pub fn discover_packages(sources: &Path) -> Result<Vec<PackageDir>> {
    let mut out = Vec::new();
    for (group, gpath) in visible_dirs(sources)? {
        for (dir_name, path) in visible_dirs(&gpath)? {
            out.push(PackageDir {
                name: package_name(&dir_name),
                group: group.clone(),
                dir_name,
                path,
            });
        }
    }
    Ok(out)
}

/// Mines a whole sources tree: every package ([`mine_package`]), then deduplicates queries in
/// the order group, package, path, line and splits by package. `progress` gets one line per
/// package.
pub fn mine_sources(
    sources: &Path,
    opts: &MineOptions,
    progress: &dyn Fn(&str),
) -> Result<MineOutput> {
    let started = std::time::Instant::now();
    let packages = discover_packages(sources)?;
    let deny: BTreeSet<String> = opts.deny.iter().map(|d| normalize_package(d)).collect();
    let mut out = MineOutput::default();
    let mut mined: Vec<(PackageDir, Vec<Pair>)> = Vec::new();
    let total = packages.len();
    for (k, pkg) in packages.into_iter().enumerate() {
        if deny.contains(&normalize_package(&pkg.name)) {
            progress(&format!(
                "[{}/{total}] {}/{}: REFUSED (in the deny list)",
                k + 1,
                pkg.group,
                pkg.dir_name
            ));
            out.stats
                .denied
                .push(format!("{}/{}", pkg.group, pkg.dir_name));
            continue;
        }
        let t = std::time::Instant::now();
        let languages: Vec<String> = if Language::by_name(&pkg.group).is_ok() {
            // A TypeScript package's `.tsx` files are the `tsx` grammar's.
            let mut l = vec![pkg.group.clone()];
            if pkg.group == "typescript" {
                l.push("tsx".to_string());
            }
            l
        } else {
            opts.languages.clone()
        };
        let prefix = format!("{}/{}/", pkg.group, pkg.dir_name);
        let key = format!("{}/{}/", pkg.group, pkg.name);
        let globs: Vec<String> = opts
            .exclude
            .iter()
            .filter_map(|e| e.strip_prefix(key.as_str()).map(str::to_string))
            .collect();
        let m = mine_package(&pkg.path, &pkg.name, &prefix, &languages, &globs, opts)?;
        progress(&format!(
            "[{}/{total}] {}/{}: {} files, {} functions, {} documented, {} candidate pairs ({:.1}s)",
            k + 1,
            pkg.group,
            pkg.dir_name,
            m.stats.files,
            m.stats.functions,
            m.stats.documented,
            m.pairs.len(),
            t.elapsed().as_secs_f64()
        ));
        let s = &mut out.stats;
        s.packages += 1;
        s.files += m.stats.files;
        s.functions += m.stats.functions;
        s.documented += m.stats.documented;
        for (d, c) in m.dropped {
            *s.dropped.entry(d.as_str().to_string()).or_default() += c;
        }
        for (r, c) in m.walker_skips {
            *s.walker_skips.entry(r).or_default() += c;
        }
        let mut ps = m.stats;
        ps.group = pkg.group.clone();
        s.per_package
            .insert(format!("{}/{}", pkg.group, pkg.name), ps);
        mined.push((pkg, m.pairs));
    }

    // Split by package, per group.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (pkg, _) in &mined {
        groups
            .entry(pkg.group.clone())
            .or_default()
            .push(pkg.name.clone());
    }
    let mut valid: BTreeSet<(String, String)> = BTreeSet::new();
    for (group, names) in &groups {
        let v = split_packages(names, opts.valid_fraction);
        out.stats
            .valid_packages
            .insert(group.clone(), v.iter().cloned().collect());
        valid.extend(v.into_iter().map(|n| (group.clone(), n)));
    }

    // Deduplicate (first kept) in the order group, package, path, line.
    mined.sort_by(|a, b| (&a.0.group, &a.0.name).cmp(&(&b.0.group, &b.0.name)));
    let mut seen_queries: BTreeSet<String> = BTreeSet::new();
    let mut seen_ids: BTreeSet<String> = BTreeSet::new();
    for (pkg, pairs) in mined {
        let split = if valid.contains(&(pkg.group.clone(), pkg.name.clone())) {
            Split::Valid
        } else {
            Split::Train
        };
        let mut kept = 0;
        for p in pairs {
            if !seen_ids.insert(p.id.clone()) || !seen_queries.insert(p.query.to_lowercase()) {
                *out.stats
                    .dropped
                    .entry(Drop::DuplicateQuery.as_str().into())
                    .or_default() += 1;
                continue;
            }
            kept += 1;
            *out.stats
                .per_language
                .entry(p.lang.clone())
                .or_default()
                .entry(split)
                .or_default() += 1;
            match split {
                Split::Train => out.train.push(p),
                Split::Valid => out.valid.push(p),
            }
        }
        if let Some(ps) = out
            .stats
            .per_package
            .get_mut(&format!("{}/{}", pkg.group, pkg.name))
        {
            ps.pairs = kept;
            ps.split = Some(split);
        }
    }
    out.stats.train = out.train.len();
    out.stats.valid = out.valid.len();
    out.stats.pairs = out.stats.train + out.stats.valid;
    progress(&format!("mined in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(out)
}
