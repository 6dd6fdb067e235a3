//! A code-aware tokenizer for tantivy.
//!
//! Identifiers in code glue words together (`parse_http_header`, `parseHttpHeader`,
//! `HTTPHeaderV2`), while plain-English questions name the words apart ("parse the HTTP header").
//! The splitting itself is [`gnn_coder_store::words`], shared with the engine's highlights and
//! training's hard-negative mining so that all of them cut text the same way. For every run of
//! letters, digits and underscores it yields:
//!
//! 1. the whole identifier, lower-cased, when it has more than one sub-word, so that an exact
//!    identifier query (`parse_http_header`) still ranks its own definition first;
//! 2. its sub-words, split at `_`, at lower→upper case changes (`parseHttp` → `parse`, `http`),
//!    at the end of an upper-case run followed by a capitalised word (`HTTPHeader` → `http`,
//!    `header`) and at letter↔digit changes (`v2` → `v`, `2`), each lower-cased.
//!
//! This module wraps that as a tantivy [`Tokenizer`] and stems every token with the English
//! Snowball stemmer so that "parses", "parsing" and `parse` meet. Tokens longer than
//! [`MAX_TOKEN_LEN`] bytes (hashes, base64 blobs) are dropped.
//!
//! The same analysis runs on documents and on queries; [`analyze`] exposes it for the query side
//! and [`analyze_spans`] with byte offsets (for highlighting what BM25 matched).

use gnn_coder_store::words::{CodeToken, code_tokens};
use tantivy::tokenizer::{
    Language, RawTokenizer, Stemmer, TextAnalyzer, Token, TokenStream, Tokenizer,
};

pub use gnn_coder_store::words::MAX_TOKEN_LEN;

/// Name under which the analyzer is registered with the tantivy index.
pub const CODE_TOKENIZER: &str = "gnn_code";

/// Builds the analyzer used for every text field of the index.
pub fn code_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(CodeTokenizer)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Runs the index's analysis on a piece of text and returns the tokens (with repetitions).
pub fn analyze(text: &str) -> Vec<String> {
    analyze_spans(text).into_iter().map(|t| t.text).collect()
}

/// The distinct terms of a query, in order of first appearance: what every store's BM25 leg
/// scores (each term once, whatever the number of times the query repeats it). A question's
/// function words ([`QUERY_STOP_WORDS`]) are left out when any other term remains: their
/// postings cover most units, so they cost the leg much time (lexical p50 3.1 → 2.4 ms at
/// 110k units) and, at their low weights, move little (dev MRR@10 hybrid .581 → .584,
/// multi-language dev .543 → .540, CoSQA dev .496 → .493). A query of nothing else keeps
/// them.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let terms: Vec<String> = analyze(text)
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect();
    let stop = query_stop_terms();
    if terms.iter().all(|t| stop.contains(t)) {
        return terms;
    }
    terms.into_iter().filter(|t| !stop.contains(t)).collect()
}

/// Function words of questions, which BM25 would otherwise look up in nearly every unit
/// (lower-case, as written; matched on their analysed form).
pub const QUERY_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "i", "in",
    "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "what", "when",
    "which", "with",
];

/// [`QUERY_STOP_WORDS`] as the analysis codes them.
fn query_stop_terms() -> &'static std::collections::HashSet<String> {
    static STOP: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    STOP.get_or_init(|| QUERY_STOP_WORDS.iter().flat_map(|w| analyze(w)).collect())
}

/// Runs the index's analysis on a piece of text: the tokens BM25 indexes or queries, stemmed,
/// each with the byte range of `text` it was read from.
pub fn analyze_spans(text: &str) -> Vec<CodeToken> {
    let mut analyzer = code_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let t = stream.token();
        out.push(CodeToken {
            text: t.text.clone(),
            from: t.offset_from,
            to: t.offset_to,
        });
    }
    out
}

/// [`analyze_spans`] of only the tokens whose unstemmed, lower-cased text `keep` accepts: for
/// those, the same terms and byte ranges; the rest are never stemmed (highlighting asks for the
/// few tokens that can be a query's term, and stemming every word of a unit is most of the
/// cost).
pub fn analyze_spans_where(text: &str, keep: impl Fn(&str) -> bool) -> Vec<CodeToken> {
    // The analyzer's stemming step alone: each token is stemmed on its own, as in the index.
    let mut stemmer = TextAnalyzer::builder(RawTokenizer::default())
        .filter(Stemmer::new(Language::English))
        .build();
    code_tokens(text)
        .into_iter()
        .filter(|t| keep(&t.text))
        .map(|t| {
            let mut stream = stemmer.token_stream(&t.text);
            let text = if stream.advance() {
                stream.token().text.clone()
            } else {
                String::new()
            };
            CodeToken {
                text,
                from: t.from,
                to: t.to,
            }
        })
        .collect()
}

