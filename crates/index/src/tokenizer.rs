//! A code-aware tokenizer for tantivy.
//!
//! Identifiers in code glue words together (`parse_http_header`, `parseHttpHeader`,
//! `HTTPHeaderV2`), while plain-English questions name the words apart ("parse the HTTP header").
//! The tokenizer therefore emits, for every run of letters, digits and underscores:
//!
//! 1. its sub-words, split at `_`, at lower→upper case changes (`parseHttp` → `parse`, `http`),
//!    at the end of an upper-case run followed by a capitalised word (`HTTPHeader` → `http`,
//!    `header`) and at letter↔digit changes (`v2` → `v`, `2`), each lower-cased and stemmed;
//! 2. the whole identifier, lower-cased, when it has more than one sub-word, so that an exact
//!    identifier query (`parse_http_header`) still ranks its own definition first.
//!
//! Sub-words are stemmed with the English Snowball stemmer so that "parses", "parsing" and `parse`
//! meet. Tokens longer than [`MAX_TOKEN_LEN`] bytes (hashes, base64 blobs) are dropped.
//!
//! The same analysis runs on documents and on queries; [`analyze`] exposes it for the query side.

use tantivy::tokenizer::{Language, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer};

/// Name under which the analyzer is registered with the tantivy index.
pub const CODE_TOKENIZER: &str = "gnn_code";

/// Longest token kept, in bytes.
pub const MAX_TOKEN_LEN: usize = 48;

/// Builds the analyzer used for every text field of the index.
pub fn code_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(CodeTokenizer)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Runs the index's analysis on a piece of text and returns the tokens (with repetitions).
pub fn analyze(text: &str) -> Vec<String> {
    let mut analyzer = code_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        out.push(stream.token().text.clone());
    }
    out
}

/// The tokenizer part of [`code_analyzer`] (without stemming).
#[derive(Clone, Copy, Debug, Default)]
pub struct CodeTokenizer;

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream {
        let mut tokens = Vec::new();
        let mut position = 0usize;
        for (start, word) in identifier_runs(text) {
            let parts = split_identifier(word);
            let mut push = |from: usize, to: usize, text: String| {
                if text.len() <= MAX_TOKEN_LEN {
                    tokens.push(Token {
                        offset_from: from,
                        offset_to: to,
                        position,
                        text,
                        position_length: 1,
                    });
                    position += 1;
                }
            };
            if parts.len() > 1 {
                push(start, start + word.len(), word.to_lowercase());
            }
            for (s, e) in parts {
                push(start + s, start + e, word[s..e].to_lowercase());
            }
        }
        CodeTokenStream {
            tokens,
            index: usize::MAX,
            empty: Token::default(),
        }
    }
}

/// The tokens of one text, produced eagerly.
pub struct CodeTokenStream {
    tokens: Vec<Token>,
    /// Index of the current token; `usize::MAX` before the first `advance`.
    index: usize,
    empty: Token,
}

impl TokenStream for CodeTokenStream {
    fn advance(&mut self) -> bool {
        self.index = self.index.wrapping_add(1);
        self.index < self.tokens.len()
    }

    fn token(&self) -> &Token {
        self.tokens.get(self.index).unwrap_or(&self.empty)
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.tokens.get_mut(self.index) {
            Some(token) => token,
            None => &mut self.empty,
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Maximal runs of word characters, with their byte offsets.
fn identifier_runs(text: &str) -> impl Iterator<Item = (usize, &str)> {
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

/// Splits one identifier into sub-word byte ranges (underscores dropped).
fn split_identifier(word: &str) -> Vec<(usize, usize)> {
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

    fn raw(text: &str) -> Vec<String> {
        let mut t = CodeTokenizer;
        let mut s = t.token_stream(text);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn splits_snake_camel_acronyms_and_digits() {
        assert_eq!(
            raw("parse_http_header"),
            ["parse_http_header", "parse", "http", "header"]
        );
        assert_eq!(
            raw("parseHttpHeader"),
            ["parsehttpheader", "parse", "http", "header"]
        );
        assert_eq!(raw("HTTPServer"), ["httpserver", "http", "server"]);
        assert_eq!(raw("utf8Decode"), ["utf8decode", "utf", "8", "decode"]);
        assert_eq!(raw("x"), ["x"]);
        assert_eq!(raw("__init__"), ["init"]);
    }

    #[test]
    fn separates_punctuation_and_keeps_offsets() {
        let mut t = CodeTokenizer;
        let mut s = t.token_stream("fn a_b(x: u32) -> Vec<u8>");
        let mut got = Vec::new();
        while s.advance() {
            let tok = s.token();
            got.push((tok.text.clone(), tok.offset_from, tok.offset_to));
        }
        assert_eq!(got[0], ("fn".into(), 0, 2));
        assert_eq!(got[1], ("a_b".into(), 3, 6));
        assert_eq!(got[2], ("a".into(), 3, 4));
        assert!(got.iter().any(|(t, _, _)| t == "vec"));
        assert!(got.iter().any(|(t, _, _)| t == "u32"));
    }

    #[test]
    fn stems_and_drops_long_tokens() {
        let toks = analyze("Parses the headers");
        assert_eq!(toks, ["pars", "the", "header"]);
        assert_eq!(analyze("parsing"), ["pars"]);
        let blob = "a".repeat(MAX_TOKEN_LEN + 1);
        assert!(analyze(&blob).is_empty());
    }

    #[test]
    fn handles_non_ascii_without_panicking() {
        let toks = analyze("größe_berechnen ünïcödé 名前");
        assert!(toks.contains(&"größ".to_string()) || toks.contains(&"größe".to_string()));
        assert!(toks.iter().any(|t| t.contains('名')));
    }
}
