//! Code→code search on a real corpus: does `similar` find a function copied with renamed
//! identifiers at rank 1?
//!
//! ```text
//! cargo run -p gnn-coder-engine --example near_duplicates -- \
//!     --index /tmp/gnn-dev/index --work /tmp/gnn-neardup [--count 200] [--lexical-weights 0,0.2]
//! ```
//!
//! Takes `--count` functions of at least five lines from the index (every Python and Rust
//! repository in it, in a fixed order), writes a copy of each with its name and parameters
//! renamed (`v0`, `v1`, ...) and its docstring kept as it is (functions with decorators or
//! attributes are left out, so the copy parses on its own), indexes the
//! copies as a repository of their own into a scratch copy of the index (so only the copies are
//! embedded), asks `similar` for each original unit, and reports how often its renamed copy
//! comes first (and within the top 5).

use std::collections::BTreeMap;
use std::path::PathBuf;

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, IndexOptions, SimilarRequest, SimilarTarget,
};

mod bench_util;

use bench_util::{arg, copy_dir};

type BoxError = Box<dyn std::error::Error>;

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces whole-word occurrences of the keys of `names`.
fn rename(code: &str, names: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(code.len());
    let mut word = String::new();
    for c in code.chars().chain(std::iter::once('\0')) {
        if is_ident(c) {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push_str(names.get(&word).map_or(word.as_str(), String::as_str));
            word.clear();
        }
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// The function's name and parameter names, from its signature.
fn identifiers(code: &str, language: &str, name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    let Some(open) = code.find('(') else {
        return out;
    };
    let Some(close) = code[open..].find(')') else {
        return out;
    };
    for p in code[open + 1..open + close].split(',') {
        let p = p.trim().trim_start_matches('*').trim_start_matches("mut ");
        let ident: String = match language {
            "rust" => p.split(':').next().unwrap_or("").trim().to_string(),
            _ => p.split(['=', ':']).next().unwrap_or("").trim().to_string(),
        };
        if !ident.is_empty() && ident.chars().all(is_ident) && ident != "self" && ident != "_" {
            out.push(ident);
        }
    }
    out
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: near_duplicates --index DIR --work DIR [--count N]";
    let index = PathBuf::from(arg(&args, "--index").ok_or(usage)?);
    let work = PathBuf::from(arg(&args, "--work").ok_or(usage)?);
    let count: usize = arg(&args, "--count").map_or(Ok(200), |c| c.parse())?;
    let weights: Vec<f32> = arg(&args, "--lexical-weights")
        .unwrap_or_else(|| "0,0.2".into())
        .split(',')
        .map(|w| w.trim().parse::<f32>())
        .collect::<Result<_, _>>()?;
    let _ = std::fs::remove_dir_all(&work);
    let scratch = work.join("index");
    copy_dir(&index, &scratch)?;
    let engine = Engine::open(&scratch, EngineOptions::default())?;

    // Originals: functions of five lines or more, every k-th one for spread.
    let reader = engine.store().reader()?;
    let mut pool = Vec::new();
    for repo in reader.repositories()? {
        for file in reader.files(&repo.name)? {
            for u in reader.units_of_file(&repo.name, &file.path)? {
                let r = &u.record;
                if r.end_line >= r.start_line + 4
                    && r.def_line == r.start_line
                    && (r.kind == "function" || r.kind == "method")
                    && (r.language == "python" || r.language == "rust")
                {
                    pool.push(gnn_coder_engine::SearchHit {
                        repository: u.repository,
                        unit: u.record,
                        score: 0.0,
                        matches: Vec::new(),
                    });
                }
            }
        }
    }
    drop(reader);
    pool.sort_by(|a, b| {
        (&a.repository, &a.unit.path, a.unit.start_byte).cmp(&(
            &b.repository,
            &b.unit.path,
            b.unit.start_byte,
        ))
    });
    let step = (pool.len() / count.max(1)).max(1);
    let originals: Vec<_> = pool.into_iter().step_by(step).take(count).collect();

    let copies = work.join("copies");
    for (i, h) in originals.iter().enumerate() {
        let ids = identifiers(&h.unit.code, &h.unit.language, &h.unit.name);
        let names: BTreeMap<String, String> = ids
            .into_iter()
            .enumerate()
            .map(|(k, id)| (id, format!("v{k}")))
            .collect();
        let ext = if h.unit.language == "rust" {
            "rs"
        } else {
            "py"
        };
        // Python accepts a body indented deeper than its `def`, so the text stays as it is.
        let text = rename(&h.unit.code, &names);
        std::fs::create_dir_all(&copies)?;
        std::fs::write(
            copies.join(format!("copy{i:04}.{ext}")),
            format!("{text}\n"),
        )?;
    }
    let s = engine.index_repository(
        &IndexOptions::new(&copies).named("renamed-copies"),
        &|_| {},
        &CancellationToken::new(),
    )?;
    eprintln!(
        "indexed {} copies ({} units, {} embedded)",
        originals.len(),
        s.units,
        s.embeddings_computed
    );

    for &w in &weights {
        let (mut at1, mut at5, mut asked) = (0, 0, 0);
        for (i, h) in originals.iter().enumerate() {
            let mut req = SimilarRequest::new(
                SimilarTarget::Unit {
                    repository: Some(h.repository.clone()),
                    path: h.unit.path.clone(),
                    line: h.unit.def_line,
                },
                5,
            );
            req.kinds = gnn_coder_engine::KindFilter::Callables;
            req.lexical_weight = w;
            let Ok((_, hits)) = engine.similar(&req) else {
                continue;
            };
            asked += 1;
            let want = format!("copy{i:04}.");
            let rank = hits
                .iter()
                .position(|x| x.repository == "renamed-copies" && x.unit.path.starts_with(&want));
            if rank == Some(0) {
                at1 += 1;
            } else if std::env::var_os("SHOW_MISSES").is_some() {
                let top: Vec<String> = hits
                    .iter()
                    .take(3)
                    .map(|x| format!("{}:{}:{}", x.repository, x.unit.path, x.unit.symbol))
                    .collect();
                eprintln!(
                    "miss (w {w}) {}:{}: copy at {rank:?}; top {top:?}",
                    h.unit.path, h.unit.symbol
                );
            }
            if rank.is_some() {
                at5 += 1;
            }
        }
        println!(
            "lexical weight {w}: renamed copies found by `similar` at rank 1 {at1}/{asked} ({:.1}%), top 5 {at5}/{asked} ({:.1}%)",
            100.0 * at1 as f64 / asked.max(1) as f64,
            100.0 * at5 as f64 / asked.max(1) as f64
        );
    }
    Ok(())
}
