//! The language registry: one line per language in [`REGISTRY`], everything else is data under
//! `grammars/<lang>/`, embedded with `include_str!`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use tree_sitter::{Query, QueryError};

use crate::UnitKind;
use crate::config::LanguageConfig;
use crate::error::{Result, SyntaxError};

/// The embedded data of one language, exactly as registered.
#[derive(Clone, Copy)]
pub struct LanguageDef {
    /// The tree-sitter grammar (`|| tree_sitter::Language::new(tree_sitter_x::LANGUAGE)`).
    pub grammar: fn() -> tree_sitter::Language,
    /// `grammars/<lang>/language.toml`.
    pub config: &'static str,
    /// `grammars/<lang>/units.scm` (may be shared, e.g. tsx uses typescript's).
    pub units: &'static str,
    /// `grammars/<lang>/node-kinds.txt`.
    pub node_kinds: &'static str,
}

macro_rules! lang {
    ($dir:literal, $grammar:expr) => {
        lang!($dir, units_from = $dir, $grammar)
    };
    ($dir:literal, units_from = $units:literal, $grammar:expr) => {
        LanguageDef {
            grammar: || tree_sitter::Language::new($grammar),
            config: include_str!(concat!("../../../grammars/", $dir, "/language.toml")),
            units: include_str!(concat!("../../../grammars/", $units, "/units.scm")),
            node_kinds: include_str!(concat!("../../../grammars/", $dir, "/node-kinds.txt")),
        }
    };
}

/// Every supported language. Adding a language = a `grammars/<lang>/` directory + one line here
/// (+ the grammar crate in `Cargo.toml`). See `grammars/README.md`.
pub static REGISTRY: &[LanguageDef] = &[
    lang!("python", tree_sitter_python::LANGUAGE),
    lang!("rust", tree_sitter_rust::LANGUAGE),
    lang!("go", tree_sitter_go::LANGUAGE),
    lang!("java", tree_sitter_java::LANGUAGE),
    lang!("javascript", tree_sitter_javascript::LANGUAGE),
    lang!("typescript", tree_sitter_typescript::LANGUAGE_TYPESCRIPT),
    lang!(
        "tsx",
        units_from = "typescript",
        tree_sitter_typescript::LANGUAGE_TSX
    ),
    lang!("ruby", tree_sitter_ruby::LANGUAGE),
    lang!("php", tree_sitter_php::LANGUAGE_PHP),
    lang!("c", tree_sitter_c::LANGUAGE),
    lang!("cpp", tree_sitter_cpp::LANGUAGE),
];

/// Capture indices of the units query, resolved once.
#[derive(Debug)]
pub(crate) struct Captures {
    /// For each capture index: the unit kind if it is a `@definition.<kind>` capture.
    pub definition: Vec<Option<UnitKind>>,
    pub name: Option<u32>,
    pub receiver: Option<u32>,
    pub trait_: Option<u32>,
    pub static_: Option<u32>,
}

/// A loaded language: grammar, compiled units query, configuration and node-kind vocabulary.
pub struct Language {
    pub(crate) config: LanguageConfig,
    pub(crate) ts: tree_sitter::Language,
    pub(crate) query: Query,
    pub(crate) captures: Captures,
    vocab: Vec<String>,
    vocab_ids: HashMap<String, u16>,
    /// Grammar node-kind id -> vocabulary id (0 = unknown).
    kind_map: Vec<u16>,
    error_id: u16,
    /// Node-kind and field tables of structure fingerprints, built on first use.
    pub(crate) structure: OnceLock<crate::structure::Tables>,
}

impl std::fmt::Debug for Language {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Language")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

fn query_error(language: &str, e: QueryError) -> SyntaxError {
    SyntaxError::Query {
        language: language.to_string(),
        row: e.row + 1,
        column: e.column + 1,
        message: e.message,
    }
}

/// Named, visible node kinds of a grammar in grammar order, deduplicated, preceded by `ERROR`.
/// This is what `node-kinds.txt` is generated from.
pub fn grammar_node_kinds(ts: &tree_sitter::Language) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec!["ERROR".to_string()];
    seen.insert("ERROR".to_string());
    for id in 0..ts.node_kind_count() {
        let Ok(id) = u16::try_from(id) else { break };
        if !ts.node_kind_is_named(id) || !ts.node_kind_is_visible(id) {
            continue;
        }
        if let Some(kind) = ts.node_kind_for_id(id)
            && seen.insert(kind.to_string())
        {
            out.push(kind.to_string());
        }
    }
    out
}

