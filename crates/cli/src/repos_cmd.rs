//! `gnn-coder repos`, `remove` and `info`: what an index holds.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gnn_coder_engine::{CancellationToken, Engine, EngineOptions};

use crate::index_cmd::human_bytes;
use crate::{advise, resolve_index_dir};

#[derive(Args)]
pub struct ReposArgs {
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
    /// One JSON object per repository.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RemoveArgs {
    /// Name of the repository (`gnn-coder repos` lists them).
    name: String,
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
}

#[derive(Args)]
pub struct InfoArgs {
    /// Index directory (default: the nearest .gnn-coder above the current directory).
    #[arg(long)]
    index: Option<PathBuf>,
}

fn open(index: Option<PathBuf>) -> Result<Engine> {
    let dir = resolve_index_dir(index)?;
    Engine::open(&dir, EngineOptions::default())
        .map_err(advise)
        .with_context(|| format!("cannot open the index at {}", dir.display()))
}

fn when(unix: u64) -> String {
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
    let engine = open(args.index)?;
    let repos = engine.repositories().map_err(advise)?;
    if args.json {
        for r in &repos {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(());
    }
    if repos.is_empty() {
        println!(
            "no repositories (index one with `gnn-coder index ROOT --index {}`)",
            engine.dir().display()
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
    let engine = open(args.index)?;
    let info = engine
        .remove_repository(&args.name, &CancellationToken::new())
        .map_err(advise)?;
    eprintln!(
        "removed {} ({} files, {} units)",
        info.name, info.files, info.units
    );
    Ok(())
}

pub fn info(args: InfoArgs) -> Result<()> {
    let engine = open(args.index)?;
    let stats = engine.stats().map_err(advise)?;
    let dir = engine.dir();
    let m = gnn_coder_engine::EmbeddedStore::open(dir).map_err(|e| advise(e.into()))?;
    let m = m.manifest();
    println!("index:      {}", dir.display());
    println!("format:     {} v{}", m.format, m.format_version);
    println!("written by: gnn-coder {}", m.engine_version);
    println!("repos:      {}", stats.repositories);
    println!("files:      {}", stats.files);
    println!("units:      {}", stats.units);
    match engine.embedding() {
        Some(e) => println!(
            "vectors:    {} ({} dims) as {}: {} stored, {} in the approximate index",
            e.model, e.dim, m.vector_encoding, stats.vectors, stats.ann_vectors
        ),
        None => println!("vectors:    none (lexical-only)"),
    }
    println!("on disk:    {}", human_bytes(stats.bytes_on_disk));
    for r in engine.repositories().map_err(advise)? {
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
