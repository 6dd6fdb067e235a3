//! Extraction of [`CodeUnit`]s (and optionally [`AstGraph`]s) from one file.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use streaming_iterator::StreamingIterator;
use tree_sitter::{Node, QueryCursor, QueryCursorOptions};

use crate::config::DocStyle;
use crate::error::{Result, SyntaxError};
use crate::graph::build_graph;
use crate::language::Language;
use crate::text::{Lines, dedent, docstring_content, split_qualified, strip_comment, type_name};
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
    /// Start of the name (of the receiver for an impl).
    name_byte: usize,
    pattern: usize,
}

/// A `\r` not followed by `\n`.
fn has_lone_cr(source: &[u8]) -> bool {
    source
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && source.get(i + 1) != Some(&b'\n'))
}

fn text<'s>(node: &Node<'_>, source: &'s [u8]) -> std::borrow::Cow<'s, str> {
    String::from_utf8_lossy(source.get(node.byte_range()).unwrap_or_default())
}

/// Extracts the units of one file. `rel_path` is only recorded in the units.
///
/// Never panics on any input: invalid UTF-8 is decoded lossily, syntax errors yield whatever
/// tree-sitter recovered. Lines are counted at `\n`, `\r\n` and a lone `\r` alike.
///
/// The work is bounded by the file's size whatever its shape: one parse, one query, one pass
/// over the nodes that contain definitions, and units whose text holds at most
/// [`MAX_TEXT_FACTOR`] times the file. A file beyond [`MAX_UNIT_DEPTH`], [`MAX_UNITS`] or that
/// text budget is refused whole with [`SyntaxError::TooComplex`] (a walk skips it with
/// [`SkipReason::TooComplex`](crate::SkipReason::TooComplex)): half a file's units would answer
/// searches as if they were all of it.
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
    // tree-sitter's grammars end lines at `\n` only: a file with old Mac `\r` endings would be
    // one line (one comment to its end, one Python statement). They are parsed as `\n` (the
    // same length, so every offset holds); units keep the bytes as written.
    let normalized;
    let parse_source = if has_lone_cr(source) {
        normalized = source
            .iter()
            .enumerate()
            .map(|(i, &b)| match b {
                b'\r' if source.get(i + 1) != Some(&b'\n') => b'\n',
                b => b,
            })
            .collect::<Vec<u8>>();
        &normalized[..]
    } else {
        source
    };
    let deadline = Instant::now() + time_budget(source.len());
    let out_of_time = || SyntaxError::TooComplex {
        path: rel_path.to_string(),
        reason: format!(
            "parsing it and finding its definitions took more than {:.1} s ({} s plus {} µs \
             per byte)",
            time_budget(source.len()).as_secs_f64(),
            TIME_BUDGET_BASE.as_secs(),
            TIME_BUDGET_PER_BYTE.as_micros()
        ),
    };
    let tree = lang
        .parse_until(parse_source, Some(deadline))
        .map_err(|e| match e {
            SyntaxError::Parse { .. } if Instant::now() > deadline => out_of_time(),
            SyntaxError::Parse { .. } => SyntaxError::Parse {
                path: rel_path.to_string(),
            },
            e => e,
        })?;
    let root = tree.root_node();
    let defs = match collect_defs(lang, root, source, deadline) {
        Ok(defs) => defs,
        Err(Halted::Work) => {
            return Err(SyntaxError::TooComplex {
                path: rel_path.to_string(),
                reason: format!(
                    "finding its definitions took more than {QUERY_WORK_PER_BYTE} steps per byte \
                     (deeply nested statements)"
                ),
            });
        }
        Err(Halted::Time) => return Err(out_of_time()),
    };
    if defs.len() > MAX_UNITS {
        return Err(SyntaxError::TooComplex {
            path: rel_path.to_string(),
            reason: format!("{} definitions (at most {MAX_UNITS})", defs.len()),
        });
    }
    let mut parsed = ParsedFile {
        path: rel_path.to_string(),
        language: lang.name().to_string(),
        bytes: source.len(),
        units: Vec::with_capacity(defs.len()),
        graphs: Vec::new(),
        has_syntax_errors: root.has_error(),
        content_hash: String::new(),
    };
    build_units(lang, rel_path, source, root, &defs, opts, &mut parsed)?;
    Ok(parsed)
}

