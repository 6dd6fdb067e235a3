//! Documentation conventions per language: which comment is a function's documentation, and
//! which sentence of it is the query.
//!
//! # Design
//!
//! The syntax crate reads a unit's `doc` the way a *reader* of search results wants it: any
//! comment block touching the definition, markers removed (in JavaScript a `//` comment above a
//! function is shown as its doc). Training wants less and more: only what the language's own
//! documentation tools read, and the *description* in it, without tags, markup or the name
//! repeated. So the miner hands this module the raw text of every comment the syntax crate took
//! as doc ([`CodeUnit::doc_spans`](gnn_coder_syntax::CodeUnit)), and [`doc_query`] applies the
//! rules of the unit's [`DocStyle`]:
//!
//! | style | languages | documentation | description | no query when |
//! |---|---|---|---|---|
//! | [`DocStyle::Docstring`] | Python | the docstring | all of it | — |
//! | [`DocStyle::RustDoc`] | Rust | `///` lines (the syntax crate reads no others) | all of it | — |
//! | [`DocStyle::Block`] | JavaScript, TypeScript, Java, PHP | the last `/** … */` block of the run (JSDoc, TSDoc, Javadoc, PHPDoc; not `/***` banners or `//` comments) | lines before the first `@tag`, else `@description` / `@desc` / `@summary` / `@classdesc`; `{@link x\|text}` / `{@code x}` resolved; HTML tags dropped, entities decoded | `@deprecated`, only tags, `{@inheritDoc}`, a file header (`@file`, `@module`, `@license`, …) |
//! | [`DocStyle::Go`] | Go | the `//` group above (go/doc's rule) minus directives (`//go:…`, `//line`, `//export`, `//nolint`, `// +build`) | all of it; a leading `Name ` (or `Recv.Name `) is dropped and the rest capitalised, unless the name is the doc's own verb (`Find the …`) | a `Deprecated:` paragraph; `Name is a wrapper/alias …` |
//! | [`DocStyle::Ruby`] | Ruby | the `#` lines above (YARD, RDoc) | lines before the first YARD `@tag`; an RDoc `:call-seq:` block skipped | `@deprecated`, `:nodoc:`, only tags |
//! | [`DocStyle::Doxygen`] | C, C++ | the last run of Doxygen comments: `/** */`, `/*! */`, `///`, `//!` (plain `//` and `/* */` are not read by Doxygen unless configured) | `\brief` / `@brief` text and what follows up to the first other command (`\param`, `@return`, …); `\c x`, `\p x`, `@a x` become `x`; structural lines (`\fn …`, `\file`) dropped | `\deprecated`, only commands |
//!
//! Every style but Python's and Rust's also takes the first sentence with
//! [`first_sentence_ml`] (which does not end at `e.g.`, `i.e.`, `etc.`, `vs.`), drops a leading
//! `name:` / `name -` / `name() -` (kernel-doc, Doxygen habits) and refuses text that is not
//! prose (rulers, `For example:` and the like, under 75% letters and spaces). These are the rules
//! `../shared/bench/mine.py` applies to the benchmarks of the same languages, so that training
//! queries look like the questions they are measured on. Python and Rust queries are left
//! exactly as before (mine.py's `first_sentence`, character for character): the shipped
//! training data must not move.

use gnn_coder_syntax::split_lines as lines_of;

use crate::mine::{Drop, first_sentence, first_sentence_where};

/// How a language writes documentation (see the table in the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStyle {
    Docstring,
    RustDoc,
    Block,
    Go,
    Ruby,
    Doxygen,
    /// A language without a known convention: the syntax crate's doc, first sentence.
    Plain,
}

/// The documentation style of a registered language name.
pub fn doc_style(language: &str) -> DocStyle {
    match language {
        "python" => DocStyle::Docstring,
        "rust" => DocStyle::RustDoc,
        "javascript" | "typescript" | "tsx" | "java" | "php" => DocStyle::Block,
        "go" => DocStyle::Go,
        "ruby" => DocStyle::Ruby,
        "c" | "cpp" => DocStyle::Doxygen,
        _ => DocStyle::Plain,
    }
}

/// Whether doc comments of this language need their raw text (everything but Python and Rust).
pub fn needs_raw(language: &str) -> bool {
    !matches!(doc_style(language), DocStyle::Docstring | DocStyle::RustDoc)
}