/// The tokenizer part of [`code_analyzer`] (without stemming): [`code_tokens`] as tantivy
/// tokens, one position each.
#[derive(Clone, Copy, Debug, Default)]
pub struct CodeTokenizer;

impl Tokenizer for CodeTokenizer {
    type TokenStream<'a> = CodeTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> CodeTokenStream {
        let tokens = code_tokens(text)
            .into_iter()
            .enumerate()
            .map(|(position, t)| Token {
                offset_from: t.from,
                offset_to: t.to,
                position,
                text: t.text,
                position_length: 1,
            })
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_terms_leave_function_words_out_while_others_remain() {
        assert_eq!(
            query_terms("How to parse the HTTP header of a request"),
            vec!["pars", "http", "header", "request"]
        );
        // An identifier keeps its whole term; only the function-word sub-word goes.
        assert_eq!(query_terms("is_empty"), vec!["is_empti", "empti"]);
        // Nothing else: the words are the query.
        assert_eq!(query_terms("to be or not"), vec!["not"]);
        assert_eq!(query_terms("is it in"), vec!["is", "it", "in"]);
        assert!(query_terms("").is_empty());
    }

    #[test]
    fn spans_where_equal_the_full_analysis() {
        let text = "def parse_http_header(raw):\n    # Parses HTTPServer v2 headers, studies flies\n    \
                    return ParsedHeaders(raw).lying_dying_tying(skies, café_naïve)";
        assert_eq!(analyze_spans_where(text, |_| true), analyze_spans(text));
        let only_p: Vec<CodeToken> = analyze_spans(text)
            .into_iter()
            .filter(|t| text[t.from..t.to].to_lowercase().starts_with('p'))
            .collect();
        assert_eq!(analyze_spans_where(text, |w| w.starts_with('p')), only_p);
    }

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

/// Pins the analysis of the BM25 leg on identifiers that are easy to get wrong (camelCase,
/// snake_case, acronyms, digits, Unicode case and digits, `::` paths, tokens at and over the
/// length limit): any change to these tokens changes lexical ranking of existing indexes.
#[cfg(test)]
mod pinned {
    use super::*;