/// Why the units query stopped early.
enum Halted {
    /// Out of its work budget ([`QUERY_WORK_PER_BYTE`]).
    Work,
    /// Past the file's deadline ([`TIME_BUDGET_BASE`]).
    Time,
}

/// The definitions the units query finds.
fn collect_defs<'t>(
    lang: &Language,
    root: Node<'t>,
    source: &[u8],
    deadline: Instant,
) -> std::result::Result<Vec<Def<'t>>, Halted> {
    let caps = &lang.captures;
    let sep = lang.separator();
    let mut cursor = QueryCursor::new();
    // tree-sitter calls back after every 1,000 steps (a step: one node visited plus one per
    // match in progress there).
    let checks = (source.len() as u64)
        .saturating_mul(QUERY_WORK_PER_BYTE)
        .saturating_add(QUERY_WORK_ALLOWANCE)
        / 1000;
    let mut calls = 0u64;
    let mut halted = None;
    let mut on_progress = |_: &tree_sitter::QueryCursorState| {
        calls += 1;
        if calls > checks {
            halted = Some(Halted::Work);
        } else if Instant::now() > deadline {
            halted = Some(Halted::Time);
        }
        if halted.is_some() {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    };
    let options = QueryCursorOptions::new().progress_callback(&mut on_progress);
    let mut matches = cursor.matches_with_options(&lang.query, root, source, options);
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
        let (scope, name, name_byte) = match (name_node, receiver) {
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
                (scope, name, n.start_byte())
            }
            (None, Some(r)) => (None, type_name(&text(&r, source), sep), r.start_byte()),
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
            name_byte,
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
    drop(matches);
    if let Some(h) = halted {
        return Err(h);
    }
    // Source order; an enclosing definition before the ones it contains.
    defs.sort_by_key(|d| {
        (
            d.node.start_byte(),
            std::cmp::Reverse(d.node.end_byte()),
            d.pattern,
        )
    });
    Ok(defs)
}

// The bounds below were set against real code: 12,702 files found on the build machine (the
// Python standard libraries and site-packages, the Rust crates of the cargo registry, and every
// C, C++, Go, Java, JavaScript, PHP and Ruby file there), measured with the `extract_cost`
// example: the deepest nesting of units is 7, the most units in one file 2,616 (a 774 KB
// generated C++ file), and the units' text at most 3.1 times the file's size (most files
// under 2).

/// Deepest nesting of units (a unit inside a unit inside ...) a file may have; deeper nesting
/// skips the file ([`SyntaxError::TooComplex`]). Real code nests under 10 levels (a closure in
/// a method of a class in a module); 64 leaves ample room and bounds what each unit costs: its
/// qualified symbol (one name per level), the scan for its qualifying parent, and the copies of
/// a nested function's text in the functions around it.
pub const MAX_UNIT_DEPTH: usize = 64;

/// Most units one file may yield; more skips the file. Every unit is stored and embedded (a few
/// milliseconds each on a CPU), so this bounds a file's cost to well under a minute. Real files
/// hold under 3,000 (a 1 MiB file, the default `max_file_size`, of 100-byte functions would
/// hold 10,000).
pub const MAX_UNITS: usize = 10_000;

