//! The cross-encoder stage: asked for per request, it corrects the hybrid first stage's top N
//! by the reranker's reading of question and code, and leaves the hits below N as they were;
//! other modes and bad depths are refused.

use std::path::Path;

use gnn_coder_engine::{
    CancellationToken, Engine, ErrorKind, MAX_RERANK_DEPTH, Mode, RERANK_FIRST_STAGE_WEIGHT,
    SearchHit, SearchRequest,
};

mod support;

fn engine_with_code(tmp: &Path) -> Engine {
    let mut files = support::SAMPLE_FILES.to_vec();
    files.push((
        "text/words.py",
        "def count_words(text):\n    counts = {}\n    for w in text.split():\n        counts[w] = counts.get(w, 0) + 1\n    return counts\n",
    ));
    support::engine_with_files(tmp, &files)
}

fn symbols(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.unit.symbol.as_str()).collect()
}

#[test]
fn the_top_n_are_corrected_by_the_reranker_and_the_rest_keep_their_place() {
    if std::env::var_os("GNN_CODER_WEIGHTS").is_some() {
        eprintln!("SKIPPED: the model is chosen by the environment");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    for (query, depth) in [
        (
            "retry a call a few times, waiting longer after each failure",
            3,
        ),
        ("how many times each word occurs in a text", 5),
    ] {
        let mut req = SearchRequest::new(query, 10);
        req.mode = Some(Mode::Hybrid);
        let first = engine.search(&req).expect("first stage");
        assert!(first.len() >= depth, "{:?}", symbols(&first));
        req.rerank = Some(depth);
        let reranked = engine.search(&req).expect("reranked");
        assert_eq!(reranked.len(), first.len());

        // The top `depth` are the first stage's, each scored first + logit / weight, in that
        // order.
        let model = engine.reranker().expect("reranker");
        let codes: Vec<&str> = first[..depth]
            .iter()
            .map(|h| h.unit.code.as_str())
            .collect();
        let logits = model.score(query, &codes, &|| true).expect("scores");
        let mut expected: Vec<(f32, &str)> = logits
            .iter()
            .zip(&first[..depth])
            .map(|(l, h)| {
                (
                    h.score + l / RERANK_FIRST_STAGE_WEIGHT,
                    h.unit.symbol.as_str(),
                )
            })
            .collect();
        expected.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(
            symbols(&reranked[..depth]),
            expected.iter().map(|e| e.1).collect::<Vec<_>>()
        );
        for (hit, (score, _)) in reranked.iter().zip(&expected) {
            assert!((hit.score - score).abs() < 1e-5, "{} vs {score}", hit.score);
        }
        // Below the depth: the first stage's hits, order and scores.
        for (a, b) in reranked[depth..].iter().zip(&first[depth..]) {
            assert_eq!(
                (a.unit.symbol.as_str(), a.score),
                (b.unit.symbol.as_str(), b.score)
            );
        }
        // A depth past the hits asked for still reads that many.
        req.top_k = 1;
        let one = engine.search(&req).expect("one");
        assert_eq!(symbols(&one), vec![expected[0].1]);
    }
}

#[test]
fn rerank_depths_are_checked_and_a_cancelled_search_stops() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    for depth in [0, MAX_RERANK_DEPTH + 1] {
        let mut req = SearchRequest::new("parse a size", 5);
        req.rerank = Some(depth);
        let err = engine.search(&req).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{depth}: {err}");
        assert!(err.to_string().contains("rerank depth"), "{err}");
    }
    let mut req = SearchRequest::new("parse a size", 5);
    req.rerank = Some(MAX_RERANK_DEPTH);
    assert!(!engine.search(&req).expect("the largest depth").is_empty());
    for mode in [Mode::Lexical, Mode::Semantic] {
        let mut other = req.clone();
        other.mode = Some(mode);
        let err = engine.search(&other).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("corrects hybrid search"), "{err}");
    }

    let cancel = CancellationToken::new();
    cancel.cancel();
    let prepared = engine.prepare(&req).expect("prepares");
    let err = engine.run_prepared_until(&prepared, &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
}
