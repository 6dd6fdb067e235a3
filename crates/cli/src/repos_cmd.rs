//! `gnn-coder repos`, `remove` and `info`: what an index holds.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::backend::Backend;
use crate::flags::{ModelFlags, human_bytes};
use crate::remote::ServerFlags;

#[derive(Args)]
pub struct ReposArgs {
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    /// One JSON object per repository.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Name of the repository (`gnn-coder repos` lists them).
    name: String,
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    #[command(flatten)]
    server: ServerFlags,
}

fn open(index: Option<PathBuf>, server: &ServerFlags) -> Result<Backend> {
    Backend::open(index, server, &ModelFlags::default())
}

pub(crate) fn when(unix: u64) -> String {
    if unix == 0 {
        return "in progress or interrupted".into();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(unix, |d| d.as_secs());
    let ago = now.saturating_sub(unix);
    match ago {
        0..=59 => format!("{ago}s ago"),
        60..=3599 => format!("{}m ago", ago / 60),
        3600..=86_399 => format!("{}h ago", ago / 3600),
        _ => format!("{}d ago", ago / 86_400),
    }
}

pub fn repos(args: ReposArgs) -> Result<()> {
    let backend = open(args.index, &args.server)?;
    let repos = backend.repositories()?;
    if args.json {
        for r in &repos {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    if repos.is_empty() {
        println!(
            "no repositories (index one with `gnn-coder index ROOT --index {}`)",
            backend.location()
        );
        return Ok(());
    }
    println!(
        "{:<24} {:>7} {:>8} {:>10}  {:<14} {:<12} root",
        "name", "files", "units", "size", "indexed", "commit"
    );
    for r in &repos {
        println!(
            "{:<24} {:>7} {:>8} {:>10}  {:<14} {:<12} {}",
            r.name,
            r.files,
            r.units,
            human_bytes(r.bytes),
            when(r.indexed_unix),
            r.head.as_deref().map_or("-", |h| &h[..h.len().min(12)]),
            r.root
        );
    }
    Ok(())
}

pub fn remove(args: RemoveArgs) -> Result<()> {
    let backend = open(args.index, &args.server)?;
    let info = backend.remove_repository(&args.name)?;
    eprintln!(
        "removed {} ({} files, {} units)",
        info.name, info.files, info.units
    );
    Ok(())
}

pub fn info(args: InfoArgs) -> Result<()> {
    let backend = open(args.index, &args.server)?;
    let stats = backend.stats()?;
    let (s, embedding) = (&stats.stats, &stats.embedding);
    println!("index:      {}", backend.location());
    let encoding = match &backend {
        Backend::Local(engine) => match engine.manifest() {
            Some(m) => {
                println!("format:     {} v{}", m.format, m.format_version);
                println!("written by: gnn-coder {}", m.engine_version);
                format!(" as {}", m.vector_encoding)
            }
            None => String::new(),
        },
        Backend::Remote(_) => String::new(),
    };
    println!("repos:      {}", s.repositories);
    println!("files:      {}", s.files);
    println!("units:      {}", s.units);
    match embedding {
        Some(e) => println!(
            "vectors:    {} ({} dims){encoding}: {} stored, {} in the approximate index",
            e.model, e.dim, s.vectors, s.ann_vectors
        ),
        None => println!("vectors:    none (lexical-only)"),
    }
    println!("on disk:    {}", human_bytes(s.bytes_on_disk));
    for r in backend.repositories()? {
        println!(
            "repo:       {} ({} files, {} units) {}",
            r.name, r.files, r.units, r.root
        );
        for (reason, n) in &r.skipped {
            println!("  skipped:  {n} ({reason})");
        }
    }
    Ok(())
}