/// The text a file's units may hold together (code, qualified symbols and docs) is at most
/// `MAX_TEXT_FACTOR` times the file's size plus [`TEXT_ALLOWANCE`]; more skips the file. A
/// container does not copy the containers nested in it (see [`CodeUnit::code`](crate::CodeUnit)),
/// so a byte lies in its innermost container and in the functions around it: real code stays
/// under 3.1 times its size, and 8 leaves room for deeper closures while a 1 MiB file's units
/// stay under 8 MiB of text.
pub const MAX_TEXT_FACTOR: usize = 8;

/// Work budget of the units query, in steps per byte of the file (plus
/// [`QUERY_WORK_ALLOWANCE`]). tree-sitter keeps a match of a pattern such as
/// `(expression_statement (assignment_expression ...))` in progress while it walks the
/// statement's whole subtree, and a step is one node visited plus one per match in progress
/// there: 16,000 nested `g(function () { ... })` statements (320 KB of JavaScript) took 5
/// seconds, 32,000 took 33. A file whose query runs out of budget is refused. Real code takes
/// at most 6.3 steps per byte (measured as above).
pub const QUERY_WORK_PER_BYTE: u64 = 64;

/// See [`QUERY_WORK_PER_BYTE`].
pub const QUERY_WORK_ALLOWANCE: u64 = 1_000_000;

/// A safety net under the bounds above: parsing and the units query of one file stop after
/// `TIME_BUDGET_BASE` plus [`TIME_BUDGET_PER_BYTE`] per byte (6.2 s for 1 MiB), and the file is
/// refused. Some inputs cost tree-sitter more than linear work it does not count: 500 KB of
/// random punctuation took 15 s to parse (error recovery), 150,000 unclosed `{(` 70 s in the
/// query (each token of a flat error node scans the tokens after it). Real code extracts at
/// about 0.2 µs per byte in a debug build (the 12,702 files above), 25 times faster than the
/// budget; unlike the other bounds this one depends on the machine and its load.
pub const TIME_BUDGET_BASE: Duration = Duration::from_secs(1);

/// See [`TIME_BUDGET_BASE`].
pub const TIME_BUDGET_PER_BYTE: Duration = Duration::from_micros(5);

fn time_budget(bytes: usize) -> Duration {
    TIME_BUDGET_BASE.saturating_add(
        TIME_BUDGET_PER_BYTE.saturating_mul(u32::try_from(bytes).unwrap_or(u32::MAX)),
    )
}

/// See [`MAX_TEXT_FACTOR`]: room for the symbols and docs of small files.
pub const TEXT_ALLOWANCE: usize = 64 * 1024;

/// A nested container elided from its container's text keeps at most this many bytes of its
/// definition line.
pub const ELIDED_HEADER_MAX: usize = 200;

/// What follows an elided container's definition line in the text of its container.
pub const ELISION_MARK: &str = " \u{2026}";

/// Where one definition sits, found by [`places`].
struct Place<'t> {
    /// The definition or the wrapper around it whose span is the unit's.
    outer: Node<'t>,
    /// The first node of the span (an attribute before `outer`, or `outer`).
    first: Node<'t>,
    doc: Option<(String, Vec<(usize, usize)>)>,
}

/// The visible nodes from the root to a cursor: `self.0[k]` holds the children of the `k`-th
/// node of the path seen so far, in order (`self.0[0] = [root]`); the last node of each level is
/// the parent of the next level, and the cursor's node is the last of the last level.
///
/// tree-sitter's `Node::parent` and `prev_sibling` start over from the root / from the parent's
/// first child: O(depth) and O(siblings) per call, which made deeply nested and very wide files
/// quadratic. Parents and earlier siblings read from here cost O(1) per step.
struct Levels<'t>(Vec<Vec<Node<'t>>>);

/// (level, index in the level).
type Pos = (usize, usize);

