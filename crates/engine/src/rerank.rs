//! The second ranking stage of hybrid search: learned fusion.
//!
//! # Design
//!
//! The first stage ([`crate::search`]) is cheap and wide: BM25 and the vectors each rank a pool
//! of candidates, and a fixed weight fuses their min-max-normalised scores. Most of MRR is won or
//! lost in the order of the first few dozen of that fused list, and there the two scores alone
//! miss evidence a reader uses at a glance: does the function's *name* say what the question
//! asks, or only its body, or only its file? Is it a method of a type the question names?
//!
//! So the top [`RERANK_DEPTH`] fused candidates are read from the store, each is described by a
//! few cheap [`FEATURES`] (the two scores as the first stage saw them, their ranks, and how much
//! of the question the unit's name, enclosing symbol, path and code cover) and a linear model
//! ([`LEARNED`]) scores them. A linear model, because it costs a few multiply-adds per candidate
//! (well under a millisecond for the whole pool), its weights can be read, and it cannot
//! memorise the training set's packages.
//!
//! The weights are learned from questions mined from the *training* manifest's packages only
//! (`training/fusion/`: a benchmark built like dev from a sample of those packages, its
//! candidates dumped with these features by `examples/fusion_features.rs`, a listwise softmax
//! fitted by `training/fusion/fit.py`), never from dev or public sets; dev and CoSQA dev only
//! decide whether the learned fusion is the default ([`DEFAULT_FUSION`]).
//!
//! Query words and unit words are split with the store's one identifier splitter
//! ([`gnn_coder_store::words::sub_words`]), lower-cased; a handful of stop words are dropped;
//! a query word matches a unit word when they are equal or share a prefix of at least five
//! characters (`parse`/`parser`/`parsing`, `serialize`/`serializer`).

use gnn_coder_store::UnitRecord;
use gnn_coder_store::words::sub_words;

/// How hybrid search orders its fused candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fusion {
    /// The fixed-weight sum of the normalised scores ([`crate::DEFAULT_DENSE_WEIGHT`]).
    Weighted,
    /// The weighted fusion's top [`RERANK_DEPTH`] reordered by [`LEARNED`].
    Learned,
}

impl Fusion {
    pub fn parse(s: &str) -> Option<Fusion> {
        match s {
            "weighted" => Some(Fusion::Weighted),
            "learned" => Some(Fusion::Learned),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fusion::Weighted => "weighted",
            Fusion::Learned => "learned",
        }
    }
}

/// Candidates of the fused list the learned fusion reorders.
pub const RERANK_DEPTH: usize = 40;

/// Names of the features, in the order of [`Features`].
pub const FEATURES: [&str; N_FEATURES] = [
    "fused",
    "dense_norm",
    "lexical_norm",
    "dense",
    "in_lexical",
    "dense_rr",
    "lexical_rr",
    "name_cover",
    "symbol_cover",
    "path_cover",
    "code_cover",
    "name_in_query",
    "log_lines",
    "is_method",
];

pub const N_FEATURES: usize = 14;

/// One candidate's feature vector.
pub type Features = [f32; N_FEATURES];

/// What the first stage knows of one candidate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FirstStage {
    /// The weighted fusion's score.
    pub fused: f32,
    /// Min-max normalised over the pool (0 when the leg did not score it).
    pub dense_norm: f32,
    pub lexical_norm: f32,
    /// Cosine similarity of the query and code vectors, when known.
    pub dense: Option<f32>,
    /// 0-based rank in each leg's own list, when the leg returned it.
    pub dense_rank: Option<usize>,
    pub lexical_rank: Option<usize>,
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "of", "to", "in", "for", "on", "by", "with", "and", "or", "is", "are", "be",
    "it", "its", "this", "that", "from", "as", "at", "if", "into", "given", "all", "any", "s",
    "returns", "return", "get", "gets",
];

/// The content words of a query.
#[derive(Debug, Clone, Default)]
pub struct QueryWords {
    words: Vec<String>,
}

impl QueryWords {
    pub fn new(query: &str) -> QueryWords {
        let mut words: Vec<String> = Vec::new();
        for w in sub_words(query) {
            if w.len() >= 2 && !STOP_WORDS.contains(&w.as_str()) && !words.contains(&w) {
                words.push(w);
            }
        }
        QueryWords { words }
    }

    /// Fraction of the query's words that some word of `unit_words` matches.
    fn cover(&self, unit_words: &[String]) -> f32 {
        if self.words.is_empty() {
            return 0.0;
        }
        let hit = self
            .words
            .iter()
            .filter(|q| unit_words.iter().any(|u| words_match(q, u)))
            .count();
        hit as f32 / self.words.len() as f32
    }
}

