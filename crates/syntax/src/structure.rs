//! Structure fingerprints: what a piece of code looks like with its names taken away, for
//! code→code search.
//!
//! ## Design
//!
//! A text model reads a function through its names; rename them and it loses most of its
//! clues (the `near_duplicates` benchmark: a renamed copy of a function comes first for 41 of 200
//! originals with the fine-tuned model). The syntax tree does not change. A [`Fingerprint`] is
//! the set of k-grams ([`SHINGLE`] tokens) over the unit's leaf tokens in source order, where
//!
//! * keywords and punctuation (tree-sitter's anonymous leaves) are themselves,
//! * literals (strings, numbers, ...) are their kind and text,
//! * names the unit binds itself are *alpha-renamed*: the n-th distinct one becomes `#n`, so
//!   `v0 = v1 + v0` and `total = x + total` agree. A name is bound when it appears in a
//!   binding position somewhere in the unit: a parameter list (any node kind containing
//!   `parameter`), the name of a definition or declaration, the target of an assignment, `let`
//!   or loop, a C declarator (`binds` decides from the parent's kind and the field). A name
//!   is any leaf whose kind is an identifier in its grammar (`identifier`, `type_identifier`,
//!   PHP `name`, Ruby `constant` and `@ivar`, ...);
//! * other names (the functions it calls, members, types, imports) keep their text: a sibling
//!   that calls `intersection` where the original calls `difference` is not a renamed copy. A
//!   member (`self.size = size`) is never bound by the assignment around it, but follows a bound
//!   name of the same text;
//! * comments are left out.
//!
//! Two fingerprints compare by Jaccard similarity of their k-gram sets ([`Fingerprint::
//! similarity`]): 1 for a consistently renamed copy (a "type-2 clone"), high for a copy with a
//! few edits, low for code that merely does something similar. This is the classic token-based
//! clone detector's signal (CCFinder, SourcererCC); it is computed, not learned, and costs one
//! parse per unit (about a tenth of a millisecond for a function).
//!
//! A unit's text is parsed on its own, inside the smallest context its language needs
//! ([`standalone_contexts`]: a method inside a class in JavaScript, TypeScript, Java and C++,
//! `<?php` in PHP); only leaves inside the unit's own text count. Text past [`MAX_BYTES`] is not
//! read, so the cost is bounded whatever the unit.

use crate::Language;

/// Tokens per k-gram.
pub const SHINGLE: usize = 4;

/// Bytes of a unit's text that are fingerprinted; the rest is ignored.
pub const MAX_BYTES: usize = 32 * 1024;

/// Text put around a unit's code so that it parses on its own, tried in order: none first, then
/// the language's enclosing contexts (a method needs its class in JavaScript, TypeScript, Java
/// and C++; PHP code needs its `<?php` opening, and a method its class too).
pub fn standalone_contexts(language: &str) -> &'static [(&'static str, &'static str)] {
    match language {
        "javascript" | "typescript" | "tsx" | "java" => &[("", ""), ("class C {\n", "\n}\n")],
        "php" => &[("<?php\n", "\n"), ("<?php\nclass C {\n", "\n}\n")],
        "cpp" => &[("", ""), ("class C {\n", "\n};\n")],
        _ => &[("", "")],
    }
}

/// The k-gram set of a unit's text with the names it binds alpha-renamed (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Sorted, distinct k-gram hashes.
    shingles: Vec<u64>,
}

impl Fingerprint {
    /// Fingerprints `code` written in `lang`. Text that does not parse still gives the tokens
    /// tree-sitter recovered; empty text gives an empty fingerprint.
    pub fn of(lang: &Language, code: &str) -> Fingerprint {
        let mut cut = code.len().min(MAX_BYTES);
        while !code.is_char_boundary(cut) {
            cut -= 1;
        }
        let code = &code[..cut];
        let mut best: Option<Vec<u64>> = None;
        for (pre, post) in standalone_contexts(lang.name()) {
            let text = format!("{pre}{code}{post}");
            let Ok(tree) = lang.parse(text.as_bytes()) else {
                continue;
            };
            let tokens = leaf_tokens(
                lang,
                &tree,
                text.as_bytes(),
                pre.len(),
                pre.len() + code.len(),
            );
            let clean = !tree.root_node().has_error();
            if clean {
                best = Some(tokens);
                break;
            }
            best.get_or_insert(tokens);
        }
        Fingerprint::from_tokens(&best.unwrap_or_default())
    }

