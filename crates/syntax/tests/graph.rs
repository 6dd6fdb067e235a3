//! AST graph invariants, node cap, and deep nesting without stack overflow.

mod common;

use common::*;
use gnn_coder_syntax::{AstGraph, ExtractOptions, Language};

/// Checks every structural invariant of a graph; returns the number of kept nodes.
#[allow(clippy::needless_range_loop)]
fn check_graph(g: &AstGraph, lang: &Language, unit_len: usize, max_nodes: usize, what: &str) {
    let n = g.len();
    assert!(
        n >= 1 && n <= max_nodes,
        "{what}: {n} nodes, cap {max_nodes}"
    );
    assert_eq!(g.spans.len(), n);
    assert_eq!(g.child_counts.len(), n);
    let vocab = lang.node_kinds().len() as u16;
    let mut parent = vec![None; n];
    let mut kept_children = vec![0u32; n];
    for &(p, c) in &g.edges {
        let (p, c) = (p as usize, c as usize);
        assert!(p < n && c < n, "{what}: edge out of range");
        // Breadth-first numbering: parents come before children; node 0 is the root.
        assert!(p < c, "{what}: edge {p}->{c} not breadth-first");
        assert!(
            parent[c].replace(p).is_none(),
            "{what}: node {c} has two parents"
        );
        kept_children[p] += 1;
        // Children lie inside their parent.
        let (ps, pe) = g.spans[p];
        let (cs, ce) = g.spans[c];
        assert!(ps <= cs && ce <= pe, "{what}: child span outside parent");
    }
    assert_eq!(g.edges.len(), n - 1, "{what}: a tree has n-1 edges");
    assert!(parent[0].is_none());
    assert!(
        parent[1..].iter().all(Option::is_some),
        "{what}: unreachable node"
    );
    for i in 0..n {
        // No single-child chains remain (leaves have 0 children).
        assert_ne!(
            g.child_counts[i], 1,
            "{what}: node {i} has exactly one child"
        );
        assert!(kept_children[i] <= g.child_counts[i]);
        if n < max_nodes {
            assert_eq!(
                kept_children[i], g.child_counts[i],
                "{what}: uncapped graph lost children"
            );
        }
        assert!(
            g.kinds[i] >= 1 && g.kinds[i] <= vocab,
            "{what}: unknown kind id {}",
            g.kinds[i]
        );
        let (s, e) = g.spans[i];
        assert!(
            s <= e && e as usize <= unit_len,
            "{what}: span {s}..{e} outside unit of {unit_len} bytes"
        );
    }
}

#[test]
fn invariants_in_every_language() {
    for (lang_name, path, src) in SAMPLES {
        let lang = Language::by_name(lang_name).unwrap();
        for cap in [512, 7, 2, 1] {
            let p = parse_with(
                lang_name,
                path,
                src.as_bytes(),
                &ExtractOptions {
                    graphs: true,
                    max_nodes: cap,
                },
            );
            assert_eq!(p.graphs.len(), p.units.len());
            for (u, g) in p.units.iter().zip(&p.graphs) {
                // Spans are positions in the unit's text (a container's text elides nested
                // containers, so it can be shorter than its span).
                check_graph(
                    g,
                    lang,
                    u.code.len(),
                    cap,
                    &format!("{lang_name} {} cap {cap}", u.symbol),
                );
                // The root is the unit's outermost node: same end as the unit.
                assert_eq!(
                    g.spans[0].1 as usize,
                    u.code.len(),
                    "{lang_name} {}",
                    u.symbol
                );
            }
        }
    }
}

#[test]
fn no_graphs_unless_asked() {
    let (_, path, src) = SAMPLES[0];
    let p = parse_with("python", path, src.as_bytes(), &ExtractOptions::default());
    assert!(p.graphs.is_empty());
    assert!(!p.units.is_empty());
}

