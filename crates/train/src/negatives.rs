//! Hard negatives: BM25-mined groups of pairs from the same package.
//!
//! In-batch negatives drawn at random are mostly easy: a docstring about parsing HTTP headers
//! is rarely confused with a function from another package about matrix shapes. What search
//! gets wrong are the functions of the *same* package that share the query's words. This module
//! groups the training pairs so that such functions land in the same batch:
//!
//! * Every package is handled on its own. Codes and queries are split into lowercase word
//!   pieces the way the search index splits them ([`gnn_coder_store::words`]: identifiers are
//!   cut at `_`, case changes, acronym ends and digits, so `parseHeader` and `parse_header` both
//!   give `parse`, `header`, plus the whole identifier), without the index's stemming.
//! * In a seeded random order, each pair not yet grouped starts a group and takes the `size - 1`
//!   ungrouped codes of its package that score highest by BM25 (k1 1.2, b 0.75) against its
//!   query. A code whose text equals the seed's code is never taken (it would be a copy of the
//!   positive). Groups are smaller when a package runs out of pairs.
//! * The trainer ([`crate::trainer`]) shuffles whole groups, so a batch of `B` holds about
//!   `B / size` groups from different packages: each query meets `size - 1` lexically close
//!   functions of its own package among in-batch negatives drawn from everywhere else.
//!
//! The grouping depends only on the texts, the packages and the seed, so a resumed run sees the
//! same batches.

use std::collections::HashMap;

use crate::trainer::epoch_order;

/// BM25 parameters (the usual defaults; tantivy's too).
const K1: f32 = 1.2;
const B: f32 = 0.75;

/// The word pieces of `text`: the tokens the search index's BM25 reads
/// ([`gnn_coder_store::words::code_tokens`]: each identifier lower-cased whole when it has
/// several sub-words, then its sub-words, split at `_`, case changes, acronym ends and digits),
/// before the index's stemming.
pub fn word_pieces(text: &str) -> Vec<String> {
    gnn_coder_store::words::code_tokens(text)
        .into_iter()
        .map(|t| t.text)
        .collect()
}

/// One package's codes as a BM25 index.
struct Bm25 {
    /// term -> (doc, term frequency)
    postings: HashMap<String, Vec<(usize, u32)>>,
    /// doc length normalization `k1 * (1 - b + b * len / avg)` per doc.
    norm: Vec<f32>,
}

impl Bm25 {
    fn new(docs: &[Vec<String>]) -> Self {
        let mut postings: HashMap<String, Vec<(usize, u32)>> = HashMap::new();
        for (d, terms) in docs.iter().enumerate() {
            let mut tf: HashMap<&str, u32> = HashMap::new();
            for t in terms {
                *tf.entry(t.as_str()).or_default() += 1;
            }
            for (t, f) in tf {
                postings.entry(t.to_string()).or_default().push((d, f));
            }
        }
        let avg = docs.iter().map(Vec::len).sum::<usize>() as f32 / docs.len().max(1) as f32;
        let norm = docs
            .iter()
            .map(|d| K1 * (1.0 - B + B * d.len() as f32 / avg.max(1.0)))
            .collect();
        Self { postings, norm }
    }

    /// BM25 score of every doc against `query` (its distinct terms), into `scores`.
    fn score(&self, query: &[String], scores: &mut [f32]) {
        scores.iter_mut().for_each(|s| *s = 0.0);
        let n = self.norm.len() as f32;
        let mut seen: Vec<&str> = Vec::new();
        for t in query {
            if seen.contains(&t.as_str()) {
                continue;
            }
            seen.push(t);
            let Some(list) = self.postings.get(t) else {
                continue;
            };
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(d, f) in list {
                let f = f as f32;
                scores[d] += idf * f * (K1 + 1.0) / (f + self.norm[d]);
            }
        }
    }
}

