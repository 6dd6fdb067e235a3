//! What test code is: one rule for the engine (which demotes test code in results) and for
//! training (which mines no pairs from it).
//!
//! A unit is test code when any of these says so:
//!
//! * **its path** ([`is_test_path`]), `/`-separated, compared case-insensitively:
//!   - a directory `test`, `tests`, `test_*`, `spec`, `specs` or `__tests__`;
//!   - a file whose stem (the name up to its first `.`) is `test`, `tests` or `conftest`, starts
//!     with `test_`, or ends with `_test`, `_tests` or `_spec`;
//!   - a file named `*.test.*` or `*.spec.*` (JavaScript, TypeScript);
//!   - a file whose stem ends with a capitalised `Test` or `Tests` (`FooTest.java`,
//!     `ParserTests.cs`), but not `Latest.java`.
//!
//!   A `testing` directory is *not* test code: it usually holds a library's public test helpers
//!   (`numpy.testing`, Go's `testing`), which are worth finding and worth training on.
//! * **its names** ([`is_test_name`]): a sub-word ([`crate::words::sub_words`]) of the qualified
//!   symbol or of the name is a test word ([`is_test_word`]): `test_parse`, `TestCase.setUp`,
//!   `tests::helper`, Go's `TestRetry`, `parse_test`, `HTTPTestServer`. Splitting into words
//!   keeps `latest`, `contest`, `pytest_configure`; English words that merely begin with "test"
//!   (`Testament`, `testimony`) are not test words.
//! * **its attributes** ([`is_test_attribute`]): a line before the definition line (an
//!   attribute or decorator, `#[...]` or `@...`) with a test word, a word starting with `bench`,
//!   or `pytest`: `#[test]`, `#[cfg(test)]`, `#[tokio::test]`, `#[bench]`, `@pytest.mark.slow`;
//!   never `#[cfg(not(test))]`.
//!
//! The engine asks [`is_test_unit`] (all three on a stored unit); the miner asks each part on
//! its own, to count why it dropped a unit, and also checks the attributes of the enclosing
//! units (a `mod tests`), which only it has at hand.

use crate::UnitRecord;
use crate::words::sub_words;

/// English words that begin with "test" without being about tests (prefixes).
const NOT_TEST_WORDS: &[&str] = &["testament", "testimon", "testator", "testatrix", "testy"];

/// A word (lower-case) that marks a test: it starts with `test` (`test`, `tests`, `testcase`,
/// `testing`) and is not one of a few English words that merely begin with those letters.
pub fn is_test_word(word: &str) -> bool {
    word.starts_with("test") && !NOT_TEST_WORDS.iter().any(|w| word.starts_with(w))
}

/// Whether a `/`-separated path is a test file (see the module docs).
pub fn is_test_path(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let (file, dirs) = parts.split_last().unwrap_or((&"", &[]));
    let dir_test = dirs.iter().any(|d| {
        let d = d.to_lowercase();
        matches!(
            d.as_str(),
            "test" | "tests" | "spec" | "specs" | "__tests__"
        ) || d.starts_with("test_")
    });
    if dir_test {
        return true;
    }
    let original_stem = file.split('.').next().unwrap_or("");
    let stem = original_stem.to_lowercase();
    let lower_file = file.to_lowercase();
    matches!(stem.as_str(), "test" | "tests" | "conftest")
        || stem.starts_with("test_")
        || stem.ends_with("_test")
        || stem.ends_with("_tests")
        || stem.ends_with("_spec")
        || lower_file.contains(".test.")
        || lower_file.contains(".spec.")
        || original_stem.ends_with("Test")
        || original_stem.ends_with("Tests")
}

/// Whether a qualified symbol or a name has a test word among its sub-words.
pub fn is_test_name(symbol: &str, name: &str) -> bool {
    sub_words(symbol).iter().any(|w| is_test_word(w))
        || sub_words(name).iter().any(|w| is_test_word(w))
}

/// Whether one line written before a definition is a test attribute or decorator.
pub fn is_test_attribute(line: &str) -> bool {
    let l = line.trim_start();
    (l.starts_with("#[") || l.starts_with('@'))
        && !l.contains("not(test")
        && sub_words(l)
            .iter()
            .any(|w| is_test_word(w) || w.starts_with("bench") || w == "pytest")
}

