//! The second ranking stage: learned fusion reorders the weighted fusion's pool by the same
//! features `fusion_features` dumps for training, and the weighted fusion stays available.

use std::path::Path;

use gnn_coder_engine::rerank::{FEATURES, LEARNED, RERANK_DEPTH};
use gnn_coder_engine::{Engine, ErrorKind, Fusion, Mode, SearchRequest};

mod support;

fn engine_with_code(tmp: &Path) -> Engine {
    support::engine_with_files(tmp, support::SAMPLE_FILES)
}

#[test]
fn learned_fusion_reorders_the_dumped_pool_by_its_features() {
    if std::env::var_os("GNN_CODER_WEIGHTS").is_some() {
        eprintln!("SKIPPED: the model is chosen by the environment");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    let query = "parse a size with a unit suffix";

    let mut req = SearchRequest::new(query, 10);
    req.mode = Some(Mode::Hybrid);
    let prepared = engine.prepare(&req).expect("prepares");
    let vector = engine.embed_queries(&[query]).expect("embeds").remove(0);
    let pool = engine
        .fusion_features(&prepared, &vector)
        .expect("features");
    assert!(!pool.is_empty() && pool.len() <= RERANK_DEPTH);
    for (_, f) in &pool {
        assert_eq!(f.len(), FEATURES.len());
    }
    // In the weighted fusion's order, its score first.
    assert!(pool.windows(2).all(|w| w[0].1[0] >= w[1].1[0]));
    let at = |name: &str| FEATURES.iter().position(|n| *n == name).expect("feature");
    let parse = pool
        .iter()
        .find(|(h, _)| h.unit.name == "parse_size")
        .expect("parse_size in the pool");
    assert_eq!(
        parse.1[at("name_cover")],
        0.5,
        "parse, size of parse/size/unit/suffix"
    );

    // The weighted fusion ranks by its own score.
    req.fusion = Some(Fusion::Weighted);
    req.demote_tests = false;
    let weighted = engine.search(&req).expect("weighted");
    let names = |hits: &[gnn_coder_engine::SearchHit]| -> Vec<String> {
        hits.iter().map(|h| h.unit.symbol.clone()).collect()
    };
    let pool_names: Vec<String> = pool.iter().map(|(h, _)| h.unit.symbol.clone()).collect();
    assert_eq!(names(&weighted), pool_names[..weighted.len()].to_vec());

    // The learned fusion ranks the same pool by LEARNED over the same features.
    req.fusion = Some(Fusion::Learned);
    let learned = engine.search(&req).expect("learned");
    let mut expected: Vec<(f32, String)> = pool
        .iter()
        .map(|(h, f)| (LEARNED.score(f), h.unit.symbol.clone()))
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(
        names(&learned),
        expected
            .iter()
            .take(learned.len())
            .map(|(_, n)| n.clone())
            .collect::<Vec<_>>()
    );
    assert!(learned.iter().all(|h| h.score > 0.0 && h.score < 1.0));
    assert!(learned.windows(2).all(|w| w[0].score >= w[1].score));

    // Only a hybrid search has a fusion to describe.
    let mut lexical = SearchRequest::new(query, 10);
    lexical.mode = Some(Mode::Lexical);
    let err = engine
        .fusion_features(&engine.prepare(&lexical).expect("prepares"), &vector)
        .expect_err("lexical has no fusion");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}
