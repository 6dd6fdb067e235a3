//! Agreement with the benchmark's gold symbols (needs the dev corpus, not in the repository):
//! `cargo test -p gnn-coder-syntax --test gold -- --ignored --nocapture`
//! (`GNN_CODER_DEV_DATA` overrides the default `/work/data/dev`).

use std::collections::HashMap;
use std::path::PathBuf;

use gnn_coder_syntax::{CodeUnit, ExtractOptions, Language, extract_file};

#[test]
#[ignore = "needs the dev corpus"]
fn gold_symbols_match() {
    let dir = PathBuf::from(
        std::env::var("GNN_CODER_DEV_DATA").unwrap_or_else(|_| "/work/data/dev".into()),
    );
    let queries = std::fs::read_to_string(dir.join("queries.jsonl")).expect("queries.jsonl");
    let mut cache: HashMap<String, Vec<CodeUnit>> = HashMap::new();
    let (mut total, mut found) = (
        HashMap::<String, usize>::new(),
        HashMap::<String, usize>::new(),
    );
    let mut misses = Vec::new();
    for line in queries.lines().filter(|l| !l.trim().is_empty()) {
        let q: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = q["path"].as_str().unwrap().to_string();
        let symbol = q["symbol"].as_str().unwrap();
        let gold_line = q["line"].as_u64().unwrap() as usize;
        let lang = q["lang"].as_str().unwrap_or("?").to_string();
        let units = cache.entry(path.clone()).or_insert_with(|| {
            let full = dir.join("corpus").join(&path);
            let src = std::fs::read(&full).unwrap();
            let l = Language::for_path(&full).unwrap();
            extract_file(l, &path, &src, &ExtractOptions::default())
                .unwrap()
                .units
        });
        *total.entry(lang.clone()).or_default() += 1;
        let hit = units
            .iter()
            .any(|u| u.symbol == symbol && u.start_line <= gold_line && gold_line <= u.end_line);
        if hit {
            *found.entry(lang).or_default() += 1;
        } else {
            let near: Vec<String> = units
                .iter()
                .filter(|u| u.start_line <= gold_line && gold_line <= u.end_line)
                .map(|u| format!("{}@{}-{}", u.symbol, u.start_line, u.end_line))
                .collect();
            misses.push(format!(
                "{path}:{gold_line} gold `{symbol}`; containing units: {near:?}"
            ));
        }
    }
    for m in misses.iter().take(40) {
        println!("MISS {m}");
    }
    let (t, f): (usize, usize) = (total.values().sum(), found.values().sum());
    for (lang, n) in &total {
        let k = found.get(lang).copied().unwrap_or(0);
        println!("{lang}: {k}/{n} = {:.1}%", 100.0 * k as f64 / *n as f64);
    }
    println!("all: {f}/{t} = {:.1}%", 100.0 * f as f64 / t as f64);
    assert!(f as f64 >= 0.95 * t as f64, "gold match below 95%");
}