/// Whether any of `header`'s lines (a unit's lines before its definition line) is a test
/// attribute.
pub fn has_test_attribute(header: &str) -> bool {
    header.lines().any(is_test_attribute)
}

/// Whether a unit is test code by its path, its names or its attributes.
pub fn is_test_code(path: &str, symbol: &str, name: &str, header: &str) -> bool {
    is_test_path(path) || is_test_name(symbol, name) || has_test_attribute(header)
}

/// [`is_test_code`] of a stored unit (its header is the code before its definition line).
pub fn is_test_unit(unit: &UnitRecord) -> bool {
    let header_lines = unit.def_line.saturating_sub(unit.start_line);
    let header_lines = usize::try_from(header_lines).unwrap_or(usize::MAX);
    let header_end = unit
        .code
        .match_indices('\n')
        .nth(header_lines.saturating_sub(1))
        .map_or(unit.code.len(), |(i, _)| i);
    let header = if header_lines == 0 {
        ""
    } else {
        &unit.code[..header_end]
    };
    is_test_code(&unit.path, &unit.symbol, &unit.name, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for p in [
            "pkg/tests/a.py",
            "pkg/test/a.py",
            "pkg/test_things/a.py",
            "pkg/test_a.py",
            "pkg/a_test.py",
            "src/tests.rs",
            "src/parser_tests.rs",
            "conftest.py",
            "web/__tests__/a.js",
            "spec/models/user_spec.rb",
            "web/app.spec.ts",
            "web/app.test.js",
            "src/FooTest.java",
            "src/ParserTests.cs",
            "pkg/retry_test.go",
        ] {
            assert!(is_test_path(p), "{p}");
        }
        for p in [
            "pkg/testing/utils.py",
            "pkg/latest.py",
            "src/Latest.java",
            "src/contest.rs",
            "pkg/attest/a.py",
            "src/testing_utils_not.rs",
        ] {
            assert!(!is_test_path(p), "{p}");
        }
    }

    #[test]
    fn names() {
        for (symbol, name) in [
            ("test_read", "test_read"),
            ("tests::sizes_parse", "sizes_parse"),
            ("TestRetry", "TestRetry"),
            ("Reader.test_something_here", "test_something_here"),
            ("TestCase.setUp", "setUp"),
            ("parse_test", "parse_test"),
            ("HTTPTestServer.start", "start"),
            ("mod::test::helper", "helper"),
        ] {
            assert!(is_test_name(symbol, name), "{symbol}");
        }
        for (symbol, name) in [
            ("parse_size", "parse_size"),
            ("contest", "contest"),
            ("Testament", "Testament"),
            ("latest_version", "latest_version"),
            ("pytest_configure", "pytest_configure"),
            ("attest", "attest"),
        ] {
            assert!(!is_test_name(symbol, name), "{symbol}");
        }
    }

    #[test]
    fn attributes() {
        for l in [
            "#[test]",
            "  #[cfg(test)]",
            "#[tokio::test]",
            "#[bench]",
            "@pytest.mark.slow",
        ] {
            assert!(is_test_attribute(l), "{l}");
        }
        for l in [
            "#[cfg(not(test))]",
            "#[derive(Debug)]",
            "@property",
            "// test",
        ] {
            assert!(!is_test_attribute(l), "{l}");
        }
    }

    #[test]
    fn units_read_the_header_before_the_definition_line() {
        let unit = |code: &str, start: u64, def: u64| UnitRecord {
            path: "src/lib.rs".into(),
            language: "rust".into(),
            kind: "function".into(),
            name: "checks".into(),
            symbol: "checks".into(),
            start_line: start,
            end_line: start + 3,
            def_line: def,
            start_byte: 0,
            end_byte: code.len() as u64,
            doc: None,
            code: code.into(),
        };
        assert!(is_test_unit(&unit("#[test]\nfn checks() {}\n", 4, 5)));
        assert!(!is_test_unit(&unit("#[test]\nfn checks() {}\n", 4, 4)));
        // A test attribute in the body is not the unit's.
        assert!(!is_test_unit(&unit("fn checks() {\n#[test]\n}\n", 4, 4)));
        assert!(!is_test_unit(&unit("#[inline]\nfn checks() {}\n", 4, 5)));
    }
}