impl<'t> Levels<'t> {
    fn node(&self, (d, i): Pos) -> Option<Node<'t>> {
        self.0.get(d)?.get(i).copied()
    }
    fn current(&self) -> Pos {
        let d = self.0.len().saturating_sub(1);
        (d, self.0.get(d).map_or(0, |l| l.len().saturating_sub(1)))
    }
    fn parent(&self, (d, _): Pos) -> Option<Pos> {
        let p = d.checked_sub(1)?;
        Some((p, self.0.get(p)?.len().checked_sub(1)?))
    }
    fn prev(&self, (d, i): Pos) -> Option<Pos> {
        Some((d, i.checked_sub(1)?))
    }
    fn prev_named(&self, (d, i): Pos) -> Option<Pos> {
        let level = self.0.get(d)?;
        (0..i.min(level.len()))
            .rev()
            .find(|&j| level[j].is_named())
            .map(|j| (d, j))
    }
}

/// One pass over the tree with a cursor, descending only into nodes that contain a definition:
/// the place of every definition (`None` for one the cursor never reached, which does not
/// happen for query matches).
fn places<'t>(
    lang: &Language,
    root: Node<'t>,
    defs: &[Def<'t>],
    source: &[u8],
    lines: &Lines,
) -> Vec<Option<Place<'t>>> {
    let mut out: Vec<Option<Place<'t>>> = (0..defs.len()).map(|_| None).collect();
    let by_node: HashMap<usize, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.node.id(), i))
        .collect();
    let mut starts: Vec<usize> = defs.iter().map(|d| d.node.start_byte()).collect();
    starts.sort_unstable();
    // Definitions starting inside `node`'s span.
    let starting_inside = |node: &Node<'_>| {
        let lo = starts.partition_point(|&s| s < node.start_byte());
        let hi = starts.partition_point(|&s| s < node.end_byte());
        hi - lo
    };
    let mut left = defs.len();
    let mut wrapped = Wrapped::new();
    let mut levels = Levels(vec![vec![root]]);
    let mut cursor = root.walk();
    while left > 0 {
        let node = cursor.node();
        let mut own = 0;
        if let Some(&i) = by_node.get(&node.id()) {
            own = 1;
            if let Some(slot @ None) = out.get_mut(i) {
                *slot = Some(place(lang, &levels, &mut wrapped, source, lines));
                left -= 1;
            }
        }
        if starting_inside(&node) > own && cursor.goto_first_child() {
            levels.0.push(vec![cursor.node()]);
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                if let Some(level) = levels.0.last_mut() {
                    level.push(cursor.node());
                }
                break;
            }
            if !cursor.goto_parent() {
                return out;
            }
            levels.0.pop();
        }
    }
    out
}

fn place<'t>(
    lang: &Language,
    levels: &Levels<'t>,
    wrapped: &mut Wrapped,
    source: &[u8],
    lines: &Lines,
) -> Place<'t> {
    let def = levels.current();
    let outer = outer_pos(lang, levels, wrapped, def);
    let first = span_start(lang, levels, outer);
    let node = |p| levels.node(p).unwrap_or_else(|| levels.0[0][0]);
    let doc = match lang.config.doc {
        DocStyle::Docstring => docstring(lang, node(def), source),
        DocStyle::Comments => comment_doc(lang, levels, outer, source, lines),
        DocStyle::None => None,
    };
    Place {
        outer: node(outer),
        first: node(first),
        doc,
    }
}

/// Named children per kind of each wrapper node met (by node id), counted once per wrapper:
/// a wrapper holding many definitions (error recovery) must not be scanned once per definition.
type Wrapped = HashMap<usize, HashMap<u16, usize>>;

