//! Extraction of [`CodeUnit`]s (and optionally [`AstGraph`]s) from one file.

use std::collections::HashMap;

use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, QueryCursor};

use crate::config::DocStyle;
use crate::error::{Result, SyntaxError};
use crate::graph::build_graph;
use crate::language::Language;
use crate::text::{dedent, docstring_content, split_qualified, strip_comment, type_name};
use crate::{AstGraph, CodeUnit, UnitKind};

/// Options of [`extract_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Build an [`AstGraph`] for every unit.
    pub graphs: bool,
    /// Node cap of each graph (breadth-first); default 512.
    pub max_nodes: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            graphs: false,
            max_nodes: 512,
        }
    }
}

/// The units of one file.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFile {
    /// Path relative to the indexed root, `/`-separated.
    pub path: String,
    /// Registered language name.
    pub language: String,
    /// Size of the source in bytes.
    pub bytes: usize,
    /// Units in source order (by start byte; an enclosing unit comes before its members).
    pub units: Vec<CodeUnit>,
    /// `graphs[i]` belongs to `units[i]` when graphs were requested; empty otherwise.
    pub graphs: Vec<AstGraph>,
    /// The tree contains `ERROR` or `MISSING` nodes; the units are what tree-sitter recovered.
    pub has_syntax_errors: bool,
    /// The content hash of the source as the caller computed it (during a walk, what
    /// [`WalkHooks::parse_file`](crate::WalkHooks::parse_file) returned); empty otherwise.
    pub content_hash: String,
}

/// One `@definition.*` match, before qualification.
struct Def<'t> {
    node: Node<'t>,
    kind: UnitKind,
    name: String,
    /// Scope written in the definition itself: Go receiver, C++ `Foo::` prefix, Rust impl trait.
    scope: Option<String>,
    trait_name: Option<String>,
    is_static: bool,
    name_row: usize,
    pattern: usize,
}

fn text<'s>(node: &Node<'_>, source: &'s [u8]) -> std::borrow::Cow<'s, str> {
    String::from_utf8_lossy(source.get(node.byte_range()).unwrap_or_default())
}

/// Extracts the units of one file. `rel_path` is only recorded in the units.
///
/// Never panics on any input: invalid UTF-8 is decoded lossily, syntax errors yield whatever
/// tree-sitter recovered.
pub fn extract_file(
    lang: &Language,
    rel_path: &str,
    source: &[u8],
    opts: &ExtractOptions,
) -> Result<ParsedFile> {
    if u32::try_from(source.len()).is_err() {
        return Err(SyntaxError::TooLarge {
            path: rel_path.to_string(),
            size: source.len(),
        });
    }
    let tree = lang.parse(source).map_err(|e| match e {
        SyntaxError::Parse { .. } => SyntaxError::Parse {
            path: rel_path.to_string(),
        },
        e => e,
    })?;
    let root = tree.root_node();
    let defs = collect_defs(lang, root, source);
    let mut parsed = ParsedFile {
        path: rel_path.to_string(),
        language: lang.name().to_string(),
        bytes: source.len(),
        units: Vec::with_capacity(defs.len()),
        graphs: Vec::new(),
        has_syntax_errors: root.has_error(),
        content_hash: String::new(),
    };
    build_units(lang, rel_path, source, &defs, opts, &mut parsed);
    Ok(parsed)
}

fn collect_defs<'t>(lang: &Language, root: Node<'t>, source: &[u8]) -> Vec<Def<'t>> {
    let caps = &lang.captures;
    let sep = lang.separator();
    let mut cursor = QueryCursor::new();
    let mut matches = cursor.matches(&lang.query, root, source);
    // node id -> index in `defs`; a node matched by several patterns keeps the first pattern.
    let mut by_node: HashMap<usize, usize> = HashMap::new();
    let mut defs: Vec<Def<'t>> = Vec::new();
    while let Some(m) = matches.next() {
        let mut def_node = None;
        let (mut name_node, mut receiver, mut trait_node, mut is_static) =
            (None, None, None, false);
        for c in m.captures() {
            let idx = Some(c.index);
            if let Some(Some(kind)) = caps.definition.get(c.index as usize) {
                def_node = Some((c.node, *kind));
            } else if idx == caps.name {
                name_node = Some(c.node);
            } else if idx == caps.receiver {
                receiver = Some(c.node);
            } else if idx == caps.trait_ {
                trait_node = Some(c.node);
            } else if idx == caps.static_ {
                is_static = true;
            }
        }
        let Some((node, kind)) = def_node else {
            continue;
        };
        // Impl blocks are named after their self type; everything else needs a name.
        let (scope, name, name_row) = match (name_node, receiver) {
            (Some(n), recv) => {
                let (scope, name) = split_qualified(&text(&n, source), sep);
                let scope = match (recv, scope) {
                    (Some(r), s) => {
                        let r = type_name(&text(&r, source), sep);
                        Some(match s {
                            Some(s) => format!("{r}{sep}{s}"),
                            None => r,
                        })
                    }
                    (None, s) => s,
                };
                (scope, name, n.start_position().row)
            }
            (None, Some(r)) => (
                None,
                type_name(&text(&r, source), sep),
                r.start_position().row,
            ),
            (None, None) => continue,
        };
        if name.is_empty() {
            continue;
        }
        let def = Def {
            node,
            kind,
            name,
            scope,
            trait_name: trait_node.map(|t| {
                let t = text(&t, source);
                t.split_whitespace().collect::<Vec<_>>().join(" ")
            }),
            is_static,
            name_row,
            pattern: m.pattern_index,
        };
        match by_node.get(&node.id()) {
            Some(&i) if defs[i].pattern <= def.pattern => {}
            Some(&i) => defs[i] = def,
            None => {
                by_node.insert(node.id(), defs.len());
                defs.push(def);
            }
        }
    }
    // Source order; an enclosing definition before the ones it contains.
    defs.sort_by_key(|d| {
        (
            d.node.start_byte(),
            std::cmp::Reverse(d.node.end_byte()),
            d.pattern,
        )
    });
    defs
}

