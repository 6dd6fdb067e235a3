//! Text helpers: line numbers, doc-comment cleanup, dedenting, type-name normalisation.

/// Line numbers of a source from byte offsets. A line ends at `\n`, `\r\n` or a lone `\r`
/// (old Mac files): tree-sitter's rows count only `\n`, so a file with `\r` endings would be
/// one line to it.
pub struct Lines {
    /// Byte offset where each line starts; `starts[0] == 0`.
    starts: Vec<usize>,
    len: usize,
}

impl Lines {
    pub fn new(source: &[u8]) -> Lines {
        let mut starts = vec![0];
        let mut i = 0;
        while i < source.len() {
            match source[i] {
                b'\n' => starts.push(i + 1),
                b'\r' if source.get(i + 1) == Some(&b'\n') => {
                    starts.push(i + 2);
                    i += 1;
                }
                b'\r' => starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        Lines {
            starts,
            len: source.len(),
        }
    }

    /// 0-based line of the byte at `byte` (the line of its line break for a break).
    pub fn row(&self, byte: usize) -> usize {
        self.starts
            .partition_point(|&s| s <= byte)
            .saturating_sub(1)
    }

    /// 0-based line of the last byte of `start..end`: the line of `end`, or the one before
    /// when `end` starts a line after `start`'s (the span ends with its line break).
    pub fn last_row(&self, start: usize, end: usize) -> usize {
        let row = self.row(end);
        if row > self.row(start) && self.starts.get(row) == Some(&end) {
            row - 1
        } else {
            row
        }
    }

    /// Byte range of 0-based line `row` of `source`, without its line break.
    pub fn line_range(&self, row: usize, source: &[u8]) -> (usize, usize) {
        let start = self.starts.get(row).copied().unwrap_or(self.len);
        let mut end = self.starts.get(row + 1).copied().unwrap_or(self.len);
        for b in [b'\n', b'\r'] {
            if end > start && source.get(end - 1) == Some(&b) {
                end -= 1;
            }
        }
        (start, end)
    }
}

/// Splits text into lines at `\n`, `\r\n` and a lone `\r` (`str::lines` keeps a lone `\r`).
pub fn split_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let t = rest?;
        match t.find(['\n', '\r']) {
            Some(i) => {
                let skip = if t[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&t[i + skip..]).filter(|r| !r.is_empty());
                Some(&t[..i])
            }
            None => {
                rest = None;
                (!t.is_empty()).then_some(t)
            }
        }
    })
}

/// Removes the common leading whitespace of all non-blank lines, and leading/trailing blank lines.
pub fn dedent(text: &str) -> String {
    let lines: Vec<&str> = split_lines(text).map(|l| l.trim_end()).collect();
    let margin = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let out: Vec<&str> = lines
        .iter()
        .map(|l| l.get(margin..).unwrap_or(""))
        .collect();
    trim_blank_lines(&out)
}

fn trim_blank_lines(lines: &[&str]) -> String {
    let start = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map_or(start, |e| e + 1);
    lines[start..end].join("\n")
}

/// Python's `inspect.cleandoc`: the first line is stripped, the others dedented together.
pub fn cleandoc(text: &str) -> String {
    let text = text.replace('\t', "        ");
    let lines: Vec<&str> = split_lines(&text).map(|l| l.trim_end()).collect();
    let Some((first, rest)) = lines.split_first() else {
        return String::new();
    };
    let margin = rest
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = vec![first.trim_start()];
    out.extend(rest.iter().map(|l| l.get(margin..).unwrap_or("")));
    trim_blank_lines(&out)
}

/// The content of a Python string literal used as a docstring: prefix and quotes removed.
pub fn docstring_content(literal: &str) -> String {
    let s = literal.trim_start_matches(|c: char| "rRuUbBfF".contains(c));
    for q in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = s.strip_prefix(q) {
            let inner = inner.strip_suffix(q).unwrap_or(inner);
            return cleandoc(inner);
        }
    }
    cleandoc(s)
}

/// Strips comment markers from one comment node's text. `markers` are the line-comment prefixes
/// that make a comment documentation; block comments (`/* */`, `/** */`) are handled generically.
pub fn strip_comment(text: &str, markers: &[String]) -> String {
    let text = text.trim();
    if let Some(body) = text.strip_prefix("/*") {
        let body = body.strip_suffix("*/").unwrap_or(body);
        let body = body.trim_start_matches(['*', '!']);
        let mut lines = Vec::new();
        for (i, line) in split_lines(body).enumerate() {
            let t = line.trim_start();
            // ` * text` continuation lines lose their star.
            let line = if i > 0 && t.starts_with('*') {
                t.strip_prefix("* ").unwrap_or(&t[1..])
            } else {
                line
            };
            lines.push(if i == 0 { line.trim_start() } else { line });
        }
        // The first line (after `/**`) has no indentation of its own; dedent the rest.
        let (first, rest) = lines
            .split_first()
            .map_or(("", &[][..]), |(f, r)| (f.trim_end(), r));
        let rest = dedent(&rest.join("\n"));
        return if first.trim().is_empty() {
            rest
        } else if rest.is_empty() {
            first.to_string()
        } else {
            format!("{first}\n{rest}")
        };
    }
    let mut out = String::new();
    for line in split_lines(text) {
        let t = line.trim_start();
        let stripped = markers
            .iter()
            .find_map(|m| t.strip_prefix(m.as_str()))
            .unwrap_or(t);
        out.push_str(stripped);
        out.push('\n');
    }
    out
}