impl QueryWords {
    /// Fraction of `unit_words` that some query word matches.
    fn said(&self, unit_words: &[String]) -> f32 {
        if unit_words.is_empty() {
            return 0.0;
        }
        let hit = unit_words
            .iter()
            .filter(|u| self.words.iter().any(|q| words_match(q, u)))
            .count();
        hit as f32 / unit_words.len() as f32
    }
}

fn words_match(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    common >= 5
}

/// The features of one candidate.
pub fn features(query: &QueryWords, first: &FirstStage, unit: &UnitRecord) -> Features {
    let name = sub_words(&unit.name);
    let container = unit
        .symbol
        .strip_suffix(unit.name.as_str())
        .unwrap_or(&unit.symbol);
    let symbol = sub_words(container);
    let path = sub_words(&unit.path);
    let code = sub_words(&unit.code);
    let name_cover = query.cover(&name);
    let lines = unit.end_line.saturating_sub(unit.start_line) + 1;
    let rr = |r: Option<usize>| r.map_or(0.0, |r| 1.0 / (1.0 + r as f32));
    [
        first.fused,
        first.dense_norm,
        first.lexical_norm,
        first.dense.unwrap_or(0.0),
        f32::from(u8::from(first.lexical_rank.is_some())),
        rr(first.dense_rank),
        rr(first.lexical_rank),
        name_cover,
        query.cover(&symbol),
        query.cover(&path),
        query.cover(&code),
        // The other direction: how much of the name the question says (`parse_headers` for
        // "parse the headers of a request" is all said).
        query.said(&name),
        ((lines as f32).ln_1p() / 5.0).min(2.0),
        f32::from(u8::from(unit.kind == "method")),
    ]
}

/// A linear scorer over [`Features`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearModel {
    pub weights: Features,
}

impl LinearModel {
    pub fn score(&self, f: &Features) -> f32 {
        self.weights.iter().zip(f).map(|(w, x)| w * x).sum()
    }
}

/// The shipped weights (`training/fusion/fit.py`; see the module docs).
pub const LEARNED: LinearModel = LinearModel {
    weights: [
        11.8735, -0.0581, 0.2323, 0.0080, 0.3573, 0.1686, 0.2433, 0.0979, 0.7937, 0.5295, 0.6066,
        0.0338, 0.3627, -0.2471,
    ],
};

/// The fusion a hybrid search uses when the request names none.
pub const DEFAULT_FUSION: Fusion = Fusion::Weighted;

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, symbol: &str, path: &str, code: &str) -> UnitRecord {
        UnitRecord {
            path: path.into(),
            language: "python".into(),
            kind: "method".into(),
            name: name.into(),
            symbol: symbol.into(),
            start_line: 10,
            end_line: 19,
            def_line: 10,
            start_byte: 0,
            end_byte: code.len() as u64,
            doc: None,
            code: code.into(),
        }
    }

    #[test]
    fn covers_split_names_and_prefixes() {
        let q = QueryWords::new("Parse the HTTP headers of a request");
        assert_eq!(q.words, ["parse", "http", "headers", "request"]);
        let u = unit(
            "parse_headers",
            "HttpRequest.parse_headers",
            "net/client.py",
            "def parse_headers(self, raw):\n    return dict(raw)\n",
        );
        let f = features(&q, &FirstStage::default(), &u);
        let at = |n: &str| f[FEATURES.iter().position(|x| *x == n).unwrap()];
        assert_eq!(at("name_cover"), 0.5);
        assert_eq!(at("symbol_cover"), 0.5, "http, request from HttpRequest");
        assert_eq!(at("path_cover"), 0.0);
        assert_eq!(
            at("name_in_query"),
            1.0,
            "parse and headers are both asked for"
        );
        assert_eq!(at("is_method"), 1.0);
        // `parser` matches `parse` (a shared prefix of five).
        assert!(words_match("parse", "parser") && !words_match("pars", "part"));
    }

    #[test]
    fn ranks_become_reciprocals_and_missing_legs_zero() {
        let q = QueryWords::new("sum numbers");
        let first = FirstStage {
            fused: 0.7,
            dense_norm: 1.0,
            lexical_norm: 0.0,
            dense: Some(0.62),
            dense_rank: Some(0),
            lexical_rank: None,
        };
        let f = features(&q, &first, &unit("add", "add", "a.py", "def add(): pass"));
        assert_eq!(&f[..7], &[0.7, 1.0, 0.0, 0.62, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn an_empty_query_covers_nothing() {
        let q = QueryWords::new("the of a");
        let f = features(&q, &FirstStage::default(), &unit("x", "x", "x.py", "x"));
        assert!(f[7..12].iter().all(|&v| v == 0.0));
    }
}
