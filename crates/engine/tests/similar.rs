//! Code→code search's second stage: the structure fingerprint puts a copy with renamed names
//! first, where the text-reading first stage prefers code that shares the original's words.

use std::path::Path;

use gnn_coder_engine::{
    CancellationToken, Engine, ErrorKind, KindFilter, SIMILAR_STRUCTURE_WEIGHT, SimilarRequest,
    SimilarTarget,
};

mod support;

const ORIGINAL: &str = "def order_total(items, discount):\n    total = 0\n    for item in items:\n        if item.quantity > 0:\n            total += item.price * item.quantity\n    if discount:\n        total = total * (1 - discount)\n    return round(total, 2)\n";

/// The original with its name, parameters and locals renamed.
const COPY: &str = "def v0(v1, v2):\n    acc = 0\n    for it in v1:\n        if it.quantity > 0:\n            acc += it.price * it.quantity\n    if v2:\n        acc = acc * (1 - v2)\n    return round(acc, 2)\n";

/// Shares the original's words, not its shape.
const DECOY: &str = "def order_total_report(items, discount):\n    lines = [f'{item.price} x {item.quantity}' for item in items]\n    lines.append(f'discount {discount}')\n    return '\\n'.join(lines)\n";

const JAVA: &str = "class Cart {\n    public int countItems(List<Item> items) {\n        int count = 0;\n        for (Item item : items) {\n            if (item.quantity > 0) {\n                count += item.quantity;\n            }\n        }\n        return count;\n    }\n\n    public int v0(List<Item> v1) {\n        int n = 0;\n        for (Item x : v1) {\n            if (x.quantity > 0) {\n                n += x.quantity;\n            }\n        }\n        return n;\n    }\n\n    public String countItemsLabel(List<Item> items) {\n        return \"items: \" + items.size() + \" count\";\n    }\n}\n";

fn engine_with_code(tmp: &Path) -> Engine {
    support::engine_with_files(
        tmp,
        &[
            ("shop/orders.py", ORIGINAL),
            ("shop/report.py", DECOY),
            ("copied/util.py", COPY),
            ("java/Cart.java", JAVA),
        ],
    )
}

fn ask(engine: &Engine, path: &str, line: u64, structure_weight: f32) -> Vec<(String, f32)> {
    let mut req = SimilarRequest::new(
        SimilarTarget::Unit {
            repository: None,
            path: path.into(),
            line,
        },
        3,
    );
    req.kinds = KindFilter::Callables;
    req.structure_weight = structure_weight;
    let (origin, hits) = engine.similar(&req).expect("similar");
    assert!(origin.is_some());
    hits.into_iter()
        .map(|h| (format!("{}:{}", h.unit.path, h.unit.symbol), h.score))
        .collect()
}

#[test]
fn a_renamed_copy_comes_first() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());

    let hits = ask(&engine, "shop/orders.py", 1, SIMILAR_STRUCTURE_WEIGHT);
    assert_eq!(hits[0].0, "copied/util.py:v0", "{hits:?}");
    // The copy's fingerprint is the original's: its score holds the whole structure weight.
    assert!(hits[0].1 >= SIMILAR_STRUCTURE_WEIGHT, "{hits:?}");

    // Without the second stage, scores are the first stage's alone; the copy's final score is
    // that score moved towards its structure similarity, 1.
    let first = ask(&engine, "shop/orders.py", 1, 0.0);
    let copy = first
        .iter()
        .find(|h| h.0 == "copied/util.py:v0")
        .expect("the first stage finds the copy too");
    let w = SIMILAR_STRUCTURE_WEIGHT;
    assert!(copy.1 < 1.0, "{first:?}");
    assert!(
        (hits[0].1 - ((1.0 - w) * copy.1 + w)).abs() < 1e-4,
        "{first:?} vs {hits:?}"
    );
    // A method inside a Java class: the fingerprint parses it in a class of its own.
    let java = ask(&engine, "java/Cart.java", 2, SIMILAR_STRUCTURE_WEIGHT);
    assert_eq!(java[0].0, "java/Cart.java:Cart.v0", "{java:?}");
}

#[test]
fn a_snippet_finds_the_code_it_was_copied_from() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    let snippet = ORIGINAL
        .replace("order_total", "compute")
        .replace("items", "rows")
        .replace("discount", "rate");
    let mut req = SimilarRequest::new(
        SimilarTarget::Snippet {
            code: snippet,
            language: "python".into(),
        },
        2,
    );
    req.kinds = KindFilter::Callables;
    let (origin, hits) = engine.similar(&req).expect("similar");
    assert!(origin.is_none());
    let top: Vec<&str> = hits.iter().map(|h| h.unit.path.as_str()).collect();
    // The original and its copy share one fingerprint; the decoy shares only words.
    assert_eq!(top.len(), 2);
    assert!(
        top.contains(&"shop/orders.py") && top.contains(&"copied/util.py"),
        "{top:?}"
    );
    // Both hold the whole structure weight: the snippet's fingerprint is theirs.
    assert!(
        hits.iter().all(|h| h.score >= SIMILAR_STRUCTURE_WEIGHT),
        "{hits:?}"
    );
}

#[test]
fn the_structure_weight_is_checked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    for w in [-0.1, 1.5, f32::NAN] {
        let mut req = SimilarRequest::new(
            SimilarTarget::Unit {
                repository: None,
                path: "shop/orders.py".into(),
                line: 1,
            },
            3,
        );
        req.structure_weight = w;
        let err = engine.similar(&req).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{w}: {err}");
        assert!(err.to_string().contains("structure weight"), "{err}");
    }
}

#[test]
fn a_cancelled_similar_stops() {
    let tmp = tempfile::tempdir().expect("tmp");
    let engine = engine_with_code(tmp.path());
    let req = SimilarRequest::new(
        SimilarTarget::Unit {
            repository: None,
            path: "shop/orders.py".into(),
            line: 1,
        },
        3,
    );
    let cancel = CancellationToken::new();
    assert!(engine.similar_until(&req, &cancel).is_ok());
    cancel.cancel();
    let err = engine.similar_until(&req, &cancel).expect_err("cancelled");
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
}