/// The node whose span is the unit's: the definition, or a wrapper around it (decorators,
/// `export`, `template <...>`) when the wrapper holds no other node of the definition's kind.
fn outer_node<'t>(lang: &Language, node: Node<'t>) -> Node<'t> {
    let wrappers = &lang.config.wrappers;
    let mut outer = node;
    while let Some(parent) = outer.parent() {
        if !wrappers.iter().any(|w| w == parent.kind()) {
            break;
        }
        let mut cursor = parent.walk();
        let others = parent
            .named_children(&mut cursor)
            .filter(|c| c.id() != outer.id() && c.kind() == outer.kind())
            .count();
        if others > 0 {
            break;
        }
        outer = parent;
    }
    outer
}

fn is_comment(lang: &Language, node: &Node<'_>) -> bool {
    lang.config.comment_kinds.iter().any(|k| k == node.kind())
}

fn is_prefix(lang: &Language, node: &Node<'_>) -> bool {
    lang.config.prefixes.iter().any(|k| k == node.kind())
}

/// Start of the span: the first of the attribute-like siblings directly before `outer`.
fn span_start<'t>(lang: &Language, outer: Node<'t>) -> Node<'t> {
    let mut first = outer;
    let mut cur = outer;
    while let Some(prev) = cur.prev_named_sibling() {
        if is_prefix(lang, &prev) {
            first = prev;
        } else if !is_comment(lang, &prev) {
            break;
        }
        cur = prev;
    }
    first
}