/// The definition, or a wrapper around it (decorators, `export`, `template <...>`) when the
/// wrapper holds no other node of the definition's kind.
fn outer_pos(lang: &Language, levels: &Levels<'_>, wrapped: &mut Wrapped, def: Pos) -> Pos {
    let wrappers = &lang.config.wrappers;
    let mut outer = def;
    while let Some(p) = levels.parent(outer) {
        let (Some(parent), Some(node)) = (levels.node(p), levels.node(outer)) else {
            break;
        };
        if !wrappers.iter().any(|w| w == parent.kind()) {
            break;
        }
        let kinds = wrapped.entry(parent.id()).or_insert_with(|| {
            let mut kinds = HashMap::new();
            let mut cursor = parent.walk();
            for c in parent.named_children(&mut cursor) {
                *kinds.entry(c.kind_id()).or_insert(0) += 1;
            }
            kinds
        });
        // `node` itself is one of the parent's named children.
        if kinds.get(&node.kind_id()).copied().unwrap_or(0) > 1 {
            break;
        }
        outer = p;
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
fn span_start(lang: &Language, levels: &Levels<'_>, outer: Pos) -> Pos {
    let mut first = outer;
    let mut cur = outer;
    while let Some(prev) = levels.prev_named(cur) {
        let Some(n) = levels.node(prev) else { break };
        if is_prefix(lang, &n) {
            first = prev;
        } else if !is_comment(lang, &n) {
            break;
        }
        cur = prev;
    }
    first
}

/// The doc comment block directly before `outer`, and the byte range of each comment in it.
fn comment_doc(
    lang: &Language,
    levels: &Levels<'_>,
    outer: Pos,
    source: &[u8],
    lines: &Lines,
) -> Option<(String, Vec<(usize, usize)>)> {
    let markers = &lang.config.doc_markers;
    let mut parts = Vec::new();
    let mut spans = Vec::new();
    let mut next_row = lines.row(levels.node(outer)?.start_byte());
    let mut cur = outer;
    loop {
        let Some(prev_pos) = levels.prev_named(cur) else {
            // Ruby puts comments before the first statement of a body outside the body node:
            // climb out of parents that start where the definition starts.
            match levels.parent(cur) {
                Some(p)
                    if levels.node(p).map(|n| n.start_byte())
                        == levels.node(cur).map(|n| n.start_byte()) =>
                {
                    cur = p;
                    continue;
                }
                _ => break,
            }
        };
        let prev = levels.node(prev_pos)?;
        if is_prefix(lang, &prev) {
            next_row = lines.row(prev.start_byte());
            cur = prev_pos;
            continue;
        }
        if !is_comment(lang, &prev) {
            break;
        }
        // Only a block that touches the definition (no blank line in between).
        let end_row = lines.last_row(prev.start_byte(), prev.end_byte());
        if end_row + 1 < next_row {
            break;
        }
        // A trailing comment of the previous statement (`x = 1  # note`) is not documentation.
        if let Some(before) = levels.prev(prev_pos).and_then(|p| levels.node(p))
            && lines.row(before.end_byte()) == lines.row(prev.start_byte())
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
        next_row = lines.row(prev.start_byte());
        cur = prev_pos;
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

/// The text budget of one file ([`MAX_TEXT_FACTOR`]).
struct Budget<'a> {
    path: &'a str,
    left: usize,
    limit: usize,
}

impl Budget<'_> {
    fn spend(&mut self, bytes: usize) -> Result<()> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(SyntaxError::TooComplex {
                path: self.path.to_string(),
                reason: format!(
                    "its units would hold more than {} bytes of text ({MAX_TEXT_FACTOR} times \
                     the file's size plus {TEXT_ALLOWANCE})",
                    self.limit
                ),
            }),
        }
    }
}

/// A unit before its text is copied.
struct Draft {
    kind: UnitKind,
    symbol: String,
    start_byte: usize,
    end_byte: usize,
    start_line: usize,
    end_line: usize,
    def_line: usize,
    doc: Option<String>,
    doc_spans: Vec<(usize, usize)>,
    /// Index of the first definition after the ones nested in this one.
    after: usize,
}

/// A piece of the source a container's text keeps: `source[src.0..src.1]`, at `at` in the text.
struct Piece {
    src: (usize, usize),
    at: usize,
}

