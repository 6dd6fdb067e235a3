//! `grammars/<lang>/language.toml`: per-language settings, parsed at startup.
//!
//! The file is a small subset of TOML, parsed here to avoid a dependency: one `key = value` per
//! line, where a value is a `"string"` (with `\"`, `\\`, `\n`, `\t` escapes) or a
//! single-line array of strings `["a", "b"]`. `#` starts a comment outside strings. Unknown keys
//! are rejected so typos in the data are caught by the tests.

use crate::UnitKind;

/// Where a definition's documentation lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocStyle {
    /// The first statement of the body is a string literal (Python).
    Docstring,
    /// A block of comments directly before the definition (most languages).
    Comments,
    /// Documentation is not extracted.
    None,
}

/// Parsed `language.toml`.
#[derive(Debug, Clone)]
pub struct LanguageConfig {
    /// Registered language name (`python`, `tsx`, ...).
    pub name: String,
    /// File extensions without the dot, matched case-insensitively.
    pub extensions: Vec<String>,
    /// Joins a container's name and a nested definition's name (`.` or `::`).
    pub separator: String,
    /// Separator before a method name (Ruby `#`); defaults to `separator`.
    pub method_separator: String,
    /// Separator before a static/singleton method name (Ruby `.`); defaults to `method_separator`.
    pub static_separator: String,
    /// Unit kinds whose names qualify the symbols of definitions nested inside them.
    pub qualify: Vec<UnitKind>,
    /// A function whose nearest enclosing unit has one of these kinds is a method.
    pub method_containers: Vec<UnitKind>,
    /// Parent node kinds that wrap a definition and belong to its span (`decorated_definition`,
    /// `export_statement`, `template_declaration`).
    pub wrappers: Vec<String>,
    /// Preceding sibling node kinds that belong to the span (Rust `attribute_item`, TS `decorator`).
    pub prefixes: Vec<String>,
    /// How documentation is found.
    pub doc: DocStyle,
    /// For [`DocStyle::Docstring`]: the field of the definition holding its body.
    pub doc_body_field: String,
    /// Node kinds that are comments.
    pub comment_kinds: Vec<String>,
    /// For [`DocStyle::Comments`]: comment prefixes that make a comment documentation
    /// (`///`, `/**`, `//`, `#`). Block comments (`/* */`) are recognised by their `/*` start.
    pub doc_markers: Vec<String>,
}

#[derive(Debug)]
enum Value {
    Str(String),
    List(Vec<String>),
}

fn parse_string(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, '"')) => {}
        _ => return Err(format!("expected a string at `{s}`")),
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                other => return Err(format!("unsupported escape {other:?}")),
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

fn strip_comment(rest: &str) -> Result<(), String> {
    let rest = rest.trim_start();
    if rest.is_empty() || rest.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected `{rest}` after value"))
    }
}

fn parse_value(v: &str) -> Result<Value, String> {
    let v = v.trim_start();
    if v.starts_with('"') {
        let (s, rest) = parse_string(v)?;
        strip_comment(rest)?;
        return Ok(Value::Str(s));
    }
    if let Some(mut rest) = v.strip_prefix('[') {
        let mut items = Vec::new();
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(']') {
                strip_comment(r)?;
                return Ok(Value::List(items));
            }
            let (s, r) = parse_string(rest)?;
            items.push(s);
            rest = r.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with(']') {
                return Err(format!("expected `,` or `]` at `{rest}`"));
            }
        }
    }
    Err(format!("unsupported value `{v}`"))
}

/// Parses a unit kind as written in data files and capture names (`function`, `class`, ...).
pub fn parse_kind(s: &str) -> Option<UnitKind> {
    UnitKind::parse(s)
}

fn kinds(list: Vec<String>) -> Result<Vec<UnitKind>, String> {
    list.iter()
        .map(|k| parse_kind(k).ok_or_else(|| format!("unknown unit kind `{k}`")))
        .collect()
}

