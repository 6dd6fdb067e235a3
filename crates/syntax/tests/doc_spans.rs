//! `CodeUnit::doc_spans`: where each unit's documentation was read from.

use gnn_coder_syntax::{ExtractOptions, Language, extract_file};

fn units(lang: &str, src: &str) -> Vec<gnn_coder_syntax::CodeUnit> {
    let lang = Language::by_name(lang).unwrap();
    extract_file(lang, "x", src.as_bytes(), &ExtractOptions::default())
        .unwrap()
        .units
}

fn texts<'a>(src: &'a str, spans: &[(usize, usize)]) -> Vec<&'a str> {
    spans.iter().map(|&(s, e)| src[s..e].trim_end()).collect()
}

#[test]
fn python_docstring_statement() {
    let src = "class A:\n    '''Class doc.'''\n    def f(self):\n        \"\"\"Doc.\n\n        More.\n        \"\"\"\n        return 1\n\ndef g():\n    return 2\n";
    let u = units("python", src);
    assert_eq!(texts(src, &u[0].doc_spans), ["'''Class doc.'''"]);
    assert_eq!(
        texts(src, &u[1].doc_spans),
        ["\"\"\"Doc.\n\n        More.\n        \"\"\""]
    );
    assert!(u[2].doc_spans.is_empty() && u[2].doc.is_none());
    // Inside the unit's span, so removable from `code`.
    let (s, e) = u[1].doc_spans[0];
    assert!(u[1].start_byte < s && e <= u[1].end_byte);
}

#[test]
fn rust_doc_comment_nodes() {
    let src = "/// One.\n/// Two.\n#[inline]\nfn f() {}\n\n#[cfg(x)]\n/// Inside.\n#[inline]\nfn g() {}\n\n// plain\nfn h() {}\n";
    let u = units("rust", src);
    assert_eq!(texts(src, &u[0].doc_spans), ["/// One.", "/// Two."]);
    assert!(u[0].doc_spans.iter().all(|&(_, e)| e <= u[0].start_byte));
    assert_eq!(texts(src, &u[1].doc_spans), ["/// Inside."]);
    let (s, _) = u[1].doc_spans[0];
    assert!(
        u[1].start_byte < s,
        "the doc after an attribute is inside the span"
    );
    assert!(u[2].doc_spans.is_empty());
    // Serialised only when present.
    let json = serde_json::to_string(&u[2]).unwrap();
    assert!(!json.contains("doc_spans"));
    let back: gnn_coder_syntax::CodeUnit = serde_json::from_str(&json).unwrap();
    assert_eq!(back, u[2]);
}