/// Normalises a type as written in a receiver / impl header to the name used in symbols:
/// generic arguments (`<..>`, `[..]` after a name), references, pointers and whitespace are
/// removed, and only the last path segment is kept (`&'a mut foo::Bar<T>` -> `Bar`,
/// `*Stack[T]` -> `Stack`). Types without a name (`(A, B)`, `[T]`) are kept as written,
/// whitespace removed.
pub fn type_name(raw: &str, separator: &str) -> String {
    let compact: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::new();
    let mut depth = 0usize;
    let mut prev_ident = false;
    for c in compact.chars() {
        match c {
            '<' => depth += 1,
            '[' if prev_ident || depth > 0 => depth += 1,
            '>' | ']' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
        if depth == 0 {
            prev_ident = c.is_alphanumeric() || c == '_';
        }
    }
    let mut s = out.trim();
    loop {
        let before = s;
        s = s.trim_start_matches(['&', '*', ' ']);
        if s.starts_with('\'') {
            s = s.split_once(' ').map_or("", |(_, r)| r);
        }
        for kw in ["mut ", "const ", "dyn ", "impl "] {
            s = s.strip_prefix(kw).unwrap_or(s);
        }
        if s == before {
            break;
        }
    }
    let s = s.trim();
    if s.is_empty() {
        return compact.replace(' ', "");
    }
    if !s
        .chars()
        .all(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '.' || c == '\\' || c == '$')
    {
        return s.replace(' ', "");
    }
    last_segment(s, separator).to_string()
}

fn last_segment<'a>(s: &'a str, separator: &str) -> &'a str {
    s.rsplit(separator).next().unwrap_or(s)
}

/// Splits a possibly qualified name (`Foo<T>::bar`, `A::B`) into (scope, name), ignoring
/// separators inside generic arguments. Whitespace is removed.
pub fn split_qualified(raw: &str, separator: &str) -> (Option<String>, String) {
    let compact: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut plain = String::new();
    let mut depth = 0usize;
    for c in compact.chars() {
        match c {
            '<' if !plain.ends_with("operator") && !plain.ends_with('<') => depth += 1,
            '>' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    if plain.trim().is_empty() {
        return (None, compact);
    }
    let plain = plain.trim().to_string();
    // `operator<<`, `operator()`: never split inside an operator name.
    let search_end = plain.find("operator").unwrap_or(plain.len());
    match plain[..search_end].rfind(separator) {
        Some(i) if i > 0 => {
            let scope = plain[..i].trim().trim_start_matches(separator).to_string();
            (
                Some(scope).filter(|s| !s.is_empty()),
                plain[i + separator.len()..].trim().to_string(),
            )
        }
        Some(_) => (None, plain[separator.len()..].trim().to_string()),
        None => (None, plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert_eq!(type_name("Foo<T>", "::"), "Foo");
        assert_eq!(type_name("&'a mut foo::Bar<T, U>", "::"), "Bar");
        assert_eq!(type_name("*Stack[T]", "."), "Stack");
        assert_eq!(type_name("&T", "::"), "T");
        assert_eq!(type_name("[T]", "::"), "[T]");
        assert_eq!(type_name("(A, B)", "::"), "(A,B)");
        assert_eq!(type_name("dyn Error + Send", "::"), "Error+Send");
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            split_qualified("Foo::bar", "::"),
            (Some("Foo".into()), "bar".into())
        );
        assert_eq!(
            split_qualified("ns::Foo<A::B>::bar", "::"),
            (Some("ns::Foo".into()), "bar".into())
        );
        assert_eq!(
            split_qualified("Foo::operator<<", "::"),
            (Some("Foo".into()), "operator<<".into())
        );
        assert_eq!(
            split_qualified("Foo::~Foo", "::"),
            (Some("Foo".into()), "~Foo".into())
        );
        assert_eq!(split_qualified("::global", "::"), (None, "global".into()));
        assert_eq!(split_qualified("plain", "::"), (None, "plain".into()));
    }

    #[test]
    fn docs() {
        assert_eq!(
            docstring_content("\"\"\"Summary.\n\n    Body\n      more\n    \"\"\""),
            "Summary.\n\nBody\n  more"
        );
        assert_eq!(docstring_content("r'''x'''"), "x");
        let m = vec!["///".to_string(), "//".to_string()];
        assert_eq!(dedent(&strip_comment("/// a\n", &m)), "a");
        assert_eq!(
            strip_comment("/**\n * Adds.\n *\n * @param x y\n */", &m),
            "Adds.\n\n@param x y"
        );
        assert_eq!(strip_comment("/** One line. */", &m), "One line.");
    }
}
