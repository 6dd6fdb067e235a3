//! The miner's documentation conventions per language (`gnn_coder_train::doc`), on one small
//! fixture package per language written at test time: which comment is documentation, which
//! sentence becomes the query, and why the others are dropped.

use std::path::Path;

use gnn_coder_train::mine::dedent_tail;
use gnn_coder_train::{MineOptions, MineOutput, Pair, example_from_pair, mine_sources};

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Mines one package of one language group and returns the output.
fn mine_one(group: &str, rel: &str, text: &str) -> MineOutput {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &format!("{group}/demo-1.0.0/{rel}"), text);
    mine_sources(dir.path(), &MineOptions::default(), &|_| {}).unwrap()
}

fn pair<'a>(out: &'a MineOutput, symbol: &str) -> Option<&'a Pair> {
    out.train
        .iter()
        .chain(&out.valid)
        .find(|p| p.symbol == symbol)
}

fn query(out: &MineOutput, symbol: &str) -> String {
    match pair(out, symbol) {
        Some(p) => p.query.clone(),
        None => panic!(
            "{symbol} not mined; pairs: {:?}; dropped: {:?}",
            out.train.iter().map(|p| &p.symbol).collect::<Vec<_>>(),
            out.stats.dropped
        ),
    }
}

/// The pair's code parses on its own (in its class where it needs one) into the unit it was:
/// training gets its text and AST graph as indexing would.
fn parses_alone(out: &MineOutput, symbol: &str) {
    let p = pair(out, symbol).unwrap();
    let ex = example_from_pair(p, 512);
    let g = ex
        .graph
        .unwrap_or_else(|| panic!("{symbol}: no graph from\n{}", p.code));
    assert!(g.kinds.len() > 5, "{symbol}: {} nodes", g.kinds.len());
    assert_eq!(ex.code, dedent_tail(&p.code, p.indent), "{symbol}");
}

fn dropped(out: &MineOutput, reason: &str) -> usize {
    out.stats.dropped.get(reason).copied().unwrap_or(0)
}

/// No pair's code holds a doc comment of the given opening.
fn no_doc_in_code(out: &MineOutput, marker: &str) {
    for p in out.train.iter().chain(&out.valid) {
        assert!(
            !p.code.contains(marker),
            "{} keeps a doc comment:\n{}",
            p.symbol,
            p.code
        );
    }
}

const JS: &str = r#"/**
 * Parses the header line of a CSV file, e.g. the first row. Not this.
 *
 * @param {string} line the line
 * @returns {string[]} the fields
 */
function parseHeader(line) {
  const parts = line.split(",");
  return parts.map((p) => p.trim());
}

// An ordinary comment that documentation tools do not read at all.
function notDocumented(a, b) {
  const c = a + b;
  return c;
}

/**
 * @deprecated use parseHeader
 * Old header parser for CSV input lines.
 */
function oldParse(line) {
  const parts = line.split(",");
  return parts;
}

/**
 * @param {number} x the input
 */
function onlyTags(x) {
  const y = x * 2;
  return y;
}

/**
 * @description Formats a date as an ISO calendar day string.
 */
function formatDay(d) {
  const s = d.toISOString();
  return s.slice(0, 10);
}

class Store {
  /**
   * Returns the {@link Item item} stored under <code>key</code> &amp; its age.
   */
  get(key) {
    const item = this.items[key];
    return item;
  }
}
"#;

#[test]
fn javascript_jsdoc() {
    let out = mine_one("javascript", "lib/csv.js", JS);
    assert_eq!(
        query(&out, "parseHeader"),
        "Parses the header line of a CSV file, e.g. the first row."
    );
    assert_eq!(
        query(&out, "formatDay"),
        "Formats a date as an ISO calendar day string."
    );
    assert_eq!(
        query(&out, "Store.get"),
        "Returns the item stored under key & its age."
    );
    assert!(
        pair(&out, "parseHeader")
            .unwrap()
            .code
            .starts_with("function parseHeader(line)")
    );
    assert!(pair(&out, "notDocumented").is_none());
    parses_alone(&out, "Store.get");
    parses_alone(&out, "parseHeader");
    assert_eq!(dropped(&out, "not_doc_comment"), 1);
    assert_eq!(dropped(&out, "deprecated"), 1);
    assert_eq!(dropped(&out, "no_description"), 1);
    assert_eq!(
        out.stats.per_language["javascript"].values().sum::<usize>(),
        3
    );
    no_doc_in_code(&out, "/**");
}