#[test]
fn collapse_keeps_top_kind() {
    // `block -> return_statement -> identifier` is a single-child chain: it becomes one leaf that
    // keeps the top node's kind (`block`) and span. `parameters -> identifier` likewise.
    let lang = Language::by_name("python").unwrap();
    let src = "def f(x):\n    return x\n";
    let p = parse("python", "c.py", src);
    let g = &p.graphs[0];
    let names: Vec<&str> = g
        .kinds
        .iter()
        .map(|&k| lang.node_kinds()[k as usize - 1].as_str())
        .collect();
    assert_eq!(
        names,
        ["function_definition", "identifier", "parameters", "block"]
    );
    assert_eq!(g.child_counts, [3, 0, 0, 0]);
    assert_eq!(g.edges, [(0, 1), (0, 2), (0, 3)]);
    assert_eq!(
        &src[g.spans[3].0 as usize..g.spans[3].1 as usize],
        "return x"
    );
    assert_eq!(&src[g.spans[2].0 as usize..g.spans[2].1 as usize], "(x)");
    assert_eq!(lang.kind_id("block"), g.kinds[3]);
}

#[test]
fn cap_is_breadth_first() {
    let body: String = (0..300)
        .map(|i| format!("    a{i} = b{i} + c{i}\n"))
        .collect();
    let src = format!("def big():\n{body}");
    let p = parse_with(
        "python",
        "b.py",
        src.as_bytes(),
        &ExtractOptions {
            graphs: true,
            max_nodes: 100,
        },
    );
    let g = &p.graphs[0];
    assert_eq!(g.len(), 100);
    // Root: function_definition with name, parameters, block -> block has 300 children (counted
    // before the cap), most of them cut.
    let block = g
        .child_counts
        .iter()
        .position(|&c| c == 300)
        .expect("block child count before the cap");
    assert!(block < 4);
    let lang = Language::by_name("python").unwrap();
    check_graph(g, lang, src.len(), 100, "big");
}

fn deep_python(depth: usize) -> String {
    format!(
        "def deep():\n    return {}1{}\n",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

#[test]
fn deep_nesting_does_not_overflow() {
    // Run on a small stack to make sure nothing of ours recurses.
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            for (lang, path, src) in [
                ("python", "deep.py", deep_python(10_000)),
                (
                    "python",
                    "list.py",
                    format!("x = {}{}\n", "[".repeat(10_000), "]".repeat(10_000)),
                ),
                (
                    "javascript",
                    "deep.js",
                    format!(
                        "function deep() {{ return {}1{}; }}\n",
                        "-(".repeat(10_000),
                        ")".repeat(10_000)
                    ),
                ),
                (
                    "rust",
                    "deep.rs",
                    format!(
                        "fn deep() -> i32 {{ {}1{} }}\n",
                        "(".repeat(10_000),
                        ")".repeat(10_000)
                    ),
                ),
                (
                    "c",
                    "deep.c",
                    format!(
                        "int deep(void) {{ return {}1{}; }}\n",
                        "(".repeat(10_000),
                        ")".repeat(10_000)
                    ),
                ),
            ] {
                let p = parse_with(
                    lang,
                    path,
                    src.as_bytes(),
                    &ExtractOptions {
                        graphs: true,
                        max_nodes: 512,
                    },
                );
                for g in &p.graphs {
                    assert!(g.len() <= 512);
                    assert!(!g.is_empty());
                }
                if lang != "python" || path == "deep.py" {
                    assert_eq!(p.units.len(), 1, "{lang}");
                }
            }
        })
        .unwrap();
    handle.join().expect("deep nesting panicked or overflowed");
}

#[test]
fn deep_but_branching_tree_is_capped() {
    // 10,000 nested binary expressions (two children each): no chain collapses, the cap applies.
    let expr = format!("{}1{}", "(1 + ".repeat(10_000), ")".repeat(10_000));
    let src = format!("def f():\n    return {expr}\n");
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let p = parse_with(
                "python",
                "d.py",
                src.as_bytes(),
                &ExtractOptions {
                    graphs: true,
                    max_nodes: 300,
                },
            );
            assert_eq!(p.graphs[0].len(), 300);
            let lang = Language::by_name("python").unwrap();
            check_graph(
                &p.graphs[0],
                lang,
                p.units[0].end_byte - p.units[0].start_byte,
                300,
                "deep binary",
            );
        })
        .unwrap();
    handle.join().expect("deep nesting panicked or overflowed");
}
