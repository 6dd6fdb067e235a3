//! Regenerates `grammars/<lang>/node-kinds.txt` from the grammars (run after upgrading a grammar;
//! review the diff: new kinds should be *appended* to keep existing ids stable for trained models).
//!
//! `cargo run -p gnn-coder-syntax --example gen_node_kinds [-- --append]`
//!
//! Without `--append` the file is rewritten in grammar order; with `--append` existing lines are
//! kept and only kinds missing from the file are added at the end.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let append = std::env::args().any(|a| a == "--append");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../grammars");
    for def in gnn_coder_syntax::REGISTRY {
        let cfg = gnn_coder_syntax::LanguageConfig::parse(def.config)?;
        let kinds = gnn_coder_syntax::grammar_node_kinds(&(def.grammar)());
        let path = dir.join(&cfg.name).join("node-kinds.txt");
        let mut lines: Vec<String> = if append {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let added = kinds
            .iter()
            .filter(|k| !lines.contains(k))
            .cloned()
            .collect::<Vec<_>>();
        lines.extend(added.iter().cloned());
        std::fs::write(&path, lines.join("\n") + "\n")?;
        println!(
            "{}: {} kinds ({} added)",
            cfg.name,
            lines.len(),
            added.len()
        );
    }
    Ok(())
}
