//! The data this crate hands to the rest of the engine. These types are a contract shared with the
//! index, model and CLI crates: change them only together with their users.

use serde::{Deserialize, Serialize};

/// What kind of definition a unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    Function,
    Method,
    Class,
    Struct,
    Enum,
    Trait,
    Interface,
    Impl,
    Module,
}

impl UnitKind {
    /// Every kind, in declaration order.
    pub const ALL: [UnitKind; 9] = [
        UnitKind::Function,
        UnitKind::Method,
        UnitKind::Class,
        UnitKind::Struct,
        UnitKind::Enum,
        UnitKind::Trait,
        UnitKind::Interface,
        UnitKind::Impl,
        UnitKind::Module,
    ];

    /// The kind named `s` as [`UnitKind::as_str`] writes it (`function`, `class`, ...).
    pub fn parse(s: &str) -> Option<UnitKind> {
        UnitKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Function => "function",
            UnitKind::Method => "method",
            UnitKind::Class => "class",
            UnitKind::Struct => "struct",
            UnitKind::Enum => "enum",
            UnitKind::Trait => "trait",
            UnitKind::Interface => "interface",
            UnitKind::Impl => "impl",
            UnitKind::Module => "module",
        }
    }

    /// Functions and methods: the units that code search answers with by default.
    pub fn is_callable(self) -> bool {
        matches!(self, UnitKind::Function | UnitKind::Method)
    }
}

/// One definition found in a source file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeUnit {
    /// Path relative to the indexed root, with `/` separators.
    pub path: String,
    /// Language name as registered (e.g. "python", "rust", "tsx").
    pub language: String,
    pub kind: UnitKind,
    /// Bare name (`method`).
    pub name: String,
    /// Qualified symbol in the language's natural form (`Class.method`, `Type::method`).
    pub symbol: String,
    /// Byte span in the file, `start_byte..end_byte`; may start at decorators/attributes.
    pub start_byte: usize,
    pub end_byte: usize,
    /// 1-based inclusive line span; contains the `def`/`fn` line.
    pub start_line: usize,
    pub end_line: usize,
    /// 1-based line of the definition's own keyword/name (the `def`/`fn` line).
    pub def_line: usize,
    /// Docstring / doc comment text, markers stripped (`///`, `"""`, `/** */`, `#`), if any.
    pub doc: Option<String>,
    /// Where `doc` was read from: byte ranges in the file (absolute, like `start_byte`), in source
    /// order: the docstring statement (Python), or each doc comment node (comment languages; an
    /// attribute between two doc comments is not covered). Empty when there is no doc. The ranges
    /// may lie before `start_byte` (a doc comment above the span) or inside the span (a docstring,
    /// or a doc comment after an attribute); removing the ones inside the span from `code` gives
    /// the unit without its documentation (see `gnn-coder-train`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub doc_spans: Vec<(usize, usize)>,
    /// Source text of the span (lossy UTF-8), docstring included as written in the file.
    ///
    /// Functions and methods hold their whole span. A container (class, struct, enum, trait,
    /// interface, impl, module) does not copy the containers nested in it (directly or inside
    /// its methods): each is replaced by its definition line (at most
    /// [`ELIDED_HEADER_MAX`](crate::ELIDED_HEADER_MAX) bytes) and
    /// [`ELISION_MARK`](crate::ELISION_MARK): for `mod a {⏎ mod b {⏎ fn f() {}⏎ }⏎ }` (`⏎` a
    /// line break) `a` holds `mod a {⏎ mod b { …⏎ }` while `b` and `f` hold their own text
    /// (the definition line is cut at the nested unit's end). A container's methods stay
    /// in its text. Hence every byte of a file lies in at most its innermost container and the
    /// functions around it, and a deeply nested file costs linear, not quadratic, text. Offsets
    /// into a container's `code` match the file only up to its first elision.
    pub code: String,
}

/// The syntax tree of one unit as a graph: node `i` is `kinds[i]` etc. Node 0 is the unit's root.
/// Single-child chains are collapsed into their top node ("shadow nodes" removed); at most
/// `max_nodes` nodes are kept (breadth-first), edges only between kept nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AstGraph {
    /// Node-kind id in the language's vocabulary (`grammars/<lang>/node-kinds.txt`); 0 = unknown.
    pub kinds: Vec<u16>,
    /// Byte span of each node in the unit's [`code`](CodeUnit::code): relative to its
    /// `start_byte`, except that in a container's text a node after an elided nested container
    /// moves with the text, and one inside it sits where the elided header starts.
    pub spans: Vec<(u32, u32)>,
    /// Number of children of each node in the collapsed tree (before the node cap is applied).
    pub child_counts: Vec<u32>,
    /// Parent -> child edges (indices into the vectors above).
    pub edges: Vec<(u32, u32)>,
}

impl AstGraph {
    pub fn len(&self) -> usize {
        self.kinds.len()
    }
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }
}
