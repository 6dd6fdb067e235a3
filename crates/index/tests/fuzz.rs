//! Fuzz targets of the index's parsers (see `crates/syntax/tests/fuzz.rs` for how they run and
//! how to run them longer): the query tokenizer and the identifier splitter, path globs, the
//! manifest, and lexical searches with arbitrary text and globs against a real small store.

use std::fs;
use std::sync::OnceLock;

use gnn_coder_index::{EmbeddedStore, MANIFEST_FILE, Manifest, tokenizer};
use gnn_coder_store::words::code_tokens;
use gnn_coder_store::{
    EmbeddingInfo, FieldBoosts, FileEntry, FileWrite, Filters, LexicalQuery, PathGlobs, RepoInfo,
    Store, UnitKey, UnitRecord, UnitWrite,
};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("GNN_CODER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// Text that looks like code and queries: identifiers in every case style, digits, unicode,
/// punctuation.
fn texty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<char>().prop_map(String::from),
        prop::sample::select(vec![
            "parseHTTPHeader",
            "snake_case_name",
            "XMLHttpRequest2",
            "__init__",
            "ÄÖÜß",
            "İı",
            "日本語",
            "ǅ",
            "a1b2",
            "::",
            "->",
            " ",
            "\n",
            "_",
            "123",
            "x",
            "ﬁ",
            "\u{301}",
        ])
        .prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|v| v.concat())
}

/// A committed store of a few units (made once).
fn store() -> &'static (tempfile::TempDir, EmbeddedStore) {
    static STORE: OnceLock<(tempfile::TempDir, EmbeddedStore)> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let info = EmbeddingInfo {
            model: "fuzz".into(),
            dim: 4,
            trained: false,
        };
        let store = EmbeddedStore::open_or_create(dir.path(), Some(info)).expect("store");
        let mut w = store.writer().expect("writer");
        let repo = RepoInfo {
            name: "r".into(),
            root: "/r".into(),
            ..RepoInfo::default()
        };
        w.put_repository(&repo).expect("repository");
        let units = [
            "parse_header",
            "readConfigFile",
            "HTTPServer",
            "日本語_name",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| UnitWrite {
            record: UnitRecord {
                path: format!("src/m{i}.py"),
                language: "python".into(),
                kind: "function".into(),
                name: (*name).into(),
                symbol: (*name).into(),
                start_line: 1,
                end_line: 2,
                def_line: 1,
                start_byte: 0,
                end_byte: 20,
                doc: Some("does a thing".into()),
                code: format!("def {name}(x):\n    return x\n"),
            },
            key: UnitKey([i as u8; 16]),
            vector: Some(vec![0.5; 4]),
        })
        .collect();
        let entry = FileEntry {
            path: "src/m.py".into(),
            hash: "h".into(),
            units: 4,
            bytes: 80,
        };
        w.upsert_files("r", vec![FileWrite { file: entry, units }])
            .expect("write");
        w.commit(&Default::default()).expect("commit");
        (dir, store)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every token's range lies on character boundaries of the input, and the splitter and the
    /// analyzer agree on where words are.
    #[test]
    fn tokenizers_give_ranges_inside_the_text(text in texty()) {
        for t in code_tokens(&text) {
            prop_assert!(t.from < t.to && t.to <= text.len());
            prop_assert!(text.is_char_boundary(t.from) && text.is_char_boundary(t.to));
        }
        for t in tokenizer::analyze_spans(&text) {
            prop_assert!(t.from <= t.to && t.to <= text.len());
            prop_assert!(text.is_char_boundary(t.from) && text.is_char_boundary(t.to));
        }
        let kept = tokenizer::analyze_spans_where(&text, |_| true);
        prop_assert_eq!(kept, tokenizer::analyze_spans(&text));
    }

    /// A glob is compiled or refused, never a panic; a compiled one matches any path.
    #[test]
    fn globs_compile_or_refuse(
        patterns in prop::collection::vec(texty(), 0..4),
        path in texty(),
    ) {
        if let Ok(globs) = PathGlobs::new(patterns) {
            let _ = globs.is_match(&path);
        }
    }

    /// Lexical search with arbitrary text and filters: results or an error, nothing else.
    #[test]
    fn lexical_queries_answer_or_refuse(
        text in texty(),
        globs in prop::collection::vec(texty(), 0..2),
        language in texty(),
        limit in 0usize..50,
    ) {
        let (_, store) = store();
        let reader = store.reader().expect("reader");
        let path_globs = match PathGlobs::new(globs) {
            Ok(g) => g,
            Err(_) => return Ok(()),
        };
        let filters = Filters {
            languages: if language.is_empty() { vec![] } else { vec![language] },
            path_globs,
            ..Filters::default()
        };
        let query = LexicalQuery { text, boosts: FieldBoosts::default(), filters, limit };
        if let Ok(hits) = reader.lexical(&query) {
            prop_assert!(hits.len() <= limit);
            prop_assert!(hits.iter().all(|(_, s)| s.is_finite()));
        }
    }

    /// The manifest parser refuses garbage and damaged manifests with an error.
    #[test]
    fn manifests_parse_or_refuse(
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        noise in prop::collection::vec(any::<u8>(), 0..256),
        mode in 0u8..3,
    ) {
        let (dir, _) = store();
        let good = fs::read(dir.path().join(MANIFEST_FILE)).expect("manifest");
        let bad = match mode {
            0 => good[..cut.index(good.len())].to_vec(),
            1 => {
                let mut b = good.clone();
                b[flip.index(good.len())] = byte;
                b
            }
            _ => noise,
        };
        let probe = tempfile::tempdir().expect("temp dir");
        fs::write(probe.path().join(MANIFEST_FILE), &bad).expect("write");
        let _ = Manifest::load(probe.path());
    }
}