impl LanguageConfig {
    /// Parses the text of a `language.toml` file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut cfg = LanguageConfig {
            name: String::new(),
            extensions: Vec::new(),
            separator: ".".into(),
            method_separator: String::new(),
            static_separator: String::new(),
            qualify: Vec::new(),
            method_containers: Vec::new(),
            wrappers: Vec::new(),
            prefixes: Vec::new(),
            doc: DocStyle::None,
            doc_body_field: "body".into(),
            comment_kinds: vec!["comment".into()],
            doc_markers: Vec::new(),
        };
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |m: String| format!("line {}: {m}", lineno + 1);
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err("expected `key = value`".into()))?;
            let value = parse_value(value).map_err(err)?;
            let key = key.trim();
            let wrong = || err(format!("wrong value type for `{key}`"));
            match (key, value) {
                ("name", Value::Str(s)) => cfg.name = s,
                ("extensions", Value::List(l)) => {
                    cfg.extensions = l
                        .into_iter()
                        .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                        .collect()
                }
                ("separator", Value::Str(s)) => cfg.separator = s,
                ("method_separator", Value::Str(s)) => cfg.method_separator = s,
                ("static_separator", Value::Str(s)) => cfg.static_separator = s,
                ("qualify", Value::List(l)) => cfg.qualify = kinds(l).map_err(err)?,
                ("method_containers", Value::List(l)) => {
                    cfg.method_containers = kinds(l).map_err(err)?
                }
                ("wrappers", Value::List(l)) => cfg.wrappers = l,
                ("prefixes", Value::List(l)) => cfg.prefixes = l,
                ("doc", Value::Str(s)) => {
                    cfg.doc = match s.as_str() {
                        "docstring" => DocStyle::Docstring,
                        "comments" => DocStyle::Comments,
                        "none" => DocStyle::None,
                        _ => return Err(err(format!("unknown doc style `{s}`"))),
                    }
                }
                ("doc_body_field", Value::Str(s)) => cfg.doc_body_field = s,
                ("comment_kinds", Value::List(l)) => cfg.comment_kinds = l,
                ("doc_markers", Value::List(l)) => cfg.doc_markers = l,
                (
                    "name" | "extensions" | "separator" | "method_separator" | "static_separator"
                    | "qualify" | "method_containers" | "wrappers" | "prefixes" | "doc"
                    | "doc_body_field" | "comment_kinds" | "doc_markers",
                    _,
                ) => return Err(wrong()),
                (other, _) => return Err(err(format!("unknown key `{other}`"))),
            }
        }
        if cfg.name.is_empty() {
            return Err("missing `name`".into());
        }
        if cfg.separator.is_empty() {
            return Err("`separator` must not be empty".into());
        }
        if cfg.method_separator.is_empty() {
            cfg.method_separator = cfg.separator.clone();
        }
        if cfg.static_separator.is_empty() {
            cfg.static_separator = cfg.method_separator.clone();
        }
        // Longest markers first so `///` wins over `//`.
        cfg.doc_markers.sort_by_key(|m| std::cmp::Reverse(m.len()));
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subset() {
        let c = LanguageConfig::parse(
            "# comment\nname = \"x\" # trailing\nextensions = [\".Py\", \"pyi\"]\nseparator = \"::\"\n\
             qualify = [\"class\", \"function\"]\ndoc = \"comments\"\ndoc_markers = [\"//\", \"///\"]\n",
        )
        .unwrap();
        assert_eq!(c.name, "x");
        assert_eq!(c.extensions, ["py", "pyi"]);
        assert_eq!(c.method_separator, "::");
        assert_eq!(c.qualify, [UnitKind::Class, UnitKind::Function]);
        assert_eq!(c.doc, DocStyle::Comments);
        assert_eq!(c.doc_markers, ["///", "//"]);
    }

    #[test]
    fn rejects_bad_data() {
        assert!(LanguageConfig::parse("name = \"x\"\nbogus = \"y\"").is_err());
        assert!(LanguageConfig::parse("name = \"x\"\nqualify = [\"klass\"]").is_err());
        assert!(LanguageConfig::parse("name = [\"x\"]").is_err());
        assert!(LanguageConfig::parse("name = \"x").is_err());
        assert!(LanguageConfig::parse("separator = \".\"").is_err());
    }
}
