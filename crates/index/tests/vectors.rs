//! Semantic and hybrid search over vectors stored beside the lexical index.

use gnn_coder_index::{
    BuildStats, EmbeddingInfo, IndexBuilder, IndexError, KindFilter, SearchIndex, SearchRequest,
};
use gnn_coder_syntax::{CodeUnit, ExtractOptions, Language, extract_file};

const PY: &str = "\
def levenshtein(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]

def read_config(path):
    with open(path) as f:
        return dict(line.split('=', 1) for line in f if '=' in line)

class Cache:
    def get(self, key):
        return self.data.get(key)
";

const RS: &str = "\
fn backoff_delay(attempt: u32) -> u64 {
    100u64.saturating_mul(1 << attempt.min(10))
}
";

fn units() -> Vec<CodeUnit> {
    let mut out = Vec::new();
    for (lang, path, src) in [("python", "a/util.py", PY), ("rust", "b/net.rs", RS)] {
        let lang = Language::by_name(lang).unwrap();
        let parsed = extract_file(lang, path, src.as_bytes(), &ExtractOptions::default()).unwrap();
        out.extend(parsed.units);
    }
    out
}

/// A one-hot vector per unit: unit `i` points along axis `i`.
fn one_hot(dim: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[i] = 1.0;
    v
}

fn build(dir: &std::path::Path, with_vectors: bool) -> Vec<CodeUnit> {
    let units = units();
    let mut b = IndexBuilder::create(dir, 1).unwrap();
    for u in &units {
        b.add(u).unwrap();
    }
    if with_vectors {
        let dim = 8;
        let rows: Vec<Vec<f32>> = (0..units.len()).map(|i| one_hot(dim, i)).collect();
        let info = EmbeddingInfo {
            model: "test".into(),
            dim,
            trained: false,
        };
        b.set_vectors(info, &rows).unwrap();
    }
    b.finish(dir, BuildStats::default()).unwrap();
    units
}

fn id_of(units: &[CodeUnit], symbol: &str) -> usize {
    units.iter().position(|u| u.symbol == symbol).unwrap()
}

#[test]
fn semantic_search_ranks_by_vector() {
    let tmp = tempfile::tempdir().unwrap();
    let units = build(tmp.path(), true);
    let index = SearchIndex::open(tmp.path()).unwrap();
    let info = index.embedding().unwrap();
    assert_eq!((info.dim, info.model.as_str()), (8, "test"));

    // A query vector between read_config (0.8) and levenshtein (0.6): read_config first.
    let mut q = vec![0.0; 8];
    q[id_of(&units, "read_config")] = 0.8;
    q[id_of(&units, "levenshtein")] = 0.6;
    let hits = index
        .search_semantic(&SearchRequest::new("ignored words", 2), &q)
        .unwrap();
    let symbols: Vec<&str> = hits.iter().map(|h| h.symbol.as_str()).collect();
    assert_eq!(symbols, ["read_config", "levenshtein"]);
    assert!((hits[0].score - 0.8).abs() < 1e-6);
    assert_eq!(hits[0].path, "a/util.py");
}

#[test]
fn semantic_search_applies_filters() {
    let tmp = tempfile::tempdir().unwrap();
    let units = build(tmp.path(), true);
    let index = SearchIndex::open(tmp.path()).unwrap();
    let q = vec![0.5f32; 8];

    let mut req = SearchRequest::new("", 10);
    req.languages = vec!["rust".into()];
    let hits = index.search_semantic(&req, &q).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].symbol, "backoff_delay");

    let mut req = SearchRequest::new("", 10);
    req.path_glob = Some("a/**".into());
    let hits = index.search_semantic(&req, &q).unwrap();
    assert!(hits.iter().all(|h| h.path == "a/util.py"));
    assert_eq!(hits.len(), 3, "callables only by default: {hits:?}");

    let mut req = SearchRequest::new("", 10);
    req.kinds = KindFilter::All;
    let hits = index.search_semantic(&req, &q).unwrap();
    assert_eq!(hits.len(), units.len());
    assert!(hits.iter().any(|h| h.kind == "class"));
}

#[test]
fn hybrid_fuses_both_rankings() {
    let tmp = tempfile::tempdir().unwrap();
    let units = build(tmp.path(), true);
    let index = SearchIndex::open(tmp.path()).unwrap();
    // The vector says levenshtein, the words say backoff_delay.
    let q = one_hot(8, id_of(&units, "levenshtein"));
    let req = SearchRequest::new("backoff delay attempt", 3);
    let top = |w: f32| index.search_hybrid(&req, &q, w).unwrap()[0].symbol.clone();
    assert_eq!(top(1.0), "levenshtein");
    assert_eq!(top(0.0), "backoff_delay");
    let hits = index.search_hybrid(&req, &q, 0.5).unwrap();
    assert!(hits.len() <= 3);
    let symbols: Vec<&str> = hits.iter().map(|h| h.symbol.as_str()).collect();
    assert!(symbols.contains(&"levenshtein") && symbols.contains(&"backoff_delay"));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn lexical_only_index_and_wrong_dimension_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), false);
    let index = SearchIndex::open(tmp.path()).unwrap();
    assert!(index.embedding().is_none());
    let err = index
        .search_semantic(&SearchRequest::new("x", 3), &[1.0; 8])
        .unwrap_err();
    assert!(matches!(err, IndexError::NoVectors { .. }), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), true);
    let index = SearchIndex::open(tmp.path()).unwrap();
    let err = index
        .search_semantic(&SearchRequest::new("x", 3), &[1.0; 5])
        .unwrap_err();
    assert!(
        matches!(
            err,
            IndexError::DimensionMismatch {
                index: 8,
                query: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn vectors_must_match_the_units() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = IndexBuilder::create(tmp.path(), 1).unwrap();
    for u in &units() {
        b.add(u).unwrap();
    }
    let info = EmbeddingInfo {
        model: "test".into(),
        dim: 4,
        trained: false,
    };
    assert!(b.set_vectors(info.clone(), &[vec![0.0; 4]]).is_err());
    let n = b.len() as usize;
    let mut rows = vec![vec![0.0; 4]; n];
    rows[1] = vec![0.0; 3];
    assert!(b.set_vectors(info, &rows).is_err());
}

#[test]
fn truncated_vector_file_is_reported_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), true);
    let index = SearchIndex::open(tmp.path()).unwrap();
    let gen_dir = index.manifest().generation_dir(tmp.path());
    drop(index);
    let path = gen_dir.join("vectors.f32");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let index = SearchIndex::open(tmp.path()).unwrap();
    let err = index
        .search_semantic(&SearchRequest::new("x", 3), &[1.0; 8])
        .unwrap_err();
    assert!(matches!(err, IndexError::BadManifest { .. }), "{err}");
}
