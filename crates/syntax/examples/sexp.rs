//! Debug helper: prints the syntax tree and the extracted units of a file.
//! `cargo run -p gnn-coder-syntax --example sexp -- LANG FILE`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(lang), Some(file)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: sexp LANG FILE");
        std::process::exit(2);
    };
    let lang = gnn_coder_syntax::Language::by_name(lang)?;
    let src = std::fs::read(file)?;
    let tree = lang.parse(&src)?;
    if !args.iter().any(|a| a == "--units") {
        println!("{}", tree.root_node().to_sexp());
    }
    let opts = gnn_coder_syntax::ExtractOptions {
        graphs: true,
        ..Default::default()
    };
    let parsed = gnn_coder_syntax::extract_file(lang, file, &src, &opts)?;
    for (u, g) in parsed.units.iter().zip(&parsed.graphs) {
        println!(
            "{:<9} {:<40} lines {}-{} def {} nodes {} doc {:?}",
            u.kind.as_str(),
            u.symbol,
            u.start_line,
            u.end_line,
            u.def_line,
            g.len(),
            u.doc
                .as_deref()
                .map(|d| d.chars().take(60).collect::<String>())
        );
    }
    Ok(())
}
