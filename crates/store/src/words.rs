//! The words of code: how identifiers are split, for every consumer of lexical matching.
//!
//! Identifiers in code glue words together (`parse_http_header`, `parseHttpHeader`,
//! `HTTPHeaderV2`), while plain-English questions name the words apart ("parse the HTTP header").
//! Whatever ranks or matches text lexically must cut both the same way, or a query word that
//! ranked a unit would not be the one highlighted in it. So there is one splitter, here, and:
//!
//! * the BM25 leg of the embedded store (`gnn-coder-index`'s tantivy tokenizer) indexes and
//!   queries exactly the tokens of [`code_tokens`], then stems them (English Snowball);
//! * the engine's highlights run that same analysis on the query and on the unit's code, so
//!   what is highlighted is what BM25 matched;
//! * training's hard-negative miner scores with [`code_tokens`] too, and the test-code rule
//!   ([`crate::test_code`]) reads the [`sub_words`] of a symbol.
//!
//! It lives in this crate because every one of them already depends on it or can at no cost (it
//! has no heavy dependencies), and because a second backend of the store traits has to split
//! text the same way to rank the same way.
//!
//! ## The rules
//!
//! Text is cut into maximal runs of word characters (letters, digits, `_`: Unicode-aware).
//! Each run is split into sub-words ([`split_identifier`]):
//!
//! * at `_` (dropped);
//! * at a lower→upper case change (`parseHttp` → `parse`, `Http`);
//! * at the end of an upper-case run followed by a capitalised word (`HTTPServer` → `HTTP`,
//!   `Server`);
//! * at letter↔digit changes (`utf8Decode` → `utf`, `8`, `Decode`).
//!
//! [`code_tokens`] then emits, for every run, the whole run lower-cased when it has more than
//! one sub-word (so an exact identifier query still finds its own definition first), followed by
//! its sub-words lower-cased. Tokens longer than [`MAX_TOKEN_LEN`] bytes (hashes, base64 blobs)
//! are dropped.

/// Longest token kept by [`code_tokens`], in bytes.
pub const MAX_TOKEN_LEN: usize = 48;

/// One token of [`code_tokens`]: its lower-cased text and where it is in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeToken {
    /// Lower-cased token text.
    pub text: String,
    /// Byte offset of the token's first character in the input.
    pub from: usize,
    /// Byte offset just past the token's last character.
    pub to: usize,
}

/// The tokens of `text`, in order: for each identifier run, the whole run (when it has several
/// sub-words) then its sub-words, lower-cased, tokens over [`MAX_TOKEN_LEN`] bytes dropped.
///
/// ```
/// let t: Vec<String> = gnn_coder_store::words::code_tokens("fn parseHTTPHeader(x)")
///     .into_iter()
///     .map(|t| t.text)
///     .collect();
/// assert_eq!(t, ["fn", "parsehttpheader", "parse", "http", "header", "x"]);
/// ```
pub fn code_tokens(text: &str) -> Vec<CodeToken> {
    let mut tokens = Vec::new();
    for (start, word) in identifier_runs(text) {
        let parts = split_identifier(word);
        let mut push = |from: usize, to: usize, text: String| {
            if text.len() <= MAX_TOKEN_LEN {
                tokens.push(CodeToken { text, from, to });
            }
        };
        if parts.len() > 1 {
            push(start, start + word.len(), word.to_lowercase());
        }
        for (s, e) in parts {
            push(start + s, start + e, word[s..e].to_lowercase());
        }
    }
    tokens
}

/// The lower-cased sub-words of `text` (no whole identifiers, no length limit): the words a
/// rule about names reads (`TestCase.setUp` → `test`, `case`, `set`, `up`).
pub fn sub_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (_, word) in identifier_runs(text) {
        for (s, e) in split_identifier(word) {
            out.push(word[s..e].to_lowercase());
        }
    }
    out
}

/// Whether `c` belongs to an identifier run.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Maximal runs of word characters, with their byte offsets.
pub fn identifier_runs(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || {
        while let Some(&(_, c)) = rest.peek() {
            if is_word_char(c) {
                break;
            }
            rest.next();
        }
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some(&(i, c)) = rest.peek() {
            if !is_word_char(c) {
                break;
            }
            end = i + c.len_utf8();
            rest.next();
        }
        Some((start, &text[start..end]))
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
}

fn class_of(c: char) -> Class {
    if c.is_numeric() {
        Class::Digit
    } else if c.is_uppercase() {
        Class::Upper
    } else if c.is_alphabetic() {
        Class::Lower
    } else {
        Class::Other
    }
}

/// Splits one identifier run into sub-word byte ranges (underscores dropped); see the module
/// docs for where it cuts.
pub fn split_identifier(word: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    for (k, &(i, c)) in chars.iter().enumerate() {
        if c == '_' {
            if let Some(s) = start.take() {
                parts.push((s, i));
            }
            continue;
        }
        let Some(s) = start else {
            start = Some(i);
            continue;
        };
        let (_, prev) = chars[k - 1];
        let (pc, cc) = (class_of(prev), class_of(c));
        let next_is_lower = chars
            .get(k + 1)
            .is_some_and(|&(_, n)| class_of(n) == Class::Lower);
        let boundary = match (pc, cc) {
            (Class::Lower, Class::Upper) => true,
            // `HTTPServer`: the `S` starts a new word when a lower-case letter follows it.
            (Class::Upper, Class::Upper) => next_is_lower,
            (Class::Digit, Class::Lower | Class::Upper) => true,
            (Class::Lower | Class::Upper, Class::Digit) => true,
            _ => false,
        };
        if boundary {
            parts.push((s, i));
            start = Some(i);
        }
    }
    if let Some(s) = start {
        parts.push((s, word.len()));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        code_tokens(text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn splits_snake_camel_acronyms_and_digits() {
        assert_eq!(
            texts("parse_http_header"),
            ["parse_http_header", "parse", "http", "header"]
        );
        assert_eq!(texts("HTTPServer"), ["httpserver", "http", "server"]);
        assert_eq!(texts("utf8Decode"), ["utf8decode", "utf", "8", "decode"]);
        assert_eq!(texts("__init__"), ["init"]);
        assert_eq!(texts("a::b"), ["a", "b"]);
    }

    #[test]
    fn offsets_point_into_the_input() {
        let text = "let größe = HTTPServer::new();";
        for t in code_tokens(text) {
            assert_eq!(text[t.from..t.to].to_lowercase(), t.text);
        }
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert!(code_tokens(&long).is_empty());
        assert_eq!(texts(&format!("{long}_y")), ["y"]);
    }

    #[test]
    fn sub_words_are_the_parts_only() {
        assert_eq!(
            sub_words("TestCase.setUp tests::helper"),
            ["test", "case", "set", "up", "tests", "helper"]
        );
        assert_eq!(sub_words("pytest_configure"), ["pytest", "configure"]);
    }
}