/// The query of a unit's documentation under its language's conventions.
///
/// `doc` is the syntax crate's doc text, `raw` the source text of each of its doc spans in
/// source order (only read for the styles that need it, [`needs_raw`]), `name` the unit's
/// short name. Returns the query, or why the documentation gives none.
pub fn doc_query(language: &str, doc: &str, raw: &[&str], name: &str) -> Result<String, Drop> {
    let style = doc_style(language);
    let q = match style {
        DocStyle::Docstring | DocStyle::RustDoc => return Ok(first_sentence(doc)),
        DocStyle::Block => block_query(raw)?,
        DocStyle::Go => go_query(&go_text(raw), name)?,
        DocStyle::Ruby => ruby_query(raw)?,
        DocStyle::Doxygen => doxygen_query(raw)?,
        DocStyle::Plain => first_sentence_ml(doc),
    };
    let q = strip_name_prefix(&q, name);
    if q.is_empty() {
        return Err(Drop::NoDescription);
    }
    if !is_prose(&q) {
        return Err(Drop::NotProse);
    }
    Ok(q)
}

// ------------------------------------------------------------------------------------------
// Sentences and prose

/// [`first_sentence`] for the later languages (mine.py's `first_sentence_ml`): the first
/// paragraph, lines joined, cut after the first `.`, `!` or `?` followed by whitespace or the
/// end, except the `.` of `e.g.`, `i.e.`, `etc.`, `vs.` (any case).
pub fn first_sentence_ml(doc: &str) -> String {
    first_sentence_where(doc, |head| {
        let head = head.to_lowercase();
        !["e.g", "i.e", "etc", "vs"].iter().any(|a| {
            head.ends_with(a)
                && head[..head.len() - a.len()]
                    .chars()
                    .next_back()
                    .is_none_or(|p| !(p.is_alphanumeric() || p == '_'))
        })
    })
}