const TS: &str = r#"/**
 * Merges two option objects into a new one; `b` wins.
 * @param a - the defaults
 */
export function mergeOptions(a: Options, b: Options): Options {
  const out = { ...a, ...b };
  return out;
}

/*** A banner, not documentation: ***/
export function bannered(a: number): number {
  const b = a + 1;
  return b;
}
"#;

#[test]
fn typescript_tsdoc() {
    let out = mine_one("typescript", "src/options.ts", TS);
    assert_eq!(
        query(&out, "mergeOptions"),
        "Merges two option objects into a new one; `b` wins."
    );
    assert!(pair(&out, "bannered").is_none());
    no_doc_in_code(&out, "/**");
}

const GO: &str = r#"package demo

import "os"

// ParseConfig reads the configuration file at path and returns its settings.
//
//go:noinline
func ParseConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decode(data)
}

// Close shuts the server down and waits for its workers.
func (s *Server) Close() error {
	s.stop()
	return s.wait()
}

// Find the first element of the list that matches the predicate.
func Find(xs []int, p func(int) bool) int {
	for _, x := range xs {
		if p(x) {
			return x
		}
	}
	return -1
}

// OldParse parses the legacy format of the configuration.
//
// Deprecated: use ParseConfig.
func OldParse(s string) error {
	_ = s
	return nil
}

// Wrap is a wrapper around Find for callers of the old interface.
func Wrap(xs []int) int {
	return Find(xs, func(int) bool {
		return true
	})
}
"#;

#[test]
fn go_doc_comments() {
    let out = mine_one("go", "config.go", GO);
    assert_eq!(
        query(&out, "ParseConfig"),
        "Reads the configuration file at path and returns its settings."
    );
    let close = out
        .train
        .iter()
        .chain(&out.valid)
        .find(|p| p.symbol.ends_with("Close"))
        .expect("Close mined");
    assert_eq!(
        close.query,
        "Shuts the server down and waits for its workers."
    );
    assert_eq!(
        query(&out, "Find"),
        "Find the first element of the list that matches the predicate."
    );
    assert_eq!(dropped(&out, "deprecated"), 1);
    assert_eq!(dropped(&out, "query_skip_start"), 1);
    for p in out.train.iter().chain(&out.valid) {
        assert!(
            !p.code.contains("//go:") && !p.code.contains("// "),
            "{}",
            p.code
        );
    }
}

const JAVA: &str = r#"package demo;

public class Cache {
    /**
     * Returns the value mapped to the given key, or {@code null} if absent.
     *
     * @param key the key
     * @return the value
     */
    @Override
    public Object lookup(String key) {
        Object v = map.get(key);
        return v;
    }

    /** {@inheritDoc} */
    public int size() {
        int n = map.size();
        return n;
    }

    /**
     * Removes every entry from this cache and resets its counters.
     */
    @Test
    public void clearAll() {
        map.clear();
        hits = 0;
    }
}
"#;

#[test]
fn java_javadoc() {
    let out = mine_one("java", "src/demo/Cache.java", JAVA);
    assert_eq!(
        query(&out, "Cache.lookup"),
        "Returns the value mapped to the given key, or null if absent."
    );
    assert!(pair(&out, "Cache.size").is_none());
    parses_alone(&out, "Cache.lookup");
    assert_eq!(dropped(&out, "no_description"), 1);
    assert_eq!(dropped(&out, "test_attribute"), 1);
    no_doc_in_code(&out, "/**");
}

const PHP: &str = r#"<?php
class Mailer {
    /**
     * Sends the message to every recipient in the list.
     *
     * @param array $to recipients
     * @return bool
     */
    public function sendAll(array $to) {
        foreach ($to as $r) {
            $this->send($r);
        }
        return true;
    }

    # A hash comment is not a PHPDoc block for this method.
    public function reset() {
        $this->queue = [];
        return $this;
    }
}
"#;

#[test]
fn php_phpdoc() {
    let out = mine_one("php", "src/Mailer.php", PHP);
    assert_eq!(
        query(&out, "Mailer::sendAll"),
        "Sends the message to every recipient in the list."
    );
    assert!(pair(&out, "Mailer::reset").is_none());
    parses_alone(&out, "Mailer::sendAll");
    assert_eq!(dropped(&out, "not_doc_comment"), 1);
}