/// The doc comment block directly before `first`, and the byte range of each comment in it.
fn comment_doc(
    lang: &Language,
    first: Node<'_>,
    source: &[u8],
) -> Option<(String, Vec<(usize, usize)>)> {
    let markers = &lang.config.doc_markers;
    let mut parts = Vec::new();
    let mut spans = Vec::new();
    let mut next_row = first.start_position().row;
    let mut cur = first;
    loop {
        let Some(prev) = cur.prev_named_sibling() else {
            // Ruby puts comments before the first statement of a body outside the body node:
            // climb out of parents that start where the definition starts.
            match cur.parent() {
                Some(p) if p.start_byte() == cur.start_byte() => {
                    cur = p;
                    continue;
                }
                _ => break,
            }
        };
        if is_prefix(lang, &prev) {
            next_row = prev.start_position().row;
            cur = prev;
            continue;
        }
        if !is_comment(lang, &prev) {
            break;
        }
        // Only a block that touches the definition (no blank line in between).
        let end = prev.end_position();
        let end_row = if end.column == 0 && end.row > prev.start_position().row {
            end.row - 1
        } else {
            end.row
        };
        if end_row + 1 < next_row {
            break;
        }
        // A trailing comment of the previous statement (`x = 1  # note`) is not documentation.
        if let Some(before) = prev.prev_sibling()
            && before.end_position().row == prev.start_position().row
            && !is_comment(lang, &before)
        {
            break;
        }
        let t = text(&prev, source);
        let t = t.trim_start();
        let is_doc = markers.iter().any(|m| t.starts_with(m.as_str()));
        // `////` and `/***` are separators / banners, not doc comments.
        let banner = markers
            .iter()
            .any(|m| m.len() >= 3 && t.starts_with(&format!("{m}{}", &m[m.len() - 1..])));
        if !is_doc || banner {
            break;
        }
        parts.push((t.starts_with("/*"), strip_comment(t, markers)));
        spans.push((prev.start_byte(), prev.end_byte()));
        next_row = prev.start_position().row;
        cur = prev;
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    spans.reverse();
    // Runs of line comments are dedented together (keeping relative indentation of examples);
    // block comments are already dedented on their own.
    let mut groups: Vec<String> = Vec::new();
    let mut run = String::new();
    for (is_block, part) in parts {
        if is_block {
            if !run.is_empty() {
                groups.push(dedent(&std::mem::take(&mut run)));
            }
            groups.push(part);
        } else {
            run.push_str(&part);
        }
    }
    if !run.is_empty() {
        groups.push(dedent(&run));
    }
    let doc = dedent(&groups.join("\n"));
    (!doc.trim().is_empty()).then_some((doc, spans))
}

/// The docstring of a definition, and the byte range of its statement.
fn docstring(
    lang: &Language,
    node: Node<'_>,
    source: &[u8],
) -> Option<(String, Vec<(usize, usize)>)> {
    let body = node.child_by_field_name(lang.config.doc_body_field.as_str())?;
    let mut cursor = body.walk();
    let first = body
        .named_children(&mut cursor)
        .find(|c| !is_comment(lang, c))?;
    if first.kind() != "expression_statement" || first.named_child_count() != 1 {
        return None;
    }
    let string = first.named_child(0)?;
    if string.kind() != "string" {
        return None;
    }
    let doc = docstring_content(&text(&string, source));
    (!doc.trim().is_empty()).then(|| (doc, vec![(first.start_byte(), first.end_byte())]))
}

fn build_units(
    lang: &Language,
    rel_path: &str,
    source: &[u8],
    defs: &[Def<'_>],
    opts: &ExtractOptions,
    parsed: &mut ParsedFile,
) {
    let cfg = &lang.config;
    let sep = cfg.separator.as_str();
    // Stack of (def index, path that qualifies its members) for the enclosing definitions.
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut kinds: Vec<UnitKind> = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        let (start, end) = (def.node.start_byte(), def.node.end_byte());
        while let Some(&(top, _)) = stack.last() {
            let t = &defs[top].node;
            if t.start_byte() <= start && end <= t.end_byte() {
                break;
            }
            stack.pop();
        }
        let parent_kind = stack.last().map(|&(p, _)| kinds[p]);
        // Nearest enclosing unit that qualifies names.
        let base = stack.iter().rev().find_map(|(_, path)| path.clone());

        let kind = match def.kind {
            UnitKind::Function | UnitKind::Method => {
                if def.scope.is_some()
                    || parent_kind.is_some_and(|k| cfg.method_containers.contains(&k))
                {
                    UnitKind::Method
                } else {
                    UnitKind::Function
                }
            }
            k => k,
        };
        kinds.push(kind);
        let own_sep = match kind {
            UnitKind::Method if def.is_static => cfg.static_separator.as_str(),
            UnitKind::Method => cfg.method_separator.as_str(),
            _ => sep,
        };
        let local = match &def.scope {
            Some(scope) => format!("{scope}{own_sep}{}", def.name),
            None => def.name.clone(),
        };
        let path = match &base {
            Some(b) => {
                let s = if def.scope.is_some() { sep } else { own_sep };
                format!("{b}{s}{local}")
            }
            None => local,
        };
        let symbol = match (kind, &def.trait_name) {
            (UnitKind::Impl, Some(t)) => format!("<{path} as {t}>"),
            _ => path.clone(),
        };
        stack.push((i, cfg.qualify.contains(&kind).then_some(path)));

        let outer = outer_node(lang, def.node);
        let first = span_start(lang, outer);
        let start_byte = first.start_byte();
        let end_byte = outer.end_byte().max(def.node.end_byte());
        let start_line = first.start_position().row + 1;
        let end_pos = outer.end_position();
        let mut end_line = if end_pos.column == 0 && end_pos.row > first.start_position().row {
            end_pos.row
        } else {
            end_pos.row + 1
        };
        let def_line = (def.name_row + 1).clamp(start_line, end_line.max(start_line));
        end_line = end_line.max(def_line);
        let (doc, doc_spans) = match cfg.doc {
            DocStyle::Docstring => docstring(lang, def.node, source),
            DocStyle::Comments => comment_doc(lang, outer, source),
            DocStyle::None => None,
        }
        .unzip();
        let code = String::from_utf8_lossy(source.get(start_byte..end_byte).unwrap_or_default())
            .into_owned();
        parsed.units.push(CodeUnit {
            path: rel_path.to_string(),
            language: cfg.name.clone(),
            kind,
            name: def.name.clone(),
            symbol,
            start_byte,
            end_byte,
            start_line,
            end_line,
            def_line,
            doc,
            doc_spans: doc_spans.unwrap_or_default(),
            code,
        });
        if opts.graphs {
            parsed
                .graphs
                .push(build_graph(lang, outer, start_byte, opts.max_nodes));
        }
    }
}
