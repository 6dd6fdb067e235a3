//! Unit extraction in every supported language: symbols, kinds, spans, doc comments.

mod common;

use common::*;
use gnn_coder_syntax::UnitKind::*;

#[test]
fn python() {
    let p = sample("python");
    assert_eq!(
        symbols(&p),
        [
            "top",
            "top.inner",
            "Outer",
            "Outer.method",
            "Outer.Inner",
            "Outer.Inner.m",
            "Outer.am"
        ]
    );
    check(
        &p,
        "top",
        Function,
        (3, 10),
        3,
        Some("Top-level function.\n\nMore text here."),
    );
    // Nested functions are functions, qualified by their enclosing function.
    check(&p, "top.inner", Function, (8, 9), 8, None);
    check(&p, "Outer", Class, (13, 29), 13, Some("Outer class doc."));
    // Decorators belong to the span; the def line is the `def` line.
    check(
        &p,
        "Outer.method",
        Method,
        (16, 20),
        18,
        Some("Method doc."),
    );
    check(&p, "Outer.Inner.m", Method, (23, 24), 23, None);
    // A comment before the docstring does not hide it.
    check(
        &p,
        "Outer.am",
        Method,
        (26, 29),
        26,
        Some("Doc after comment."),
    );
    let m = unit(&p, "Outer.method");
    assert!(
        m.code
            .starts_with("@staticmethod\n    @functools.cache\n    def method"),
        "{}",
        m.code
    );
    assert!(m.code.ends_with("return a"));
    assert_eq!(m.language, "python");
    assert_eq!(m.path, "sample.py");
}

#[test]
fn python_code_is_the_exact_span() {
    let src = include_str!("fixtures/sample.py");
    let p = sample("python");
    for u in &p.units {
        assert_eq!(u.code, expected_code(&p, u, src));
        if u.kind.is_callable() {
            assert_eq!(u.code, &src[u.start_byte..u.end_byte]);
        }
        let first_line = src.lines().nth(u.start_line - 1).unwrap();
        assert!(u.code.starts_with(first_line.trim_start()), "{}", u.symbol);
    }
}

#[test]
fn rust() {
    let p = sample("rust");
    // Attributes before the item belong to the span; `//!` inner docs do not document it.
    check(
        &p,
        "add_one",
        Function,
        (6, 10),
        8,
        Some("Adds one.\n\nMore."),
    );
    // A plain `//` comment is not documentation.
    check(&p, "Point", Struct, (13, 15), 13, None);
    let impls: Vec<_> = p
        .units
        .iter()
        .filter(|u| u.kind == Impl)
        .map(|u| u.symbol.as_str())
        .collect();
    assert_eq!(
        impls,
        ["Point", "<Point as std::fmt::Display>", "inner::Point"]
    );
    check(&p, "Point::new", Method, (19, 22), 19, Some("Block doc."));
    check(&p, "Point::new::helper", Function, (20, 20), 20, None);
    // `impl Trait for &'a mut Point<T>` -> `Point::fmt`.
    check(&p, "Point::fmt", Method, (26, 28), 26, None);
    check(&p, "Shape", Trait, (31, 35), 31, None);
    // Trait methods with and without a body.
    check(&p, "Shape::area", Method, (33, 33), 33, Some("Area."));
    check(&p, "Shape::name", Method, (34, 34), 34, None);
    check(&p, "E", Enum, (37, 37), 37, None);
    check(&p, "inner", Module, (39, 46), 39, None);
    check(&p, "inner::deeper::f", Function, (41, 41), 41, None);
    check(&p, "inner::Point::g", Method, (44, 44), 44, None);
    // `mod file_mod;` is not a unit.
    assert!(!symbols(&p).contains(&"file_mod"));
    assert_eq!(
        p.units
            .iter()
            .find(|u| u.symbol == "<Point as std::fmt::Display>")
            .unwrap()
            .name,
        "Point"
    );
}

#[test]
fn go() {
    let p = sample("go");
    assert_eq!(
        symbols(&p),
        ["Stack", "A", "B", "Stack.Push", "Stack.Len", "main"]
    );
    check(
        &p,
        "Stack",
        Struct,
        (5, 7),
        5,
        Some("Stack is a stack.\nIt stacks."),
    );
    // Specs of a grouped `type ( ... )` are units of their own.
    check(&p, "A", Struct, (10, 10), 10, None);
    check(&p, "B", Interface, (12, 12), 12, Some("B doc"));
    // Pointer and generic receivers are normalised.
    check(&p, "Stack.Push", Method, (16, 18), 16, Some("Push pushes."));
    check(&p, "Stack.Len", Method, (20, 20), 20, None);
    check(&p, "main", Function, (23, 26), 23, Some("main is main."));
}

