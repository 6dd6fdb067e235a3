// Shared helpers (included with `mod common;` by several test binaries).
#![allow(dead_code)]

use gnn_coder_syntax::{CodeUnit, ExtractOptions, Language, ParsedFile, UnitKind, extract_file};

pub const SAMPLES: &[(&str, &str, &str)] = &[
    ("python", "sample.py", include_str!("../fixtures/sample.py")),
    ("rust", "sample.rs", include_str!("../fixtures/sample.rs")),
    ("go", "sample.go", include_str!("../fixtures/sample.go")),
    (
        "java",
        "Sample.java",
        include_str!("../fixtures/Sample.java"),
    ),
    (
        "javascript",
        "sample.js",
        include_str!("../fixtures/sample.js"),
    ),
    (
        "typescript",
        "sample.ts",
        include_str!("../fixtures/sample.ts"),
    ),
    ("tsx", "sample.tsx", include_str!("../fixtures/sample.tsx")),
    ("ruby", "sample.rb", include_str!("../fixtures/sample.rb")),
    ("php", "sample.php", include_str!("../fixtures/sample.php")),
    ("c", "sample.c", include_str!("../fixtures/sample.c")),
    ("cpp", "sample.cpp", include_str!("../fixtures/sample.cpp")),
];

pub fn parse(lang: &str, path: &str, src: &str) -> ParsedFile {
    parse_with(
        lang,
        path,
        src.as_bytes(),
        &ExtractOptions {
            graphs: true,
            max_nodes: 512,
        },
    )
}

pub fn parse_with(lang: &str, path: &str, src: &[u8], opts: &ExtractOptions) -> ParsedFile {
    let l = Language::by_name(lang).unwrap();
    extract_file(l, path, src, opts).unwrap()
}

pub fn sample(lang: &str) -> ParsedFile {
    let (_, path, src) = SAMPLES.iter().find(|s| s.0 == lang).unwrap();
    parse(lang, path, src)
}

pub fn symbols(p: &ParsedFile) -> Vec<&str> {
    p.units.iter().map(|u| u.symbol.as_str()).collect()
}

pub fn unit<'a>(p: &'a ParsedFile, symbol: &str) -> &'a CodeUnit {
    let mut found: Vec<_> = p.units.iter().filter(|u| u.symbol == symbol).collect();
    // An inherent impl shares its symbol with the type; prefer the type.
    if found.len() > 1 {
        found.retain(|u| u.kind != UnitKind::Impl);
    }
    assert_eq!(
        found.len(),
        1,
        "expected exactly one `{symbol}` in {:?}",
        symbols(p)
    );
    found[0]
}

/// Checks kind, line span (start, end), def line and doc of a unit, plus generic invariants.
#[track_caller]
pub fn check(
    p: &ParsedFile,
    symbol: &str,
    kind: UnitKind,
    lines: (usize, usize),
    def_line: usize,
    doc: Option<&str>,
) {
    let u = unit(p, symbol);
    assert_eq!(u.kind, kind, "kind of {symbol}");
    assert_eq!((u.start_line, u.end_line), lines, "lines of {symbol}");
    assert_eq!(u.def_line, def_line, "def line of {symbol}");
    assert_eq!(u.doc.as_deref(), doc, "doc of {symbol}");
    assert!(u.start_line <= u.def_line && u.def_line <= u.end_line);
    if kind != UnitKind::Impl {
        assert!(
            symbol.ends_with(&u.name),
            "{symbol} ends with name {}",
            u.name
        );
    }
}

/// The text `u` should hold (see `CodeUnit::code`): its span; in a container, every container
/// nested in it (the outermost ones) replaced by its definition line and the elision mark.
pub fn expected_code(p: &ParsedFile, u: &CodeUnit, src: &str) -> String {
    let span = &src[u.start_byte..u.end_byte];
    if u.kind.is_callable() {
        return span.to_string();
    }
    let mut nested: Vec<&CodeUnit> = p
        .units
        .iter()
        .filter(|n| {
            !n.kind.is_callable()
                && !std::ptr::eq(*n, u)
                && u.start_byte <= n.start_byte
                && n.end_byte <= u.end_byte
                && (n.start_byte, n.end_byte) != (u.start_byte, u.end_byte)
        })
        .collect();
    nested.sort_by_key(|n| n.start_byte);
    let mut out = String::new();
    let mut pos = u.start_byte;
    for n in nested {
        if n.start_byte < pos {
            continue; // inside one already elided
        }
        out.push_str(&src[pos..n.start_byte]);
        let line_start = src[..n.start_byte].rfind('\n').map_or(0, |i| i + 1);
        let def_start = src
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .nth(n.def_line.saturating_sub(2))
            .filter(|_| n.def_line > 1)
            .unwrap_or(0)
            .max(line_start)
            .max(n.start_byte);
        let def_end = src[def_start..]
            .find('\n')
            .map_or(src.len(), |i| def_start + i)
            .min(n.end_byte)
            .min(def_start + gnn_coder_syntax::ELIDED_HEADER_MAX);
        out.push_str(&src[def_start..def_end]);
        out.push_str(gnn_coder_syntax::ELISION_MARK);
        pos = n.end_byte;
    }
    out.push_str(&src[pos..u.end_byte]);
    out
}