fn build_units<'t>(
    lang: &Language,
    rel_path: &str,
    source: &[u8],
    root: Node<'t>,
    defs: &[Def<'t>],
    opts: &ExtractOptions,
    parsed: &mut ParsedFile,
) -> Result<()> {
    let lines = &Lines::new(source);
    let places = places(lang, root, defs, source, lines);
    let cfg = &lang.config;
    let sep = cfg.separator.as_str();
    let limit = source
        .len()
        .saturating_mul(MAX_TEXT_FACTOR)
        .saturating_add(TEXT_ALLOWANCE);
    let mut budget = Budget {
        path: rel_path,
        left: limit,
        limit,
    };
    // Stack of (def index, path that qualifies its members) for the enclosing definitions.
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut drafts: Vec<Draft> = Vec::with_capacity(defs.len());
    let mut outers: Vec<Node<'_>> = Vec::with_capacity(defs.len());
    for (i, def) in defs.iter().enumerate() {
        let (start, end) = (def.node.start_byte(), def.node.end_byte());
        while let Some(&(top, _)) = stack.last() {
            let t = &defs[top].node;
            if t.start_byte() <= start && end <= t.end_byte() {
                break;
            }
            drafts[top].after = i;
            stack.pop();
        }
        if stack.len() >= MAX_UNIT_DEPTH {
            return Err(SyntaxError::TooComplex {
                path: rel_path.to_string(),
                reason: format!(
                    "definitions nested more than {MAX_UNIT_DEPTH} deep (line {})",
                    lines.row(start) + 1
                ),
            });
        }
        let parent_kind = stack.last().map(|&(p, _)| drafts[p].kind);
        // Nearest enclosing unit that qualifies names.
        let base = stack.iter().rev().find_map(|(_, path)| path.as_deref());

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
        let own_sep = match kind {
            UnitKind::Method if def.is_static => cfg.static_separator.as_str(),
            UnitKind::Method => cfg.method_separator.as_str(),
            _ => sep,
        };
        let local = match &def.scope {
            Some(scope) => format!("{scope}{own_sep}{}", def.name),
            None => def.name.clone(),
        };
        let path = match base {
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
        budget.spend(symbol.len())?;
        stack.push((i, cfg.qualify.contains(&kind).then_some(path)));

        let (outer, first, doc) = match places.get(i).and_then(Option::as_ref) {
            Some(p) => (p.outer, p.first, p.doc.clone()),
            None => (def.node, def.node, None),
        };
        let start_byte = first.start_byte();
        let end_byte = outer.end_byte().max(def.node.end_byte());
        let start_line = lines.row(start_byte) + 1;
        let mut end_line = lines.last_row(start_byte, outer.end_byte()) + 1;
        let def_line = (lines.row(def.name_byte) + 1).clamp(start_line, end_line.max(start_line));
        end_line = end_line.max(def_line);
        let (doc, doc_spans) = doc.unzip();
        budget.spend(doc.as_ref().map_or(0, String::len))?;
        drafts.push(Draft {
            kind,
            symbol,
            start_byte,
            end_byte,
            start_line,
            end_line,
            def_line,
            doc,
            doc_spans: doc_spans.unwrap_or_default(),
            after: defs.len(),
        });
        outers.push(outer);
    }

    for (i, d) in drafts.iter().enumerate() {
        let (code, pieces) = if d.kind.is_callable() {
            budget.spend(d.end_byte - d.start_byte)?;
            (lossy(source, d.start_byte, d.end_byte), None)
        } else {
            let (code, pieces) = container_text(source, lines, &drafts, i, &mut budget)?;
            (code, Some(pieces))
        };
        parsed.units.push(CodeUnit {
            path: rel_path.to_string(),
            language: cfg.name.clone(),
            kind: d.kind,
            name: defs[i].name.clone(),
            symbol: d.symbol.clone(),
            start_byte: d.start_byte,
            end_byte: d.end_byte,
            start_line: d.start_line,
            end_line: d.end_line,
            def_line: d.def_line,
            doc: d.doc.clone(),
            doc_spans: d.doc_spans.clone(),
            code,
        });
        if opts.graphs {
            let mut g = build_graph(lang, outers[i], d.start_byte, opts.max_nodes);
            if let Some(pieces) = pieces.filter(|p| p.len() > 1) {
                remap_spans(&mut g, &pieces, d.start_byte);
            }
            parsed.graphs.push(g);
        }
    }
    Ok(())
}

fn lossy(source: &[u8], start: usize, end: usize) -> String {
    String::from_utf8_lossy(source.get(start..end).unwrap_or_default()).into_owned()
}

/// The text of container `drafts[i]`: its span with every container nested in it (directly or
/// inside its functions) replaced by that container's definition line and [`ELISION_MARK`].
/// Also the pieces of the source the text keeps, to map graph spans onto the text.
/// A kept byte range of the source, and the header of the container elided after it.
type Kept = ((usize, usize), Option<(usize, usize)>);

fn container_text(
    source: &[u8],
    lines: &Lines,
    drafts: &[Draft],
    i: usize,
    budget: &mut Budget<'_>,
) -> Result<(String, Vec<Piece>)> {
    let d = &drafts[i];
    // (kept source range, elided header range) pairs.
    let mut kept: Vec<Kept> = Vec::new();
    let mut pos = d.start_byte;
    let mut j = i + 1;
    while j < d.after.min(drafts.len()) {
        let n = &drafts[j];
        if n.kind.is_callable() || n.start_byte < pos || n.end_byte > d.end_byte {
            j += 1;
            continue;
        }
        let line = lines.line_range(n.def_line.saturating_sub(1), source);
        let h0 = line.0.clamp(n.start_byte, n.end_byte);
        let mut h1 = line.1.clamp(h0, n.end_byte).min(h0 + ELIDED_HEADER_MAX);
        // Cut on a character boundary.
        while h1 > h0 && source.get(h1).is_some_and(|&b| b & 0xC0 == 0x80) {
            h1 -= 1;
        }
        kept.push(((pos, n.start_byte), Some((h0, h1))));
        pos = n.end_byte;
        j = n.after.max(j + 1);
    }
    kept.push(((pos, d.end_byte), None));
    let len: usize = kept
        .iter()
        .map(|((a, b), h)| b - a + h.map_or(0, |(h0, h1)| h1 - h0 + ELISION_MARK.len()))
        .sum();
    budget.spend(len)?;
    let mut code = String::with_capacity(len);
    let mut pieces = Vec::with_capacity(kept.len());
    for ((a, b), header) in kept {
        pieces.push(Piece {
            src: (a, b),
            at: code.len(),
        });
        code.push_str(&String::from_utf8_lossy(
            source.get(a..b).unwrap_or_default(),
        ));
        if let Some((h0, h1)) = header {
            code.push_str(&String::from_utf8_lossy(
                source.get(h0..h1).unwrap_or_default(),
            ));
            code.push_str(ELISION_MARK);
        }
    }
    Ok((code, pieces))
}

/// Moves graph spans (relative to `base` in the source) onto a container's text: a position in a
/// kept piece keeps its place in the piece, one inside an elided container goes to the end of
/// the piece before it (where the elided header starts).
fn remap_spans(g: &mut AstGraph, pieces: &[Piece], base: usize) {
    let map = |rel: u32| -> u32 {
        let p = base.saturating_add(rel as usize);
        let k = pieces.partition_point(|x| x.src.0 <= p).saturating_sub(1);
        let Some(piece) = pieces.get(k) else {
            return rel;
        };
        let off = p.clamp(piece.src.0, piece.src.1) - piece.src.0;
        u32::try_from(piece.at + off).unwrap_or(u32::MAX)
    };
    for span in &mut g.spans {
        *span = (map(span.0), map(span.1));
    }
}