#[test]
fn java() {
    let p = sample("java");
    // Annotations (inside `modifiers`) are part of the span.
    check(&p, "A", Class, (6, 26), 7, Some("A class."));
    check(&p, "A.A", Method, (9, 9), 9, Some("Ctor."));
    check(&p, "A.map", Method, (12, 15), 13, Some("line doc"));
    check(&p, "A.Inner", Class, (17, 19), 17, None);
    check(&p, "A.Inner.run", Method, (18, 18), 18, None);
    // A method of an anonymous class inside `run`.
    check(&p, "A.Inner.run.run", Method, (18, 18), 18, None);
    check(&p, "A.I", Interface, (21, 21), 21, None);
    check(&p, "A.I.m", Method, (21, 21), 21, None);
    check(&p, "A.Color", Enum, (23, 23), 23, None);
    check(&p, "A.Color.code", Method, (23, 23), 23, None);
    check(&p, "A.R", Class, (25, 25), 25, None);
}

#[test]
fn javascript() {
    let p = sample("javascript");
    check(
        &p,
        "greet",
        Function,
        (7, 10),
        7,
        Some("Greets.\n@param {string} name"),
    );
    check(&p, "greet.helper", Function, (8, 8), 8, None);
    // `export default` belongs to the span.
    check(&p, "Widget", Class, (12, 18), 12, None);
    assert!(
        unit(&p, "Widget")
            .code
            .starts_with("export default class Widget")
    );
    check(&p, "Widget.render", Method, (14, 14), 14, Some("Renders."));
    check(&p, "Widget.create", Method, (15, 15), 15, None);
    check(&p, "Widget.#secret", Method, (16, 16), 16, None);
    check(&p, "Widget.onClick", Method, (17, 17), 17, None);
    check(&p, "arrow", Function, (20, 20), 20, None);
    check(&p, "old", Function, (21, 21), 21, None);
    check(&p, "gen", Function, (22, 22), 22, None);
    check(&p, "counter", Function, (24, 24), 24, None);
    check(&p, "Widget.legacy", Method, (26, 26), 26, None);
    // Object literal methods are functions (no class around them).
    check(&p, "m", Function, (27, 27), 27, None);
}

#[test]
fn typescript() {
    let p = sample("typescript");
    check(&p, "Shape", Interface, (2, 5), 2, Some("A shape."));
    check(&p, "Shape.area", Method, (3, 3), 3, None);
    check(&p, "Base", Class, (7, 14), 7, None);
    check(&p, "Base.area", Method, (8, 8), 8, None);
    // Decorators belong to the span.
    check(&p, "Base.describe", Method, (9, 13), 11, None);
    check(&p, "Geometry", Module, (16, 18), 16, None);
    check(&p, "Geometry.dist", Function, (17, 17), 17, None);
    check(&p, "Dir", Enum, (20, 20), 20, None);
    check(&p, "handler", Function, (22, 22), 22, None);
    assert!(unit(&p, "handler").code.starts_with("export const handler"));
    // Type aliases and ambient module declarations are not units; nor are bodiless overloads.
    assert!(
        !symbols(&p)
            .iter()
            .any(|s| s.contains("Alias") || s.contains("bar")),
        "{:?}",
        symbols(&p)
    );
}

#[test]
fn tsx() {
    let p = sample("tsx");
    assert_eq!(symbols(&p), ["Button", "Card", "Page", "Page.render"]);
    check(&p, "Button", Function, (2, 4), 2, Some("Button component."));
    check(&p, "Card", Function, (6, 6), 6, None);
    check(&p, "Page.render", Method, (9, 9), 9, None);
    assert!(!p.has_syntax_errors);
}

#[test]
fn ruby() {
    let p = sample("ruby");
    check(&p, "Util", Module, (2, 23), 2, Some("Utilities."));
    // Comments before the first statement of a body still document it.
    check(
        &p,
        "Util::Parser",
        Class,
        (5, 20),
        5,
        Some("A parser.\nParses things."),
    );
    check(&p, "Util::Parser#initialize", Method, (6, 8), 6, None);
    check(
        &p,
        "Util::Parser#parse",
        Method,
        (11, 13),
        11,
        Some("Parses."),
    );
    // Singleton methods use `.`, both `def self.x` and `class << self`.
    check(&p, "Util::Parser.build", Method, (15, 15), 15, None);
    check(&p, "Util::Parser.cached", Method, (18, 18), 18, None);
    check(&p, "top_level", Function, (25, 27), 25, None);
}

#[test]
fn php() {
    let p = sample("php");
    // Attributes are inside the declaration; the doc block precedes them.
    check(&p, "User", Class, (7, 17), 8, Some("A user."));
    check(
        &p,
        "User::getName",
        Method,
        (11, 14),
        11,
        Some("Gets the name."),
    );
    check(&p, "User::find", Method, (16, 16), 16, None);
    check(&p, "HasName", Interface, (19, 19), 19, None);
    check(&p, "HasName::getName", Method, (19, 19), 19, None);
    check(&p, "Greets", Trait, (21, 21), 21, None);
    check(&p, "Greets::greet", Method, (21, 21), 21, None);
    check(&p, "helper", Function, (24, 24), 24, Some("Helper."));
    check(&p, "Suit", Enum, (26, 26), 26, None);
    check(&p, "Suit::color", Method, (26, 26), 26, None);
}

