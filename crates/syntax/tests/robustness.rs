//! Bad inputs: empty, invalid UTF-8, syntax errors, binary-looking bytes, unknown language.

mod common;

use common::*;
use gnn_coder_syntax::{ExtractOptions, Language, SyntaxError, UnitKind};

#[test]
fn empty_and_whitespace_files() {
    for (lang, _, _) in SAMPLES {
        for src in ["", "\n\n", "   "] {
            let p = parse(lang, "empty", src);
            assert!(p.units.is_empty(), "{lang}");
            assert!(p.graphs.is_empty());
            assert_eq!(p.bytes, src.len());
        }
    }
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let mut src =
        b"def caf\xc3\xa9():\n    \"\"\"Doc \xff\xfe here.\"\"\"\n    return '\xff'\n".to_vec();
    src.extend_from_slice(b"\ndef ok():\n    pass\n");
    let p = parse_with(
        "python",
        "bad.py",
        &src,
        &ExtractOptions {
            graphs: true,
            max_nodes: 64,
        },
    );
    assert_eq!(symbols(&p), ["caf\u{e9}", "ok"]);
    let u = &p.units[0];
    assert!(u.code.contains('\u{fffd}'));
    assert_eq!(u.doc.as_deref(), Some("Doc \u{fffd}\u{fffd} here."));
    // Broken bytes in every language: no panic.
    for (lang, _, sample) in SAMPLES {
        let mut bytes = sample.as_bytes().to_vec();
        for i in (0..bytes.len()).step_by(37) {
            bytes[i] = 0xff;
        }
        let _ = parse_with(
            lang,
            "x",
            &bytes,
            &ExtractOptions {
                graphs: true,
                max_nodes: 128,
            },
        );
    }
}

#[test]
fn syntax_errors_still_yield_units() {
    let src = "def good():\n    return 1\n\ndef broken(:\n    return\n\nclass K:\n    def m(self):\n        x = = 2\n\n    def n(self):\n        pass\n";
    let p = parse("python", "err.py", src);
    assert!(p.has_syntax_errors);
    let syms = symbols(&p);
    assert!(syms.contains(&"good"), "{syms:?}");
    assert!(syms.contains(&"K"), "{syms:?}");
    assert!(syms.contains(&"K.n"), "{syms:?}");
    let rs = "fn ok() -> u32 { 1 }\nfn bad( { let x = ; }\nstruct S { a: u32 }\nimpl S { fn m(&self) {} }\n";
    let p = parse("rust", "err.rs", rs);
    assert!(p.has_syntax_errors);
    assert!(
        symbols(&p).contains(&"ok") && symbols(&p).contains(&"S::m"),
        "{:?}",
        symbols(&p)
    );
    let java = "class A { void ok() {} void bad( { int x = ; } }\nclass B { void fine() { } }";
    let p = parse("java", "A.java", java);
    assert!(p.has_syntax_errors);
    assert!(
        symbols(&p).contains(&"A.ok") && symbols(&p).contains(&"B.fine"),
        "{:?}",
        symbols(&p)
    );
    // ERROR nodes have a kind id of their own.
    let lang = Language::by_name("python").unwrap();
    assert!(lang.kind_id("ERROR") > 0);
}

#[test]
fn truncated_files_in_every_language() {
    for (lang, path, src) in SAMPLES {
        for cut in [src.len() / 3, src.len() / 2, src.len() - 3] {
            // Cut on a char boundary.
            let cut = (0..=cut).rev().find(|&i| src.is_char_boundary(i)).unwrap();
            let p = parse(lang, path, &src[..cut]);
            for u in &p.units {
                assert!(u.start_line <= u.def_line && u.def_line <= u.end_line);
                assert!(u.end_byte <= cut);
            }
        }
    }
}

#[test]
fn nul_bytes_and_garbage() {
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (lang, _, _) in SAMPLES {
        let p = parse_with(
            lang,
            "garbage",
            &garbage,
            &ExtractOptions {
                graphs: true,
                max_nodes: 512,
            },
        );
        assert!(p.graphs.iter().all(|g| g.len() <= 512));
    }
}

#[test]
fn unknown_language_is_a_typed_error() {
    assert!(
        matches!(Language::by_name("cobol"), Err(SyntaxError::UnknownLanguage(n)) if n == "cobol")
    );
}

#[test]
fn kinds_round_trip() {
    for k in [UnitKind::Function, UnitKind::Impl, UnitKind::Module] {
        assert!(!k.as_str().is_empty());
    }
}
