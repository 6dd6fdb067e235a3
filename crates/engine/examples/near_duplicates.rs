//! Code→code search on a real corpus: does `similar` find a function copied with renamed
//! identifiers at rank 1?
//!
//! ```text
//! cargo run -p gnn-coder-engine --example near_duplicates -- \
//!     --index /tmp/gnn-dev/index --work /tmp/gnn-neardup [--count 200] [--lexical-weights 0,0.2] \
//!     [--structure-weights 0,0.8] [--languages python,rust]
//! ```
//!
//! Takes `--count` functions of at least five lines from the index (units of `--languages`,
//! default Python and Rust, in a fixed order), writes a copy of each with its name and
//! parameters renamed (`v0`, `v1`, ...) and its docstring kept as it is (functions with
//! decorators, attributes or annotations are left out, so the copy parses on its own; a Java,
//! JavaScript or TypeScript method is put back into a class), indexes the
//! copies as a repository of their own into a scratch copy of the index (so only the copies are
//! embedded), asks `similar` for each original unit, and reports how often its renamed copy
//! comes first (and within the top 5), for every pair of lexical and structure weights, with
//! the latency of `similar` and how many of the original's other neighbours (its top 5 without
//! the copy, first stage alone) the structure stage keeps.

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

/// The function's name and parameter names, from its signature (a Go method's receiver counts
/// as a parameter).
fn identifiers(code: &str, language: &str, name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    let mut groups = Vec::new();
    let mut rest = code;
    // Go: `func (r *T) Name(params)`: the receiver's group, then the parameters'.
    let wanted = if language == "go" && code.starts_with("func (") {
        2
    } else {
        1
    };
    while groups.len() < wanted {
        let Some(open) = rest.find('(') else { break };
        let Some(close) = rest[open..].find(')') else {
            break;
        };
        groups.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    for p in groups.iter().flat_map(|g| g.split(',')) {
        let p = p.trim().trim_start_matches('*').trim_start_matches("mut ");
        let p = p.trim_start_matches("...");
        let ident: &str = match language {
            "rust" => p.split(':').next().unwrap_or(""),
            // `name type`
            "go" => p.split_whitespace().next().unwrap_or(""),
            // `Type name`
            "java" | "c" | "cpp" => p.split_whitespace().last().unwrap_or(""),
            // `modifiers name?: type = default`
            "javascript" | "typescript" | "tsx" => p
                .split([':', '=', '?'])
                .next()
                .unwrap_or("")
                .split_whitespace()
                .last()
                .unwrap_or(""),
            _ => p.split(['=', ':']).next().unwrap_or(""),
        };
        let ident = ident.trim();
        if !ident.is_empty()
            && ident.chars().all(is_ident)
            && !matches!(ident, "self" | "_" | "this")
            && !out.iter().any(|o| o == ident)
        {
            out.push(ident.to_string());
        }
    }
    out
}

/// A file holding the renamed copy: methods go back into a class where the language has no
/// methods outside one, Go files get a package clause.
fn copy_file(language: &str, kind: &str, text: &str) -> (&'static str, String) {
    match language {
        "rust" => ("rs", format!("{text}\n")),
        "go" => ("go", format!("package copies\n\n{text}\n")),
        "java" => ("java", format!("class C {{\n{text}\n}}\n")),
        "javascript" | "typescript" | "tsx" => {
            let ext = match language {
                "javascript" => "js",
                "typescript" => "ts",
                _ => "tsx",
            };
            if kind == "method" {
                (ext, format!("class C {{\n{text}\n}}\n"))
            } else {
                (ext, format!("{text}\n"))
            }
        }
        // Python accepts a body indented deeper than its `def`, so the text stays as it is.
        _ => ("py", format!("{text}\n")),
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: near_duplicates --index DIR --work DIR [--count N]";
    let index = PathBuf::from(arg(&args, "--index").ok_or(usage)?);
    let work = PathBuf::from(arg(&args, "--work").ok_or(usage)?);
    let count: usize = arg(&args, "--count").map_or(Ok(200), |c| c.parse())?;
    let list = |flag: &str, default: &str| -> Result<Vec<f32>, std::num::ParseFloatError> {
        arg(&args, flag)
            .unwrap_or_else(|| default.into())
            .split(',')
            .map(|w| w.trim().parse::<f32>())
            .collect()
    };
    let weights = list("--lexical-weights", "0,0.2")?;
    let languages: Vec<String> = arg(&args, "--languages")
        .unwrap_or_else(|| "python,rust".into())
        .split(',')
        .map(|l| l.trim().to_string())
        .collect();
    let structures = list(
        "--structure-weights",
        &format!("0,{}", gnn_coder_engine::SIMILAR_STRUCTURE_WEIGHT),
    )?;
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
                    && languages.contains(&r.language)
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

    // The second stage's own cost: one fingerprint per candidate.
    let t = std::time::Instant::now();
    let mut shingles = 0;
    for h in &originals {
        let lang = gnn_coder_syntax::Language::by_name(&h.unit.language)?;
        shingles += gnn_coder_syntax::Fingerprint::of(lang, &h.unit.code).len();
    }
    println!(
        "fingerprints: {:.1} µs per unit ({} units, {:.0} k-grams each)",
        t.elapsed().as_secs_f64() * 1e6 / originals.len().max(1) as f64,
        originals.len(),
        shingles as f64 / originals.len().max(1) as f64
    );

    let copies = work.join("copies");
    for (i, h) in originals.iter().enumerate() {
        let ids = identifiers(&h.unit.code, &h.unit.language, &h.unit.name);
        let names: BTreeMap<String, String> = ids
            .into_iter()
            .enumerate()
            .map(|(k, id)| (id, format!("v{k}")))
            .collect();
        let text = rename(&h.unit.code, &names);
        let (ext, file) = copy_file(&h.unit.language, &h.unit.kind, &text);
        std::fs::create_dir_all(&copies)?;
        std::fs::write(copies.join(format!("copy{i:04}.{ext}")), file)?;
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

    // The original's other neighbours (its top 5 without copies) per lexical weight, with the
    // first stage alone: how many of them a structure weight keeps.
    let ask = |i: usize, w: f32, sw: f32| {
        let h = &originals[i];
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
        req.structure_weight = sw;
        engine.similar(&req).map(|(_, hits)| hits)
    };
    let others = |hits: &[gnn_coder_engine::SearchHit]| -> Vec<(String, String, u64)> {
        hits.iter()
            .filter(|x| x.repository != "renamed-copies")
            .map(|x| (x.repository.clone(), x.unit.path.clone(), x.unit.start_byte))
            .collect()
    };
    let mut baseline: Option<(f32, Vec<Option<Vec<(String, String, u64)>>>)> = None;
    for (w, sw) in weights
        .iter()
        .flat_map(|&w| structures.iter().map(move |&sw| (w, sw)))
    {
        // The first stage's other neighbours, once per lexical weight.
        if baseline.as_ref().is_none_or(|(bw, _)| *bw != w) {
            let firsts = (0..originals.len())
                .map(|i| ask(i, w, 0.0).ok().map(|hits| others(&hits)))
                .collect();
            baseline = Some((w, firsts));
        }
        let firsts = baseline
            .as_ref()
            .map(|(_, f)| f.as_slice())
            .unwrap_or_default();
        let (mut at1, mut at5, mut asked) = (0, 0, 0);
        let (mut kept, mut before) = (0, 0);
        let mut times = Vec::new();
        for (i, h) in originals.iter().enumerate() {
            let t = std::time::Instant::now();
            let Ok(hits) = ask(i, w, sw) else {
                continue;
            };
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if let Some(Some(first)) = firsts.get(i) {
                let now = others(&hits);
                before += first.len();
                kept += first.iter().filter(|x| now.contains(x)).count();
            }
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
                    "miss (w {w}, structure {sw}) {}:{}: copy at {rank:?}; top {top:?}",
                    h.unit.path, h.unit.symbol
                );
            }
            if rank.is_some() {
                at5 += 1;
            }
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            times
                .get(((times.len() as f64 * p) as usize).min(times.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0.0)
        };
        println!(
            "lexical weight {w}, structure weight {sw}: renamed copies found by `similar` at rank 1 {at1}/{asked} ({:.1}%), top 5 {at5}/{asked} ({:.1}%); other neighbours kept {:.1}%; similar p50 {:.1} ms, p99 {:.1} ms",
            100.0 * at1 as f64 / asked.max(1) as f64,
            100.0 * at5 as f64 / asked.max(1) as f64,
            100.0 * kept as f64 / before.max(1) as f64,
            pct(0.5),
            pct(0.99)
        );
    }
    Ok(())
}