    fn from_tokens(tokens: &[u64]) -> Fingerprint {
        let mut shingles: Vec<u64> = if tokens.len() < SHINGLE {
            if tokens.is_empty() {
                Vec::new()
            } else {
                vec![combine(tokens)]
            }
        } else {
            tokens.windows(SHINGLE).map(combine).collect()
        };
        shingles.sort_unstable();
        shingles.dedup();
        Fingerprint { shingles }
    }

    /// Whether no token was found.
    pub fn is_empty(&self) -> bool {
        self.shingles.is_empty()
    }

    /// Number of distinct k-grams.
    pub fn len(&self) -> usize {
        self.shingles.len()
    }

    /// Jaccard similarity of the two k-gram sets, in [0, 1] (0 when either is empty).
    pub fn similarity(&self, other: &Fingerprint) -> f32 {
        if self.is_empty() || other.is_empty() {
            return 0.0;
        }
        let (a, b) = (&self.shingles, &other.shingles);
        let (mut i, mut j, mut common) = (0, 0, 0usize);
        while i < a.len() && j < b.len() {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    common += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        common as f32 / (a.len() + b.len() - common) as f32
    }
}

/// Whether a leaf of this kind is a name.
fn is_name(kind: &str) -> bool {
    kind.ends_with("identifier")
        || matches!(
            kind,
            "name"
                | "constant"
                | "instance_variable"
                | "class_variable"
                | "global_variable"
                | "metavariable"
        )
}

/// Whether the child in `field` of a `parent` node binds the names in it: a definition's or
/// declaration's name, an assignment's or a loop's target, a C declarator, parameters.
/// Parameters bind wherever they are (any node kind containing `parameter`).
fn binds(parent: &str, field: &str) -> bool {
    if parent.contains("call") || parent.contains("invocation") {
        return false;
    }
    match field {
        "name" => {
            parent.contains("declar")
                || parent.contains("definition")
                || parent.ends_with("_item")
                || parent.ends_with("_spec")
                || parent.contains("for")
                || matches!(parent, "method" | "singleton_method")
        }
        "left" | "pattern" => {
            parent.contains("assignment")
                || parent.contains("declar")
                || parent.starts_with("for")
                || parent.starts_with("let")
        }
        "declarator" => parent.contains("declarator") || parent == "function_definition",
        "parameter" | "parameters" => true,
        _ => false,
    }
}

/// Per-grammar lookups of the walk, by node-kind id and field id, so that the walk compares
/// numbers rather than kind names.
#[derive(Debug)]
pub(crate) struct Tables {
    /// Per node-kind id.
    comment: Vec<bool>,
    parameter: Vec<bool>,
    name: Vec<bool>,
    /// `binds[kind * fields + field]`.
    binds: Vec<bool>,
    /// Per field id: a member's name (`attribute`, `field`, `property`).
    member: Vec<bool>,
    fields: usize,
}

impl Tables {
    fn new(ts: &tree_sitter::Language) -> Tables {
        let kinds = ts.node_kind_count();
        let fields = ts.field_count() + 1;
        let kind = |id: usize| {
            u16::try_from(id)
                .ok()
                .and_then(|id| ts.node_kind_for_id(id))
                .unwrap_or("")
        };
        let field = |id: usize| {
            u16::try_from(id)
                .ok()
                .and_then(|id| ts.field_name_for_id(id))
                .unwrap_or("")
        };
        let mut table = vec![false; kinds * fields];
        for k in 0..kinds {
            for f in 1..fields {
                table[k * fields + f] = binds(kind(k), field(f));
            }
        }
        Tables {
            comment: (0..kinds).map(|k| kind(k).contains("comment")).collect(),
            parameter: (0..kinds).map(|k| kind(k).contains("parameter")).collect(),
            name: (0..kinds).map(|k| is_name(kind(k))).collect(),
            binds: table,
            member: (0..fields)
                .map(|f| matches!(field(f), "attribute" | "field" | "property"))
                .collect(),
            fields,
        }
    }

    fn get(v: &[bool], i: usize) -> bool {
        v.get(i).copied().unwrap_or(false)
    }

