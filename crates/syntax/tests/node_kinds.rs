//! The language registry and the embedded node-kind vocabularies.

use std::collections::HashSet;
use std::path::Path;

use gnn_coder_syntax::{Language, REGISTRY, grammar_node_kinds};

#[test]
fn all_languages_load() {
    let all = Language::all().expect("embedded language data is valid");
    let names: Vec<&str> = all.iter().map(|l| l.name()).collect();
    assert_eq!(
        names,
        [
            "python",
            "rust",
            "go",
            "java",
            "javascript",
            "typescript",
            "tsx",
            "ruby",
            "php",
            "c",
            "cpp"
        ]
    );
    assert_eq!(all.len(), REGISTRY.len());
}

#[test]
fn vocabulary_covers_the_grammar() {
    for lang in Language::all().unwrap() {
        let vocab: HashSet<&str> = lang.node_kinds().iter().map(String::as_str).collect();
        assert_eq!(
            vocab.len(),
            lang.node_kinds().len(),
            "{}: duplicate kinds",
            lang.name()
        );
        let missing: Vec<String> = grammar_node_kinds(lang.tree_sitter())
            .into_iter()
            .filter(|k| !vocab.contains(k.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{}: node-kinds.txt lacks {missing:?}; run `cargo run -p gnn-coder-syntax --example gen_node_kinds -- --append`",
            lang.name()
        );
        // Ids are 1-based line numbers; 0 is unknown.
        assert_eq!(lang.kind_id(&lang.node_kinds()[0]), 1);
        assert_eq!(lang.kind_id("no_such_kind"), 0);
        assert_eq!(lang.vocab_size(), lang.node_kinds().len() + 1);
    }
}

#[test]
#[ignore = "rewrites grammars/*/node-kinds.txt; run after a grammar upgrade"]
fn regenerate_node_kinds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../grammars");
    for lang in Language::all().unwrap() {
        let path = dir.join(lang.name()).join("node-kinds.txt");
        let mut lines: Vec<String> = lang.node_kinds().to_vec();
        for k in grammar_node_kinds(lang.tree_sitter()) {
            if !lines.contains(&k) {
                lines.push(k);
            }
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
}

#[test]
fn extensions_map_to_languages() {
    let cases = [
        ("a.py", "python"),
        ("a.rs", "rust"),
        ("a.go", "go"),
        ("A.java", "java"),
        ("a.js", "javascript"),
        ("a.mjs", "javascript"),
        ("a.cjs", "javascript"),
        ("a.jsx", "javascript"),
        ("a.ts", "typescript"),
        ("a.mts", "typescript"),
        ("a.cts", "typescript"),
        ("a.tsx", "tsx"),
        ("a.rb", "ruby"),
        ("a.php", "php"),
        ("a.c", "c"),
        ("a.h", "c"),
        ("a.cc", "cpp"),
        ("a.cpp", "cpp"),
        ("a.cxx", "cpp"),
        ("a.hpp", "cpp"),
        ("a.hh", "cpp"),
        ("a.hxx", "cpp"),
        ("dir.d/A.PY", "python"),
    ];
    for (path, lang) in cases {
        assert_eq!(
            Language::for_path(Path::new(path)).map(|l| l.name()),
            Some(lang),
            "{path}"
        );
    }
    for path in ["README.md", "Makefile", "a.txt", "noext", ".py"] {
        assert!(Language::for_path(Path::new(path)).is_none(), "{path}");
    }
    // Every extension belongs to exactly one language.
    let mut seen = HashSet::new();
    for lang in Language::all().unwrap() {
        for e in lang.extensions() {
            assert!(seen.insert(e.clone()), "extension {e} registered twice");
        }
    }
}