    /// `(input, "text@from..to#position ...")` for the full analysis (split, lower-cased,
    /// stemmed), recorded from the tokenizer as it was before the splitter moved to
    /// `gnn_coder_store::words`.
    pub(super) const PINNED: &[(&str, &str)] = &[
        (
            "parseHttpHeader",
            "parsehttphead@0..15#0 pars@0..5#1 http@5..9#2 header@9..15#3",
        ),
        (
            "parse_http_header",
            "parse_http_head@0..17#0 pars@0..5#1 http@6..10#2 header@11..17#3",
        ),
        (
            "HTTPServer",
            "httpserver@0..10#0 http@0..4#1 server@4..10#2",
        ),
        (
            "HTTPHeaderV2",
            "httpheaderv2@0..12#0 http@0..4#1 header@4..10#2 v@10..11#3 2@11..12#4",
        ),
        (
            "getHTTPResponseCode",
            "gethttpresponsecod@0..19#0 get@0..3#1 http@3..7#2 respons@7..15#3 code@15..19#4",
        ),
        ("IOError", "ioerror@0..7#0 io@0..2#1 error@2..7#2"),
        (
            "ABC ABCd aBC A1B2",
            "abc@0..3#0 abcd@4..8#1 ab@4..6#2 cd@6..8#3 abc@9..12#4 a@9..10#5 bc@10..12#6 a1b2@13..17#7 a@13..14#8 1@14..15#9 b@15..16#10 2@16..17#11",
        ),
        (
            "utf8Decode x86_64 v2 1e10 0xFFu8",
            "utf8decod@0..10#0 utf@0..3#1 8@3..4#2 decod@4..10#3 x86_64@11..17#4 x@11..12#5 86@12..14#6 64@15..17#7 v2@18..20#8 v@18..19#9 2@19..20#10 1e10@21..25#11 1@21..22#12 e@22..23#13 10@23..25#14 0xffu8@26..32#15 0@26..27#16 x@27..28#17 f@28..29#18 fu@29..31#19 8@31..32#20",
        ),
        (
            "__init__ _ a__b",
            "init@2..6#0 a__b@11..15#1 a@11..12#2 b@14..15#3",
        ),
        (
            "std::collections::HashMap::<K, V>::new",
            "std@0..3#0 collect@5..16#1 hashmap@18..25#2 hash@18..22#3 map@22..25#4 k@28..29#5 v@31..32#6 new@35..38#7",
        ),
        ("a::b::C", "a@0..1#0 b@3..4#1 c@6..7#2"),
        (
            "größe_berechnen ÜberKlasse naïveBayes",
            "größe_berechnen@0..17#0 größe@0..7#1 berechnen@8..17#2 überklass@18..29#3 über@18..23#4 klass@23..29#5 naïvebay@30..41#6 naïv@30..36#7 bay@36..41#8",
        ),
        (
            "名前_取得 ǅemal ١٢٣abc Ⅻ",
            "名前_取得@0..13#0 名前@0..6#1 取得@7..13#2 ǆemal@14..20#3 ١٢٣abc@21..30#4 ١٢٣@21..27#5 abc@27..30#6 ⅻ@31..34#7",
        ),
        (
            "emoji🦀crab tab\tsep",
            "emoji@0..5#0 crab@9..13#1 tab@14..17#2 sep@18..21#3",
        ),
        (
            "Parses the headers, parsing PARSED",
            "pars@0..6#0 the@7..10#1 header@11..18#2 pars@20..27#3 pars@28..34#4",
        ),
        (
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@0..48#0",
        ),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", ""),
        (
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx@0..30#0 yyyyyyyyyyyyyyyyyyyyyyyyyyyyyi@31..61#1",
        ),
        (
            "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "sha256@0..6#0 sha@0..3#1 256@3..6#2 9@7..8#3 f@8..9#4 86@9..11#5 d@11..12#6 081884@12..18#7 c@18..19#8 7@19..20#9 d@20..21#10 659@21..24#11 a@24..25#12 2@25..26#13 feaa@26..30#14 0@30..31#15 c@31..32#16 55@32..34#17 ad@34..36#18 015@36..39#19 a@39..40#20 3@40..41#21 bf@41..43#22 4@43..44#23 f@44..45#24 1@45..46#25 b@46..47#26 2@47..48#27 b@48..49#28 0@49..50#29 b@50..51#30 822@51..54#31 cd@54..56#32 15@56..58#33 d@58..59#34 6@59..60#35 c@60..61#36 15@61..63#37 b@63..64#38 0@64..65#39 f@65..66#40 00@66..68#41 a@68..69#42 08@69..71#43",
        ),
        ("", ""),
        ("  -> ", ""),
    ];

    /// `text@from..to#position` for every token of the full analysis (stemmed).
    pub(super) fn render(text: &str) -> String {
        let mut analyzer = code_analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            let t = stream.token();
            out.push(format!(
                "{}@{}..{}#{}",
                t.text, t.offset_from, t.offset_to, t.position
            ));
        }
        out.join(" ")
    }

    #[test]
    fn tricky_identifiers_keep_their_tokens() {
        for (input, want) in PINNED {
            assert_eq!(render(input), *want, "{input:?}");
        }
    }

    /// The tokenizer is the shared splitter, token for token, before stemming; `analyze_spans`
    /// is the full analysis with the same offsets.
    #[test]
    fn the_tokenizer_is_the_shared_splitter() {
        for (input, _) in PINNED {
            let mut t = CodeTokenizer;
            let mut s = t.token_stream(input);
            let mut raw = Vec::new();
            while s.advance() {
                let tok = s.token();
                raw.push((tok.text.clone(), tok.offset_from, tok.offset_to));
            }
            let shared: Vec<_> = code_tokens(input)
                .into_iter()
                .map(|t| (t.text, t.from, t.to))
                .collect();
            assert_eq!(raw, shared, "{input:?}");
            let spans: Vec<String> = analyze_spans(input)
                .into_iter()
                .enumerate()
                .map(|(i, t)| format!("{}@{}..{}#{i}", t.text, t.from, t.to))
                .collect();
            assert_eq!(spans.join(" "), render(input), "{input:?}");
        }
    }
}