    /// Whether a node of `kind`, the child in `field` of a `parent` in a binding position
    /// (`binding`), is in one itself.
    fn binding(&self, parent: usize, binding: bool, kind: usize, field: usize) -> bool {
        // A member's name (`self.size = size`) is not bound by the assignment around it.
        !Self::get(&self.member, field)
            && (binding
                || Self::get(&self.parameter, kind)
                || (field != 0 && Self::get(&self.binds, parent * self.fields + field)))
    }
}

/// A leaf of the unit's text.
struct Leaf {
    start: usize,
    end: usize,
    kind: u16,
    named: bool,
    name: bool,
    /// Inside a binding position ([`binds`]).
    binding: bool,
}

/// Leaf tokens of the tree whose bytes lie in `start..end`, in source order. Names the unit
/// binds itself (its own name, parameters, locals) are alpha-renamed; other names (the
/// functions it calls, fields, types) keep their text, as do literals, keywords and
/// punctuation.
fn leaf_tokens(
    lang: &Language,
    tree: &tree_sitter::Tree,
    source: &[u8],
    start: usize,
    end: usize,
) -> Vec<u64> {
    let t = lang
        .structure
        .get_or_init(|| Tables::new(lang.tree_sitter()));
    let mut leaves = Vec::new();
    let mut cursor = tree.walk();
    // (kind id, binding) of the nodes on the path from the root to the cursor, inclusive.
    let root = cursor.node();
    let mut path: Vec<(usize, bool)> = vec![(
        usize::from(root.kind_id()),
        Tables::get(&t.parameter, usize::from(root.kind_id())),
    )];
    let enter = |path: &mut Vec<(usize, bool)>, cursor: &tree_sitter::TreeCursor<'_>| {
        let (parent, binding) = path.last().copied().unwrap_or((0, false));
        let kind = usize::from(cursor.node().kind_id());
        let field = cursor.field_id().map_or(0, |f| usize::from(f.get()));
        path.push((kind, t.binding(parent, binding, kind, field)));
    };
    loop {
        let node = cursor.node();
        let kind = usize::from(node.kind_id());
        let skip =
            Tables::get(&t.comment, kind) || node.end_byte() <= start || node.start_byte() >= end;
        if !skip && cursor.goto_first_child() {
            enter(&mut path, &cursor);
            continue;
        }
        if !skip && node.child_count() == 0 && !node.is_missing() {
            leaves.push(Leaf {
                start: node.start_byte(),
                end: node.end_byte(),
                kind: node.kind_id(),
                named: node.is_named(),
                name: Tables::get(&t.name, kind),
                binding: path.last().is_some_and(|p| p.1),
            });
        }
        // Next sibling, or up until there is one.
        loop {
            if cursor.goto_next_sibling() {
                path.pop();
                enter(&mut path, &cursor);
                break;
            }
            if !cursor.goto_parent() {
                return tokens(&leaves, source);
            }
            path.pop();
        }
    }
}

fn tokens(leaves: &[Leaf], source: &[u8]) -> Vec<u64> {
    let text = |l: &Leaf| source.get(l.start..l.end).unwrap_or_default();
    let mut bound: Vec<&[u8]> = leaves
        .iter()
        .filter(|l| l.named && l.binding && l.name)
        .map(text)
        .collect();
    bound.sort_unstable();
    bound.dedup();
    let mut names: Vec<&[u8]> = Vec::new();
    leaves
        .iter()
        .map(|l| {
            let t = text(l);
            if !l.named {
                hash(0, &[t])
            } else if l.name && bound.binary_search(&t).is_ok() {
                let n = match names.iter().position(|x| *x == t) {
                    Some(n) => n,
                    None => {
                        names.push(t);
                        names.len() - 1
                    }
                };
                hash(1, &[&(n as u64).to_le_bytes()])
            } else {
                hash(2, &[&l.kind.to_le_bytes(), t])
            }
        })
        .collect()
}

/// FNV-1a over a tag and byte strings (stable across runs and platforms).
fn hash(tag: u8, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(tag);
    for p in parts {
        for &b in *p {
            eat(b);
        }
        eat(0xff);
    }
    h
}