impl Language {
    fn load(def: &LanguageDef) -> Result<Language> {
        let config =
            LanguageConfig::parse(def.config).map_err(|message| SyntaxError::LanguageData {
                language: "?".into(),
                message,
            })?;
        let name = config.name.clone();
        let data_err = |message: String| SyntaxError::LanguageData {
            language: name.clone(),
            message,
        };
        let ts = (def.grammar)();
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&ts).map_err(|e| SyntaxError::Grammar {
            language: name.clone(),
            message: e.to_string(),
        })?;
        let query = Query::new(&ts, def.units).map_err(|e| query_error(&name, e))?;

        let mut captures = Captures {
            definition: Vec::new(),
            name: None,
            receiver: None,
            trait_: None,
            static_: None,
        };
        for (i, cap) in query.capture_names().iter().enumerate() {
            let idx = Some(i as u32);
            let mut kind = None;
            match *cap {
                "name" => captures.name = idx,
                "receiver" => captures.receiver = idx,
                "trait" => captures.trait_ = idx,
                "static" => captures.static_ = idx,
                c if c.starts_with("definition.") => {
                    let k = &c["definition.".len()..];
                    kind = Some(
                        crate::config::parse_kind(k)
                            .ok_or_else(|| data_err(format!("unknown capture `@{c}`")))?,
                    );
                }
                c if c.starts_with('_') => {}
                c => return Err(data_err(format!("unknown capture `@{c}` in units.scm"))),
            }
            captures.definition.push(kind);
        }