/// Drops a leading `name:` / `name -` / `name() –` and capitalises what follows.
fn strip_name_prefix(q: &str, name: &str) -> String {
    if name.is_empty() {
        return q.to_string();
    }
    let Some(rest) = q.strip_prefix(name) else {
        return q.to_string();
    };
    let rest = rest.strip_prefix("()").unwrap_or(rest).trim_start();
    let Some(sep) = rest
        .chars()
        .next()
        .filter(|c| matches!(c, ':' | ';' | '-' | '–' | '—'))
    else {
        return q.to_string();
    };
    let after = &rest[sep.len_utf8()..];
    if !after.starts_with(char::is_whitespace) || after.trim().is_empty() {
        return q.to_string();
    }
    capitalise(after.trim_start())
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// mine.py's `NOT_PROSE` and its 75% rule: no run of three ruler characters, no
/// `For example:`-style opening, and at least 75% letters and spaces.
pub fn is_prose(q: &str) -> bool {
    let mut run = 0;
    for c in q.chars() {
        if "-=#_*~|/\\+".contains(c) {
            run += 1;
            if run >= 3 {
                return false;
            }
        } else {
            run = 0;
        }
    }
    let lower = q.to_lowercase();
    if [
        "for example",
        "for instance",
        "example",
        "e.g.",
        "usage",
        "note:",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
    {
        return false;
    }
    let total = q.chars().count();
    let prose = q.chars().filter(|&c| c.is_alphabetic() || c == ' ').count();
    prose * 4 >= total * 3
}

// ------------------------------------------------------------------------------------------
// Markup

/// Removes HTML tags (`<p>`, `<code>`, `</b>`, `<br/>`, …): block tags become paragraph breaks,
/// other tags vanish; text that only looks like a tag (`a < b`, `List<T>`) stays.
fn drop_html(s: &str) -> String {
    const BLOCK: &[&str] = &[
        "p",
        "br",
        "hr",
        "ul",
        "ol",
        "li",
        "pre",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "dl",
        "dt",
        "dd",
        "table",
        "tr",
        "td",
        "th",
        "div",
    ];
    const INLINE: &[&str] = &[
        "code", "b", "i", "em", "strong", "a", "tt", "var", "sup", "sub", "span", "font", "small",
        "big", "u", "s", "kbd", "samp", "cite", "abbr", "dfn", "q", "ins", "del", "mark",
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            return out;
        };
        let inner = &tail[1..end];
        let inner = inner.strip_prefix('/').unwrap_or(inner);
        let inner = inner.strip_suffix('/').unwrap_or(inner);
        let tag: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let after_tag = &inner[tag.len().min(inner.len())..];
        let well_formed = !tag.is_empty()
            && (after_tag.is_empty() || after_tag.starts_with(char::is_whitespace))
            && !inner.contains('<');
        if well_formed && BLOCK.contains(&tag.as_str()) {
            out.push_str("\n\n");
            rest = &tail[end + 1..];
        } else if well_formed && INLINE.contains(&tag.as_str()) {
            rest = &tail[end + 1..];
        } else {
            out.push('<');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Decodes the HTML entities docs use (`&lt;`, `&amp;`, `&nbsp;`, `&#39;`, `&#x2014;`, …).
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail[1..].find(';').filter(|&e| e <= 10).map(|e| e + 1);
        let decoded = end.and_then(|e| {
            let name = &tail[1..e];
            match name {
                "lt" => Some('<'),
                "gt" => Some('>'),
                "amp" => Some('&'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('—'),
                "ndash" => Some('–'),
                _ => {
                    let num = name.strip_prefix('#')?;
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => num.parse().ok()?,
                    };
                    char::from_u32(code).map(|c| if c == '\u{a0}' { ' ' } else { c })
                }
            }
            .map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &tail[e + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Resolves inline tags `{@link target text}`, `{@link target|text}`, `{@code x}`,
/// `{@linkplain x}`; `None` when the doc only inherits (`{@inheritDoc}`).
fn inline_tags(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{@") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 2..];
        let Some(end) = tail
            .find(['{', '}'])
            .filter(|&e| tail.as_bytes()[e] == b'}')
        else {
            out.push_str("{@");
            rest = tail;
            continue;
        };
        let inner = &tail[..end];
        let tag_len = inner
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (tag, body) = (&inner[..tag_len], inner[tag_len..].trim());
        if tag.eq_ignore_ascii_case("inheritdoc") {
            return None;
        }
        let text = if tag.starts_with("link") || tag == "see" {
            if let Some((_, t)) = body.split_once('|') {
                t.trim().to_string()
            } else {
                match body.split_once(char::is_whitespace) {
                    Some((target, t)) if !target.ends_with(',') => t.trim().to_string(),
                    _ => {
                        let target = body.split('(').next().unwrap_or("");
                        target.replace('#', ".").trim_matches('.').to_string()
                    }
                }
            }
        } else {
            body.to_string()
        };
        out.push_str(&text);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// A line `@tag rest` (or `\tag rest` when `backslash`): the tag, lower-cased, and the rest.
fn tag_line(line: &str, backslash: bool) -> Option<(String, &str)> {
    let body = line
        .strip_prefix('@')
        .or_else(|| backslash.then(|| line.strip_prefix('\\')).flatten())?;
    let n = body
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    if n == 0 {
        return None;
    }
    Some((body[..n].to_ascii_lowercase(), body[n..].trim_start()))
}

/// The lines of a `/** … */` or `/*! … */` block without its markers and leading `*`.
fn block_lines(text: &str) -> Vec<String> {
    let body = text.get(3..).unwrap_or("");
    let body = body.strip_suffix("*/").unwrap_or(body);
    let body = body.trim_end_matches('*');
    lines_of(body)
        .map(|l| {
            let l = l.trim();
            let l = match l.strip_prefix('*') {
                Some(r) => r.strip_prefix(' ').unwrap_or(r),
                None => l,
            };
            // Boxed comments: " * text   *".
            let t = l.trim_end();
            let boxed = t.trim_end_matches('*');
            if boxed.len() < t.len() && boxed.ends_with(char::is_whitespace) {
                boxed.trim_end().to_string()
            } else {
                t.to_string()
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------------
// Styles

/// Tags whose presence in a `/** */` block means it documents a file or module, not the unit.
const FILE_TAGS: &[&str] = &[
    "file",
    "fileoverview",
    "overview",
    "module",
    "license",
    "preserve",
    "copyright",
    "packagedocumentation",
];

fn is_jsdoc(t: &str) -> bool {
    t.starts_with("/**") && !t.starts_with("/***") && !t.starts_with("/**/")
}

/// JSDoc, TSDoc, Javadoc and PHPDoc.
fn block_query(raw: &[&str]) -> Result<String, Drop> {
    let Some(text) = raw.iter().rev().map(|t| t.trim()).find(|t| is_jsdoc(t)) else {
        return Err(Drop::NotDocComment);
    };
    let mut desc: Vec<String> = Vec::new();
    let mut tags: Vec<(String, String)> = Vec::new();
    for l in block_lines(text) {
        match tag_line(&l, false) {
            Some((tag, rest)) => tags.push((tag, rest.to_string())),
            None if tags.is_empty() => desc.push(l),
            None => {
                if let Some(last) = tags.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(&l);
                }
            }
        }
    }
    if tags.iter().any(|(t, _)| FILE_TAGS.contains(&t.as_str())) {
        return Err(Drop::NotDocComment);
    }
    if tags.iter().any(|(t, _)| t == "deprecated") {
        return Err(Drop::Deprecated);
    }
    let mut d = desc.join("\n").trim().to_string();
    if d.is_empty()
        && let Some((_, v)) = ["description", "desc", "summary", "classdesc"]
            .iter()
            .find_map(|want| tags.iter().find(|(t, _)| t == want))
    {
        d = v.trim().to_string();
    }
    if d.is_empty() {
        return Err(Drop::NoDescription);
    }
    let d = inline_tags(&d).ok_or(Drop::NoDescription)?;
    let d = decode_entities(&drop_html(&d));
    let q = first_sentence_ml(&d);
    if q.contains("{@") || q.contains("*/") {
        return Err(Drop::NoDescription);
    }
    Ok(q)
}

/// A Go compiler or tool directive line, which go/doc leaves out of the documentation.
fn go_directive(line: &str) -> bool {
    let Some(r) = line.strip_prefix("//") else {
        return false;
    };
    if ["go:", "line ", "extern ", "export ", "nolint"]
        .iter()
        .any(|p| r.starts_with(p))
        || r.trim_start().starts_with("+build")
    {
        return true;
    }
    // `//lint:ignore`, `//sys:x`: a lower-case word, a colon, no space.
    let w = r
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .unwrap_or(r.len());
    w > 0
        && r[w..].starts_with(':')
        && r[w + 1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// The text of a Go comment group: `// ` markers off, directives dropped.
fn go_text(raw: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    for t in raw {
        let t = t.trim();
        if let Some(block) = t.strip_prefix("/*") {
            let block = block.strip_suffix("*/").unwrap_or(block);
            for l in lines_of(block) {
                let l = l.trim_start();
                let l = l
                    .strip_prefix('*')
                    .map_or(l, |r| r.strip_prefix(' ').unwrap_or(r));
                out.push(l.to_string());
            }
            continue;
        }
        for line in lines_of(t) {
            let line = line.trim();
            if go_directive(line) {
                continue;
            }
            let l = line.strip_prefix("//").unwrap_or(line);
            out.push(l.strip_prefix(' ').unwrap_or(l).to_string());
        }
    }
    out.join("\n").trim().to_string()
}

/// Words after which a Go doc's leading name is the sentence's verb, not the declared name
/// (`Find the …`): mine.py's `GO_NAME_IS_VERB`.
const GO_NAME_IS_VERB: &[&str] = &[
    "the", "a", "an", "this", "that", "these", "those", "all", "any", "each", "every", "some",
    "given", "its", "their", "it", "them", "one", "to", "and", "or", "if", "whether", "from",
    "for", "with", "by", "in", "into", "on", "at", "of", "up", "out", "as", "new",
];

/// After the name is dropped: `Is a wrapper …`, `Returns an alias …` (SKIP_START's cases).
fn go_after_name_skips(q: &str) -> bool {
    let lower = q.to_lowercase();
    let mut words = lower.split(' ');
    if !matches!(
        words.next(),
        Some("is" | "are" | "calls" | "returns" | "does")
    ) {
        return false;
    }
    let mut rest: &str = lower.split_once(' ').map_or("", |(_, r)| r);
    for art in ["a ", "an ", "the ", "just "] {
        if let Some(r) = rest.strip_prefix(art) {
            rest = r;
            break;
        }
    }
    [
        "wrapper",
        "alias",
        "shorthand",
        "shortcut",
        "helper",
        "convenience",
        "synonym",
        "same as",
        "equivalent",
        "like ",
        "deprecated",
        "implementation of",
    ]
    .iter()
    .any(|p| rest.starts_with(p))
        || rest
            .strip_prefix("implements ")
            .is_some_and(|r| !r.trim_end_matches('.').contains(char::is_whitespace))
}

/// Go: drops the leading declared name (`Foo returns …` → `Returns …`), see the module docs.
fn go_query(doc: &str, name: &str) -> Result<String, Drop> {
    if doc.is_empty() {
        return Err(Drop::NoDescription);
    }
    if lines_of(doc).any(|l| l.trim_start().starts_with("Deprecated:")) {
        return Err(Drop::Deprecated);
    }
    let q = first_sentence_ml(doc);
    // Optional `Recv.` / `(*Recv).` before the name.
    let mut s = q.as_str();
    if let Some((head, tail)) = s.split_once('.') {
        let recv = head.trim_start_matches(['*', '(']).trim_end_matches(')');
        if !recv.is_empty()
            && recv
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '*')
            && tail.starts_with(name)
        {
            s = tail;
        }
    }
    let Some(after) = s.strip_prefix(name) else {
        return Ok(q);
    };
    if !after.starts_with(char::is_whitespace) {
        return Ok(q);
    }
    let mut after = after.trim_start();
    // `Name (Recv) does …`
    if let Some(r) = after.strip_prefix('(')
        && let Some(close) = r.find(')')
        && !r[..close].contains('(')
        && r[close + 1..].starts_with(char::is_whitespace)
    {
        after = r[close + 1..].trim_start();
    }
    let next = after.split_whitespace().next().unwrap_or("").to_lowercase();
    if after.is_empty() || GO_NAME_IS_VERB.contains(&next.as_str()) {
        return Ok(q);
    }
    let q = capitalise(after);
    if go_after_name_skips(&q) {
        return Err(Drop::QuerySkipStart);
    }
    Ok(q)
}

/// Ruby: YARD and RDoc in `#` comments.
fn ruby_query(raw: &[&str]) -> Result<String, Drop> {
    let mut lines: Vec<&str> = Vec::new();
    for t in raw {
        for l in lines_of(t) {
            let l = l.trim();
            let l = l.trim_start_matches('#');
            lines.push(l.strip_prefix(' ').unwrap_or(l));
        }
    }
    let mut desc: Vec<&str> = Vec::new();
    let mut in_call_seq = false;
    let mut tagged = false;
    for l in &lines {
        let t = l.trim();
        if t.contains(":nodoc:") {
            return Err(Drop::NotDocComment);
        }
        if t.starts_with(":call-seq:") {
            in_call_seq = true;
            continue;
        }
        if in_call_seq {
            in_call_seq = !t.is_empty();
            continue;
        }
        if let Some((tag, _)) = tag_line(t, false) {
            if tag == "deprecated" {
                return Err(Drop::Deprecated);
            }
            tagged = true;
            continue;
        }
        if !tagged {
            desc.push(l);
        }
    }
    let d = desc.join("\n");
    let d = gnn_coder_syntax::dedent(&d);
    if d.trim().is_empty() {
        return Err(Drop::NoDescription);
    }
    Ok(first_sentence_ml(&d))
}

fn is_doxygen(t: &str) -> bool {
    (t.starts_with("/**") && !t.starts_with("/***") && !t.starts_with("/**/"))
        || t.starts_with("/*!")
        || (t.starts_with("///") && !t.starts_with("////"))
        || t.starts_with("//!")
}

/// Doxygen commands that only name what is documented (`\fn f()`, `\file`): dropped lines.
const DOXYGEN_STRUCTURAL: &[&str] = &[
    "fn",
    "file",
    "def",
    "struct",
    "class",
    "union",
    "enum",
    "typedef",
    "var",
    "namespace",
    "ingroup",
    "addtogroup",
    "defgroup",
    "internal",
    "endinternal",
    "{",
    "}",
];

/// Doxygen inline commands whose argument is the text (`\c name`, `\p arg`, `@a x`).
fn doxygen_inline(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['\\', '@']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let cmd = ["c ", "p ", "a ", "e ", "b ", "em ", "ref "]
            .iter()
            .find(|c| tail.starts_with(*c));
        match cmd {
            Some(c) => rest = &tail[c.len()..],
            None => {
                out.push_str(&rest[i..i + 1]);
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// C and C++: Doxygen comments.
fn doxygen_query(raw: &[&str]) -> Result<String, Drop> {
    // The last run of Doxygen comments (line comments of one run arrive one span each).
    let docs: Vec<&str> = raw
        .iter()
        .rev()
        .map(|t| t.trim())
        .take_while(|t| is_doxygen(t))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if docs.is_empty() {
        return Err(Drop::NotDocComment);
    }
    let mut lines: Vec<String> = Vec::new();
    for t in &docs {
        if t.starts_with("/*") {
            lines.extend(block_lines(t));
        } else {
            for l in lines_of(t) {
                let l = l.trim();
                let l = l
                    .strip_prefix("///")
                    .or_else(|| l.strip_prefix("//!"))
                    .unwrap_or(l);
                let l = l.strip_prefix('<').unwrap_or(l);
                lines.push(l.strip_prefix(' ').unwrap_or(l).to_string());
            }
        }
    }
    let mut desc: Vec<String> = Vec::new();
    let mut ended = false;
    for l in &lines {
        let t = l.trim();
        match tag_line(t, true) {
            Some((tag, rest)) => match tag.as_str() {
                "deprecated" => return Err(Drop::Deprecated),
                "brief" | "short" | "details" => {
                    if !ended {
                        desc.push(rest.to_string());
                    }
                }
                t if DOXYGEN_STRUCTURAL.contains(&t) => {}
                _ => ended = true,
            },
            None if !ended => desc.push(l.clone()),
            None => {}
        }
    }
    let d = desc.join("\n");
    let d = decode_entities(&drop_html(&doxygen_inline(&d)));
    if d.trim().is_empty() {
        return Err(Drop::NoDescription);
    }
    Ok(first_sentence_ml(&d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sentence_ml_skips_abbreviations() {
        assert_eq!(
            first_sentence_ml("Parses values, e.g. numbers. More."),
            "Parses values, e.g. numbers."
        );
        assert_eq!(
            first_sentence_ml("Reads a file, etc. and more.\nSecond line."),
            "Reads a file, etc. and more."
        );
        assert_eq!(first_sentence_ml("No end"), "No end");
        // `dvs.` is not `vs.`.
        assert_eq!(first_sentence_ml("Set dvs. Then x."), "Set dvs.");
    }

    #[test]
    fn html_and_entities() {
        assert_eq!(
            decode_entities(&drop_html("Returns <code>a &lt; b</code> &amp; more")),
            "Returns a < b & more"
        );
        assert_eq!(drop_html("List<T> of a < b"), "List<T> of a < b");
        assert_eq!(drop_html("One.<p>Two."), "One.\n\nTwo.");
        assert_eq!(
            decode_entities("a &#x2014; b &#160;c &bogus; d"),
            "a — b  c &bogus; d"
        );
    }

    #[test]
    fn inline_tag_forms() {
        assert_eq!(
            inline_tags("Uses {@link Foo#bar(int)} and {@code x + 1}.").as_deref(),
            Some("Uses Foo.bar and x + 1.")
        );
        assert_eq!(
            inline_tags("See {@link Foo the foo} or {@link Bar|bar}.").as_deref(),
            Some("See the foo or bar.")
        );
        assert_eq!(inline_tags("{@inheritDoc}"), None);
    }

    #[test]
    fn name_prefix() {
        assert_eq!(
            strip_name_prefix("parse_args() - parses the command line", "parse_args"),
            "Parses the command line"
        );
        assert_eq!(strip_name_prefix("render: draws it", "render"), "Draws it");
        assert_eq!(
            strip_name_prefix("render it fast", "render"),
            "render it fast"
        );
    }

    #[test]
    fn prose() {
        assert!(is_prose("Returns the sum of two numbers."));
        assert!(!is_prose("=== Section ==="));
        assert!(!is_prose("For example: foo(1, 2)"));
        assert!(!is_prose("x(1,2) => [3,4] {5}"));
    }

    #[test]
    fn go_directives() {
        assert!(go_directive("//go:noinline"));
        assert!(go_directive("//nolint:errcheck"));
        assert!(go_directive("//lint:ignore SA1019 reason"));
        assert!(go_directive("// +build linux"));
        assert!(!go_directive("// Note: this is prose."));
        assert!(!go_directive("// http://example.com"));
    }
}
