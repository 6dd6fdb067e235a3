//! Training examples: a mined [`Pair`] turned into what the model sees (query text, code text,
//! AST graph), and the reading of pair files.

use std::io::BufRead;
use std::path::Path;

use gnn_coder_syntax::{AstGraph, ExtractOptions, Language};

use crate::error::{Result, TrainError, io_err};
use crate::mine::{Pair, dedent_tail, parse_alone};

/// One (query, code) example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub language: String,
    pub query: String,
    /// The code as the model reads it: the unit's source text as extracted by the syntax crate
    /// (so token offsets and graph spans agree).
    pub code: String,
    pub graph: Option<AstGraph>,
}

/// Read a `pairs-*.jsonl` file (see [`crate::mine`]). Blank lines are skipped; a malformed line
/// is an error naming the line.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        if line.trim().is_empty() {
            continue;
        }
        let pair: Pair = serde_json::from_str(&line).map_err(|e| TrainError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        out.push(pair);
    }
    Ok(out)
}

/// Turn a pair into an example: the code is re-parsed on its own (a method's tail lines lose the
/// indentation of its first line) and its first function-like unit gives the code text and the
/// AST graph. Code that does not parse into a unit keeps its text and has no graph.
pub fn example_from_pair(pair: &Pair, max_nodes: usize) -> Example {
    let text = dedent_tail(&pair.code, pair.indent);
    let mut ex = Example {
        id: pair.id.clone(),
        language: pair.lang.clone(),
        query: pair.query.clone(),
        code: text,
        graph: None,
    };
    let Ok(lang) = Language::by_name(&pair.lang) else {
        return ex;
    };
    let opts = ExtractOptions {
        graphs: true,
        max_nodes,
    };
    if let Some(alone) = parse_alone(lang, &pair.path, &ex.code, &opts) {
        let i = alone.unit;
        ex.graph = alone.parsed.graphs.get(i).cloned();
        ex.code = alone.parsed.units[i].code.clone();
    }
    ex
}