#[test]
fn c() {
    let p = sample("c");
    assert_eq!(
        symbols(&p),
        ["add", "make_buf", "point", "size_t2", "color", "main"]
    );
    // The license comment is separated by a blank line and is not documentation.
    check(&p, "add", Function, (8, 10), 8, Some("Adds two ints."));
    // Pointer-returning functions.
    check(
        &p,
        "make_buf",
        Function,
        (13, 13),
        13,
        Some("Returns a buffer."),
    );
    check(&p, "point", Struct, (15, 15), 15, None);
    check(&p, "size_t2", Struct, (17, 17), 17, None);
    check(&p, "color", Enum, (19, 19), 19, None);
    check(&p, "main", Function, (21, 24), 21, None);
}

#[test]
fn cpp() {
    let p = sample("cpp");
    check(&p, "geo", Module, (3, 33), 3, None);
    check(&p, "geo::Shape", Class, (6, 12), 6, Some("A shape."));
    check(&p, "geo::Shape::~Shape", Method, (8, 8), 8, None);
    check(&p, "geo::Shape::scaled", Method, (11, 11), 11, None);
    check(&p, "geo::Circle", Struct, (14, 17), 14, None);
    // Out-of-line definitions take their scope from the qualified name.
    check(
        &p,
        "geo::Circle::area",
        Method,
        (20, 20),
        20,
        Some("Out of line."),
    );
    // `template <...>` belongs to the span.
    check(&p, "geo::maxOf", Function, (22, 23), 23, None);
    check(&p, "geo::Box", Class, (25, 29), 26, None);
    check(&p, "geo::Box::get", Method, (27, 27), 27, None);
    check(&p, "geo::Box::operator=", Method, (31, 31), 31, None);
    check(&p, "a::b", Module, (35, 35), 35, None);
    check(&p, "a::b::f", Function, (35, 35), 35, None);
    check(&p, "main", Function, (37, 37), 37, None);
    check(&p, "Circle::~Circle", Method, (38, 38), 38, None);
}

#[test]
fn every_sample_is_clean_and_every_unit_consistent() {
    for (lang, path, src) in SAMPLES {
        let p = parse(lang, path, src);
        assert!(!p.has_syntax_errors, "{lang} sample has syntax errors");
        assert!(p.units.len() >= 4, "{lang}: {:?}", symbols(&p));
        assert_eq!(p.graphs.len(), p.units.len());
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        for u in &p.units {
            assert_eq!(u.code, expected_code(&p, u, src), "{lang} {}", u.symbol);
            assert_eq!(
                line_starts.partition_point(|&s| s <= u.start_byte),
                u.start_line,
                "{lang} {}",
                u.symbol
            );
            assert!(
                u.start_line <= u.def_line && u.def_line <= u.end_line,
                "{lang} {}",
                u.symbol
            );
            assert!(!u.name.is_empty() && !u.symbol.is_empty());
            assert!(
                u.code.contains(u.name.trim_start_matches('~')),
                "{lang} {}",
                u.symbol
            );
        }
    }
}

#[test]
fn docstring_forms() {
    let src = "def a():\n    r'''Raw\n    line\n       indented\n    '''\n\ndef b():\n    x = 1\n    \"not a docstring\"\n\n\
               def c():\n    \"\"\"\"\"\"\n\ndef d(): 'one'\n";
    let p = parse("python", "d.py", src);
    assert_eq!(unit(&p, "a").doc.as_deref(), Some("Raw\nline\n   indented"));
    assert_eq!(unit(&p, "b").doc, None);
    assert_eq!(unit(&p, "c").doc, None);
    assert_eq!(unit(&p, "d").doc.as_deref(), Some("one"));
}

#[test]
fn comment_doc_rules() {
    let src = "int x = 1; // trailing\nint f(void) { return 0; }\n\n// detached\n\nint g(void) { return 1; }\n\
               ////////////\nint h(void) { return 2; }\n/* a */\n// b\nint k(void) { return 3; }\n";
    let p = parse("c", "x.c", src);
    assert_eq!(
        unit(&p, "f").doc,
        None,
        "trailing comment of the previous line"
    );
    assert_eq!(unit(&p, "g").doc, None, "separated by a blank line");
    assert_eq!(unit(&p, "h").doc, None, "banner");
    assert_eq!(unit(&p, "k").doc.as_deref(), Some("a\nb"));
    let rs = "/// Doc.\n#[derive(Debug)]\n/// More.\n#[serde(default)]\npub struct S;\n// plain\nfn f() {}\n";
    let p = parse("rust", "x.rs", rs);
    let s = unit(&p, "S");
    assert_eq!((s.start_line, s.doc.as_deref()), (2, Some("Doc.\nMore.")));
    assert_eq!(unit(&p, "f").doc, None);
}