const RUBY: &str = r#"class Parser
  # Parses the input string into a list of tokens.
  #
  # @param input [String] the source
  # @return [Array<Token>]
  def tokenize(input)
    tokens = []
    input.scan(/\w+/) { |w| tokens << w }
    tokens
  end

  # @deprecated Use tokenize instead.
  # Splits the input on whitespace characters only.
  def split_words(input)
    words = input.split
    words
  end

  # :nodoc:
  # Internal cache of compiled patterns for this parser.
  def compiled_patterns
    @patterns ||= {}
    @patterns
  end
end
"#;

#[test]
fn ruby_yard() {
    let out = mine_one("ruby", "lib/parser.rb", RUBY);
    assert_eq!(
        query(&out, "Parser#tokenize"),
        "Parses the input string into a list of tokens."
    );
    assert_eq!(dropped(&out, "deprecated"), 1);
    assert_eq!(dropped(&out, "not_doc_comment"), 1);
    no_doc_in_code(&out, "# ");
}

const C: &str = r#"#include <stddef.h>

/**
 * @brief Computes the checksum of a buffer of bytes.
 * @param buf the bytes
 */
unsigned checksum(const unsigned char *buf, size_t n) {
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += buf[i];
    return s;
}

/* A plain block comment that Doxygen does not read. */
int plain_fn(int x) {
    int y = x + 1;
    return y;
}

/**
 * list_push() - appends a node at the end of the \c list.
 */
void list_push(struct list *l, struct node *n) {
    n->next = NULL;
    l->tail->next = n;
    l->tail = n;
}
"#;

#[test]
fn c_doxygen() {
    let out = mine_one("c", "src/util.c", C);
    assert_eq!(
        query(&out, "checksum"),
        "Computes the checksum of a buffer of bytes."
    );
    assert_eq!(
        query(&out, "list_push"),
        "Appends a node at the end of the list."
    );
    assert!(pair(&out, "plain_fn").is_none());
    assert_eq!(dropped(&out, "not_doc_comment"), 1);
}

const CPP: &str = r#"#include <cstddef>

/// Returns the number of elements currently stored in the ring.
/// \param ring the ring
std::size_t ring_size(const Ring& ring) {
    std::size_t n = ring.tail - ring.head;
    return n;
}

//! \deprecated use ring_size
//! Counts the elements in the ring one by one.
std::size_t ring_count(const Ring& ring) {
    std::size_t n = 0;
    for (auto it = ring.begin(); it != ring.end(); ++it) ++n;
    return n;
}
"#;

#[test]
fn cpp_doxygen() {
    let out = mine_one("cpp", "src/ring.cpp", CPP);
    assert_eq!(
        query(&out, "ring_size"),
        "Returns the number of elements currently stored in the ring."
    );
    assert_eq!(dropped(&out, "deprecated"), 1);
    no_doc_in_code(&out, "///");
}

/// A multi-language manifest's packages are refused under the folder names the fetch script
/// gives them (`@scope/name` -> `scope__name-VER`, Debian `pkg/sub` -> `pkg__sub`).
#[test]
fn multi_language_manifest_denies_its_folders() {
    let manifest = r#"{"javascript": {"@scope/widget": "1.0.0"}, "go": {"golang-foo-dev": "1.2-3"},
        "java": {"openjdk-17-source/java.sql": "17"}, "per_lang": 400}"#;
    let deny = gnn_coder_train::manifest_packages(manifest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "javascript/scope__widget-1.0.0/index.js", JS);
    write(root, "javascript/other-2.0.0/index.js", JS);
    write(root, "go/golang-foo-dev/foo/config.go", GO);
    write(
        root,
        "java/openjdk-17-source__java.sql/java/sql/Cache.java",
        JAVA,
    );
    let opts = MineOptions {
        deny,
        ..MineOptions::default()
    };
    let out = mine_sources(root, &opts, &|_| {}).unwrap();
    assert_eq!(
        out.stats.denied,
        [
            "go/golang-foo-dev".to_string(),
            "java/openjdk-17-source__java.sql".to_string(),
            "javascript/scope__widget-1.0.0".to_string()
        ]
    );
    assert!(
        out.train
            .iter()
            .chain(&out.valid)
            .all(|p| p.package == "other")
    );
}