fn combine(window: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &t in window {
        h = (h ^ t).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(lang: &str, code: &str) -> Fingerprint {
        Fingerprint::of(Language::by_name(lang).unwrap(), code)
    }

    #[test]
    fn a_renamed_copy_is_identical() {
        let a = fp(
            "python",
            "def total(items, start=0):\n    # sum them\n    acc = start\n    for x in items:\n        acc += x.price\n    return acc\n",
        );
        let b = fp(
            "python",
            "def v0(v1, v2=0):\n    acc = v2\n    for y in v1:\n        acc += y.price\n    return acc\n",
        );
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_eq!(a.similarity(&b), 1.0);
    }

    #[test]
    fn literals_and_structure_count() {
        let base = fp(
            "rust",
            "fn f(a: u32) -> u32 { if a > 3 { a * 2 } else { a + 1 } }",
        );
        let edited = fp(
            "rust",
            "fn g(b: u32) -> u32 { if b > 3 { b * 2 } else { b + 7 } }",
        );
        let other = fp(
            "rust",
            "fn h(v: &[u8]) -> usize { v.iter().filter(|c| **c == b'x').count() }",
        );
        let (near, far) = (base.similarity(&edited), base.similarity(&other));
        assert!(near < 1.0 && near > 0.5, "one literal changed: {near}");
        assert!(far < 0.2, "different code: {far}");
    }

    #[test]
    fn names_are_renamed_consistently_not_merged() {
        // `a + b` and `a + a` differ: the second name is a new one.
        let two = fp("go", "func f(a, b int) int { return a + b + a + b }");
        let one = fp("go", "func f(a, b int) int { return a + a + b + b }");
        assert!(two.similarity(&one) < 1.0);
    }

    #[test]
    fn methods_parse_in_their_class_context() {
        let a = fp(
            "java",
            "public int size(List<String> xs) { int n = 0; for (String s : xs) { n += s.length(); } return n; }",
        );
        let b = fp(
            "java",
            "public int v0(List<String> v1) { int k = 0; for (String t : v1) { k += t.length(); } return k; }",
        );
        assert!(!a.is_empty());
        assert_eq!(a.similarity(&b), 1.0);
    }

    #[test]
    fn called_names_and_members_keep_their_text() {
        // Same shape, another method called: a sibling, not a renamed copy.
        let a = fp(
            "rust",
            "fn f(s: &Set) -> Set { s.difference(&s).collect() }",
        );
        let b = fp(
            "rust",
            "fn g(t: &Set) -> Set { t.intersection(&t).collect() }",
        );
        let renamed = fp(
            "rust",
            "fn v0(v1: &Set) -> Set { v1.difference(&v1).collect() }",
        );
        assert!(a.similarity(&b) < 1.0);
        assert_eq!(a.similarity(&renamed), 1.0);
        // An attribute is not bound by the assignment that sets it.
        let c = fp(
            "python",
            "def __init__(self, size):\n    self.size = size\n    self.count = 0\n",
        );
        let d = fp(
            "python",
            "def __init__(self, width):\n    self.width = width\n    self.total = 0\n",
        );
        let e = fp(
            "python",
            "def __init__(self, width):\n    self.width = width\n    self.count = 0\n",
        );
        assert!(c.similarity(&d) < 1.0);
        assert_eq!(c.similarity(&e), 1.0);
    }

    #[test]
    fn renamed_copies_in_more_languages() {
        let cases = [
            (
                "javascript",
                "function sum(xs, f) { let t = 0; for (const x of xs) { t += f(x); } return t; }",
                "function v0(v1, v2) { let a = 0; for (const b of v1) { a += v2(b); } return a; }",
            ),
            (
                "typescript",
                "const pick = (o: Obj, k: string): number => o[k] ?? 0;",
                "const v0 = (v1: Obj, v2: string): number => v1[v2] ?? 0;",
            ),
            (
                "go",
                "func (s *Stack) Push(v int) { s.items = append(s.items, v) }",
                "func (v0 *Stack) V1(v2 int) { v0.items = append(v0.items, v2) }",
            ),
            (
                "c",
                "int sum(int *xs, int n) { int t = 0; for (int i = 0; i < n; i++) t += xs[i]; return t; }",
                "int v0(int *v1, int v2) { int a = 0; for (int b = 0; b < v2; b++) a += v1[b]; return a; }",
            ),
        ];
        for (lang, a, b) in cases {
            let (a, b) = (fp(lang, a), fp(lang, b));
            assert!(!a.is_empty(), "{lang}");
            assert_eq!(a.similarity(&b), 1.0, "{lang}");
        }
    }

    #[test]
    fn degenerate_input_is_harmless() {
        let empty = fp("python", "");
        assert!(empty.is_empty());
        assert_eq!(empty.similarity(&empty), 0.0);
        let short = fp("python", "x");
        assert_eq!(short.len(), 1);
        // Garbage and text cut inside a character still give a fingerprint, not a panic.
        let long = "é".repeat(MAX_BYTES);
        let g = fp("rust", &long);
        assert!(g.len() <= MAX_BYTES);
        let junk = fp("php", "}}}{{{ ((( \u{0}\u{1} <?php ?>");
        assert!(junk.similarity(&g) <= 1.0);
    }
}