/// Group pair indices `0..queries.len()` for hard negatives (see the module docs): every index
/// is in exactly one group, a group never spans two packages and holds at most `size` pairs.
/// `queries`, `codes` and `packages` are aligned per pair. `size < 2` gives one group per pair.
pub fn bm25_groups(
    queries: &[&str],
    codes: &[&str],
    packages: &[&str],
    size: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let n = queries.len().min(codes.len()).min(packages.len());
    let mut by_package: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for (i, p) in packages.iter().enumerate().take(n) {
        let k = *slot.entry(p).or_insert_with(|| {
            by_package.push((p, Vec::new()));
            by_package.len() - 1
        });
        by_package[k].1.push(i);
    }
    let mut groups = Vec::with_capacity(n / size.max(1) + by_package.len());
    for (k, (_, members)) in by_package.iter().enumerate() {
        if size < 2 {
            groups.extend(members.iter().map(|&i| vec![i]));
            continue;
        }
        let docs: Vec<Vec<String>> = members.iter().map(|&i| word_pieces(codes[i])).collect();
        let index = Bm25::new(&docs);
        let mut scores = vec![0f32; members.len()];
        let mut taken = vec![false; members.len()];
        for s in epoch_order(members.len(), seed, k) {
            if taken[s] {
                continue;
            }
            taken[s] = true;
            index.score(&word_pieces(queries[members[s]]), &mut scores);
            let seed_code = codes[members[s]];
            let mut cands: Vec<usize> = (0..members.len())
                .filter(|&d| !taken[d] && codes[members[d]] != seed_code)
                .collect();
            // Highest score first; ties (often zero) by position, so the result is deterministic.
            cands.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            let mut group = vec![members[s]];
            for &d in cands.iter().take(size - 1) {
                taken[d] = true;
                group.push(members[d]);
            }
            groups.push(group);
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_pieces_split_identifiers() {
        assert_eq!(
            word_pieces("fn parseHTTPHeader(raw_bytes: &[u8]) -> x"),
            [
                "fn",
                "parsehttpheader",
                "parse",
                "http",
                "header",
                "raw_bytes",
                "raw",
                "bytes",
                "u8",
                "u",
                "8",
                "x"
            ]
        );
        assert_eq!(
            word_pieces("Return the JSON value."),
            ["return", "the", "json", "value"]
        );
    }

    #[test]
    fn groups_hold_lexical_neighbours_of_one_package() {
        let queries = [
            "Parse a JSON document.",
            "Render the HTML page.",
            "Parse JSON from a file.",
            "Render an HTML template.",
            "Parse JSON.",
        ];
        let codes = [
            "def load(s): return json_parse(s)",
            "def page(ctx): return html_render(ctx)",
            "def load_file(p): return json_parse(open(p).read())",
            "def template(t): return html_render(t, {})",
            "def load(s): return json_parse(s)",
        ];
        // Pair 4 is in another package (and its code copies pair 0's).
        let packages = ["a", "a", "a", "a", "b"];
        for seed in 0..5 {
            let groups = bm25_groups(&queries, &codes, &packages, 2, seed);
            let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
            all.sort();
            assert_eq!(all, [0, 1, 2, 3, 4], "a partition (seed {seed})");
            assert!(groups.iter().all(|g| g.len() <= 2));
            let mut sorted: Vec<Vec<usize>> = groups
                .into_iter()
                .map(|mut g| {
                    g.sort();
                    g
                })
                .collect();
            sorted.sort();
            assert_eq!(sorted, [vec![0, 2], vec![1, 3], vec![4]], "seed {seed}");
        }
        // A code equal to the seed's is never its negative.
        let same = bm25_groups(&queries[..2], &[codes[0], codes[0]], &["a", "a"], 2, 1);
        assert_eq!(same.len(), 2);
        // Size 1 (or 0): one group per pair.
        assert_eq!(bm25_groups(&queries, &codes, &packages, 1, 0).len(), 5);
    }
}