        let vocab: Vec<String> = def
            .node_kinds
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if vocab.len() >= u16::MAX as usize {
            return Err(data_err("node-kinds.txt has too many lines".into()));
        }
        let mut vocab_ids = HashMap::with_capacity(vocab.len());
        for (i, k) in vocab.iter().enumerate() {
            if vocab_ids.insert(k.clone(), (i + 1) as u16).is_some() {
                return Err(data_err(format!("node-kinds.txt lists `{k}` twice")));
            }
        }
        let kind_map = (0..ts.node_kind_count())
            .map(|id| {
                let id = u16::try_from(id).unwrap_or(u16::MAX);
                match ts.node_kind_for_id(id) {
                    Some(k) if ts.node_kind_is_named(id) => vocab_ids.get(k).copied().unwrap_or(0),
                    _ => 0,
                }
            })
            .collect();
        let error_id = vocab_ids.get("ERROR").copied().unwrap_or(0);
        Ok(Language {
            config,
            ts,
            query,
            captures,
            vocab,
            vocab_ids,
            kind_map,
            error_id,
            structure: OnceLock::new(),
        })
    }

    /// One lazily loaded slot per registered language: compiling a grammar's query costs
    /// milliseconds, so a search that names one language does not pay for all eleven.
    fn slots() -> &'static [OnceLock<Result<Language>>] {
        static SLOTS: OnceLock<Vec<OnceLock<Result<Language>>>> = OnceLock::new();
        SLOTS.get_or_init(|| REGISTRY.iter().map(|_| OnceLock::new()).collect())
    }

    fn slot(i: usize) -> &'static Result<Language> {
        Self::slots()[i].get_or_init(|| Language::load(&REGISTRY[i]))
    }

    /// The parsed `language.toml` of every registered language (cheap; `None` if broken, which
    /// loading the language then reports).
    fn configs() -> &'static [Option<LanguageConfig>] {
        static CONFIGS: OnceLock<Vec<Option<LanguageConfig>>> = OnceLock::new();
        CONFIGS.get_or_init(|| {
            REGISTRY
                .iter()
                .map(|d| LanguageConfig::parse(d.config).ok())
                .collect()
        })
    }

    /// All registered languages. Fails only if the embedded data of a language is broken (which
    /// the crate's tests rule out).
    pub fn all() -> Result<Vec<&'static Language>> {
        (0..REGISTRY.len())
            .map(|i| match Self::slot(i) {
                Ok(l) => Ok(l),
                Err(e) => Err(SyntaxError::LanguageData {
                    language: "?".into(),
                    message: e.to_string(),
                }),
            })
            .collect()
    }

    /// The language registered as `name` (`python`, `rust`, `tsx`, ...).
    pub fn by_name(name: &str) -> Result<&'static Language> {
        Self::configs()
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.name == name))
            .and_then(|i| Self::slot(i).as_ref().ok())
            .ok_or_else(|| SyntaxError::UnknownLanguage(name.to_string()))
    }

    /// The language of a file, by its extension (case-insensitive); `None` if unsupported.
    pub fn for_path(path: &Path) -> Option<&'static Language> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Self::configs()
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.extensions.contains(&ext)))
            .and_then(|i| Self::slot(i).as_ref().ok())
    }

    /// Registered name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// File extensions (lowercase, no dot).
    pub fn extensions(&self) -> &[String] {
        &self.config.extensions
    }

    /// Symbol separator (`.` or `::`).
    pub fn separator(&self) -> &str {
        &self.config.separator
    }

    /// The parsed `language.toml`.
    pub fn config(&self) -> &LanguageConfig {
        &self.config
    }

    /// The tree-sitter grammar.
    pub fn tree_sitter(&self) -> &tree_sitter::Language {
        &self.ts
    }

    /// Node-kind vocabulary: `node_kinds()[i]` has id `i + 1`; id 0 means unknown.
    pub fn node_kinds(&self) -> &[String] {
        &self.vocab
    }

    /// Number of ids the model must reserve: vocabulary size + 1 (for id 0 = unknown).
    pub fn vocab_size(&self) -> usize {
        self.vocab.len() + 1
    }

    /// Vocabulary id of a node kind by name (0 if unknown).
    pub fn kind_id(&self, kind: &str) -> u16 {
        self.vocab_ids.get(kind).copied().unwrap_or(0)
    }

    /// Vocabulary id of a node (0 if unknown; `ERROR` nodes get the `ERROR` id).
    pub fn node_kind_id(&self, node: &tree_sitter::Node<'_>) -> u16 {
        if node.is_error() {
            return self.error_id;
        }
        self.kind_map
            .get(node.kind_id() as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Parses `source` with this grammar (a thread-local parser is reused).
    pub fn parse(&self, source: &[u8]) -> Result<tree_sitter::Tree> {
        self.parse_until(source, None)
    }

    /// [`Language::parse`] that gives up at `deadline` ([`SyntaxError::Parse`]).
    pub fn parse_until(
        &self,
        source: &[u8],
        deadline: Option<std::time::Instant>,
    ) -> Result<tree_sitter::Tree> {
        thread_local! {
            static PARSER: std::cell::RefCell<tree_sitter::Parser> = std::cell::RefCell::new(tree_sitter::Parser::new());
        }
        PARSER.with(|p| {
            let mut parser = p.borrow_mut();
            parser
                .set_language(&self.ts)
                .map_err(|e| SyntaxError::Grammar {
                    language: self.config.name.clone(),
                    message: e.to_string(),
                })?;
            let tree = match deadline {
                None => parser.parse(source, None),
                Some(deadline) => {
                    // tree-sitter calls back every 100 parse operations.
                    let mut check = |_: &tree_sitter::ParseState| {
                        if std::time::Instant::now() > deadline {
                            std::ops::ControlFlow::Break(())
                        } else {
                            std::ops::ControlFlow::Continue(())
                        }
                    };
                    let options = tree_sitter::ParseOptions::new().progress_callback(&mut check);
                    parser.parse_with_options(
                        &mut |i, _| source.get(i..).unwrap_or_default(),
                        None,
                        Some(options),
                    )
                }
            };
            // A parser with no tree keeps partial state; reset it for the next file.
            if tree.is_none() {
                parser.reset();
            }
            tree.ok_or_else(|| SyntaxError::Parse {
                path: String::new(),
            })
        })
    }
}
