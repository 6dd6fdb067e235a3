//! # gnn-coder-syntax
//!
//! Turns source files into *code units* (functions, methods, classes, ...) and turns each unit's
//! syntax tree into an *AST graph* for the GNN-Coder model.
//!
//! ## Overview
//!
//! ```no_run
//! use gnn_coder_syntax::{extract_file, ExtractOptions, Language};
//!
//! let lang = Language::by_name("python")?;
//! let src = b"class A:\n    def f(self):\n        \"\"\"Doc.\"\"\"\n";
//! let parsed = extract_file(lang, "a.py", src, &ExtractOptions { graphs: true, ..Default::default() })?;
//! assert_eq!(parsed.units[1].symbol, "A.f");
//! assert_eq!(parsed.units[1].doc.as_deref(), Some("Doc."));
//! # Ok::<(), gnn_coder_syntax::SyntaxError>(())
//! ```
//!
//! For a whole repository, [`walk_repo`] discovers files (respecting `.gitignore`), skips what is
//! not worth indexing, parses in parallel and streams one [`FileResult`] per file to a sink;
//! [`extract_repo`] collects them sorted by path.
//!
//! ## Design
//!
//! **Languages are data.** Everything language-specific lives in `grammars/<lang>/` at the
//! workspace root and is compiled into the binary with `include_str!` (the binary needs no source
//! tree):
//!
//! * `units.scm` — a tree-sitter query. Each pattern captures a definition as
//!   `@definition.<kind>` (`function`, `method`, `class`, `struct`, `enum`, `trait`, `interface`,
//!   `impl`, `module`) and its `@name`. Optional captures: `@receiver` (a type that scopes the
//!   definition: Go receivers, Rust impl self types), `@trait` (Rust `impl Trait for`), `@static`
//!   (Ruby singleton methods). Captures starting with `_` are free for predicates.
//! * `language.toml` — name, extensions, symbol separators, which unit kinds qualify nested names,
//!   which make functions methods, wrapper/prefix node kinds that belong to a unit's span
//!   (decorators, attributes, `export`, `template <>`), and where documentation lives
//!   (see [`LanguageConfig`]).
//! * `node-kinds.txt` — the node-kind vocabulary of the model, one kind per line; the id of a kind
//!   is its 1-based line number, 0 means unknown. Generated from the grammar, then stable.
//!
//! The registry ([`REGISTRY`]) is one line per language; `grammars/README.md` explains how to add
//! one.
//!
//! **Extraction** ([`extract_file`]) runs the units query once over the tree, deduplicates nodes
//! matched by several patterns (the first pattern wins), sorts definitions by position and
//! computes nesting with a stack of enclosing definitions, without recursion. The qualified symbol
//! is the path of the enclosing definitions whose kind qualifies (`Outer.Inner.m`,
//! `Type::method`, `mod::Trait::method`), plus any scope written in the definition itself (Go
//! `func (s *Stack) Push` -> `Stack.Push`, C++ `void Foo::bar()` -> `Foo::bar`). A function is a
//! method when its nearest enclosing definition is a class-like container or when it has such a
//! scope. A unit's span starts at its wrappers / attribute prefixes and always contains its
//! definition line ([`CodeUnit::def_line`], the line of its name).
//!
//! **AST graphs** ([`build_graph`]) keep named nodes only, collapse single-child chains into their
//! top node (which keeps its kind id and span), number nodes breadth-first from the unit's root,
//! and stop adding nodes at `max_nodes`. The traversal uses an explicit queue, so arbitrarily deep
//! nesting cannot overflow the stack (tree-sitter's own algorithms are iterative too).
//!
//! **Robustness.** Nothing that comes from a file can panic: source is handled as bytes, text is
//! decoded lossily, files with syntax errors yield whatever tree-sitter recovered
//! ([`ParsedFile::has_syntax_errors`] is set). During a walk, per-file problems are
//! [`SkipReason`]s in the [`WalkSummary`], never errors; [`SyntaxError`] is reserved for bad
//! arguments and broken embedded data.
//!
//! **Reading stays inside the root.** A walk holds the repository root open as a directory
//! handle ([`RepoRoot`]) and reads every file relative to it, component by component, following
//! no symbolic link; the guarantee and its design are in [`root`]. File names are kept exact,
//! also when they are not UTF-8 ([`relpath`]).
//!
//! **Bounded work.** A file costs work and memory linear in its size whatever its shape: one
//! parse, one query run under a work budget ([`QUERY_WORK_PER_BYTE`]), one cursor pass over the
//! nodes that hold definitions (tree-sitter's `parent()` and `prev_sibling()` restart from the
//! root and are not used), and units whose text is bounded: a container does not copy the
//! containers nested in it ([`CodeUnit::code`]). A file beyond [`MAX_UNIT_DEPTH`],
//! [`MAX_UNITS`] or [`MAX_TEXT_FACTOR`] is refused whole ([`SyntaxError::TooComplex`],
//! [`SkipReason::TooComplex`]); the bounds sit well above real code (measured on 12,702 files,
//! none refused). Lines count `\n`, `\r\n` and a lone `\r` alike.
//!
//! **Walking** uses the `ignore` crate (`.gitignore`, `.ignore`, `.git/info/exclude`, hidden
//! files), prunes dependency/build directories ([`DEFAULT_EXCLUDED_DIRS`], virtualenvs), and skips
//! files that are too large (default 1 MiB), binary (NUL byte in the first 8 KiB), minified
//! (`.min.` in the name or average line length > 500) or marked as generated. Discovery is
//! sequential and fast; parsing runs on rayon's pool. Progress ([`Progress`]) is reported after
//! every file so a CLI can draw a progress bar with a known total.
//!
//! Parsers are cached per thread; compiled queries and vocabularies are loaded once, lazily, and
//! shared between threads.

mod config;
mod error;
mod extract;
mod graph;
mod language;
pub mod relpath;
pub mod root;
pub mod structure;
mod text;
mod types;
mod walk;

pub use config::{DocStyle, LanguageConfig};
pub use error::{Result, SyntaxError};
pub use extract::{
    ELIDED_HEADER_MAX, ELISION_MARK, ExtractOptions, MAX_TEXT_FACTOR, MAX_UNIT_DEPTH, MAX_UNITS,
    ParsedFile, QUERY_WORK_ALLOWANCE, QUERY_WORK_PER_BYTE, TEXT_ALLOWANCE, TIME_BUDGET_BASE,
    TIME_BUDGET_PER_BYTE, extract_file,
};
pub use graph::build_graph;
pub use language::{Language, LanguageDef, REGISTRY, grammar_node_kinds};
pub use relpath::{decode_path, decode_rel_path, encode_path, encode_rel_path};
pub use root::{ReadError, RepoRoot, read_regular};
pub use structure::{Fingerprint, standalone_contexts};
pub use text::{dedent, split_lines};
pub use types::*;
pub use walk::{
    DEFAULT_EXCLUDED_DIRS, FileResult, Progress, SkipReason, SkippedFile, WalkHooks, WalkOptions,
    WalkSummary, check_source, extract_repo, path_skip_reason, read_skip, walk_repo,
    walk_repo_with, walk_root_with,
};
