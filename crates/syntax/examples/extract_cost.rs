//! Cost of extracting one file: time, units and the bytes their texts hold (issue 22's hostile
//! files are measured with it under `/usr/bin/time -v` for the peak RSS).
//!
//! `cargo run -p gnn-coder-syntax --example extract_cost -- FILE [--graphs] [--dump]`
//!
//! With a list of files on stdin instead of FILE (`-`), one line per file: bytes, units, text
//! bytes, deepest nesting; `--dump` prints every unit's fields instead (to compare two builds).

use std::time::Instant;

use gnn_coder_syntax::{ExtractOptions, Language, extract_file};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(file) = args.get(1) else {
        eprintln!("usage: extract_cost FILE [--graphs]");
        std::process::exit(2);
    };
    if file == "-" {
        let dump = args.iter().any(|a| a == "--dump");
        for line in std::io::stdin().lines() {
            let line = line?;
            let Some(lang) = Language::for_path(std::path::Path::new(&line)) else {
                continue;
            };
            let Ok(src) = std::fs::read(&line) else {
                continue;
            };
            match extract_file(lang, &line, &src, &ExtractOptions::default()) {
                Ok(p) if dump => {
                    for u in &p.units {
                        let code = if u.kind.is_callable() {
                            format!("{:?}", u.code)
                        } else {
                            String::new()
                        };
                        println!(
                            "{line} {} {} {}..{} {}-{} {} {:?} {:?} {code}",
                            u.kind.as_str(),
                            u.symbol,
                            u.start_byte,
                            u.end_byte,
                            u.start_line,
                            u.end_line,
                            u.def_line,
                            u.doc,
                            u.doc_spans,
                        );
                    }
                }
                Ok(p) => {
                    let text: usize = p
                        .units
                        .iter()
                        .map(|u| {
                            u.code.len() + u.symbol.len() + u.doc.as_ref().map_or(0, String::len)
                        })
                        .sum();
                    // Deepest nesting, from the spans (units come enclosing-first).
                    let mut stack: Vec<usize> = Vec::new();
                    let mut depth = 0;
                    for u in &p.units {
                        while stack.last().is_some_and(|&e| e < u.end_byte) {
                            stack.pop();
                        }
                        stack.push(u.end_byte);
                        depth = depth.max(stack.len());
                    }
                    println!("{line} {} {} {text} {depth}", src.len(), p.units.len());
                }
                Err(e) => println!("{line} {} error {e}", src.len()),
            }
        }
        return Ok(());
    }
    let lang = Language::for_path(std::path::Path::new(file)).ok_or("unsupported language")?;
    let src = std::fs::read(file)?;
    let opts = ExtractOptions {
        graphs: args.iter().any(|a| a == "--graphs"),
        ..Default::default()
    };
    let t = Instant::now();
    let tree = lang.parse(&src)?;
    println!("parse alone: {:.3} s", t.elapsed().as_secs_f64());
    drop(tree);
    let t = Instant::now();
    let parsed = extract_file(lang, file, &src, &opts);
    let secs = t.elapsed().as_secs_f64();
    match parsed {
        Ok(p) => {
            let code: usize = p.units.iter().map(|u| u.code.len()).sum();
            let nodes: usize = p.graphs.iter().map(|g| g.len()).sum();
            println!(
                "{file}: {} bytes, {} units, {code} code bytes ({:.1}x), {nodes} graph nodes, {secs:.3} s",
                src.len(),
                p.units.len(),
                code as f64 / src.len().max(1) as f64,
            );
        }
        Err(e) => println!("{file}: {} bytes, error: {e}, {secs:.3} s", src.len()),
    }
    Ok(())
}
