//! Fuzz target: unit extraction over arbitrary bytes in every registered language.
//!
//! Runs on stable Rust under `cargo test` (proptest). Each case is either raw bytes or a real
//! fixture of the language mutated by random splices (inserted bytes, deleted and duplicated
//! ranges), which reaches far deeper into the grammars than noise alone. The budget is
//! `GNN_CODER_FUZZ_CASES` cases per target (default 256, what CI runs); run longer locally with
//! e.g. `GNN_CODER_FUZZ_CASES=20000 cargo test -p gnn-coder-syntax --test fuzz --release`.
//! A failure prints the shrunk input; it becomes a regression test beside the others.

use std::path::Path;

use gnn_coder_syntax::{ExtractOptions, Language, ParsedFile, extract_file};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("GNN_CODER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// The polyglot fixture's files, with their language.
fn seeds() -> Vec<(&'static Language, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/polyglot");
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir)
            .expect("fixture directory")
            .flatten()
        {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if let Some(lang) = Language::for_path(&p) {
                out.push((lang, std::fs::read(&p).expect("fixture file")));
            }
        }
    }
    out.sort_by(|a, b| (a.0.name(), &a.1).cmp(&(b.0.name(), &b.1)));
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), 1usize..64).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 1usize..256).prop_map(|(a, n)| Edit::Duplicate(a, n)),
    ]
}

fn apply(mut src: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let at = |a: usize, len: usize| if len == 0 { 0 } else { a % (len + 1) };
        match e {
            Edit::Insert(a, bytes) => {
                let i = at(*a, src.len());
                src.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(a, n) => {
                let i = at(*a, src.len());
                let j = (i + n).min(src.len());
                src.drain(i..j);
            }
            Edit::Duplicate(a, n) => {
                let i = at(*a, src.len());
                let j = (i + n).min(src.len());
                let copy = src[i..j].to_vec();
                src.splice(j..j, copy);
            }
        }
    }
    src
}

/// What every extraction must satisfy, whatever the input.
fn check(file: &ParsedFile, source: &[u8], opts: &ExtractOptions) {
    let lines = source.iter().filter(|&&b| b == b'\n').count() + 1;
    for u in &file.units {
        assert!(
            u.start_byte <= u.end_byte && u.end_byte <= source.len(),
            "{u:?}"
        );
        assert!(u.start_line >= 1 && u.start_line <= u.end_line, "{u:?}");
        assert!(
            u.end_line <= lines + source.iter().filter(|&&b| b == b'\r').count(),
            "{u:?}"
        );
        assert!(
            u.code.len() <= source.len() * 2 + 64,
            "unit text larger than its file: {u:?}"
        );
        for &(s, e) in &u.doc_spans {
            assert!(s <= e, "{u:?}");
        }
    }
    if opts.graphs {
        assert_eq!(file.graphs.len(), file.units.len());
        for (g, u) in file.graphs.iter().zip(&file.units) {
            let n = g.len();
            assert!(n <= opts.max_nodes);
            assert_eq!(g.spans.len(), n);
            assert_eq!(g.child_counts.len(), n);
            // Spans are offsets into the unit's text (a container's text elides the
            // containers nested in it, so it is not always its byte range of the file).
            let width = u.code.len() as u32;
            for &(s, e) in &g.spans {
                assert!(
                    s <= e && e <= width,
                    "span {s}..{e} outside the unit's {width} bytes of text"
                );
            }
            for &(a, b) in &g.edges {
                assert!((a as usize) < n && (b as usize) < n && a != b);
            }
        }
    }
}

fn extract_checked(lang: &Language, source: &[u8]) {
    let opts = ExtractOptions {
        graphs: true,
        ..ExtractOptions::default()
    };
    // An error is an acceptable answer to garbage; a panic or a broken invariant is not.
    if let Ok(file) = extract_file(lang, "fuzz/input", source, &opts) {
        check(&file, source, &opts);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_real_code_in_every_language(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 0..12),
    ) {
        let seeds = seeds();
        let (lang, src) = &seeds[pick.index(seeds.len())];
        extract_checked(lang, &apply(src.clone(), &edits));
    }

    #[test]
    fn arbitrary_bytes_in_every_language(
        pick in any::<prop::sample::Index>(),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let all = Language::all().expect("languages");
        extract_checked(all[pick.index(all.len())], &bytes);
    }

    #[test]
    fn token_soup_in_every_language(
        pick in any::<prop::sample::Index>(),
        words in prop::collection::vec(prop::sample::select(SOUP), 0..400),
    ) {
        let all = Language::all().expect("languages");
        extract_checked(all[pick.index(all.len())], words.concat().as_bytes());
    }
}

/// Keywords and brackets of every language: random sequences build deep, odd trees.
const SOUP: &[&str] = &[
    "fn ",
    "def ",
    "class ",
    "struct ",
    "impl ",
    "mod ",
    "trait ",
    "func ",
    "function ",
    "interface ",
    "namespace ",
    "module ",
    "package ",
    "enum ",
    "public ",
    "static ",
    "async ",
    "=> ",
    "-> ",
    "end\n",
    "do\n",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "<",
    ">",
    ":",
    ";",
    ",",
    ".",
    "::",
    "\n",
    "    ",
    "\t",
    "x",
    "Foo",
    "\"s\"",
    "'c'",
    "/*",
    "*/",
    "//",
    "#",
    "\"\"\"",
    "@decorator\n",
    "#[test]\n",
    "/** doc */",
    "<?php ",
    "template<typename T> ",
    "\r",
    "\r\n",
];
