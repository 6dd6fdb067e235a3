//! What verifying an index at open costs: builds an index of `--units` units (code chunks of
//! this repository's own sources, 384-dimensional vectors) once, then times opening it and
//! taking the first snapshot (where the checksums are verified) against the same with the
//! verification's inputs removed (no `checksums.json`: length checks only), both from a warm
//! page cache.
//!
//! ```sh
//! cargo run -p gnn-coder-index --example open_cost -- /tmp/open-cost 100000
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use gnn_coder_index::EmbeddedStore;
use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, FileEntry, FileWrite, RepoInfo, Store, UnitKey, UnitRecord,
    UnitWrite,
};

const DIM: usize = 384;

fn sources(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        if p.is_dir() && name != "target" && !name.starts_with('.') {
            sources(&p, out);
        } else if (name.ends_with(".rs") || name.ends_with(".py"))
            && let Ok(text) = std::fs::read_to_string(&p)
        {
            let lines: Vec<&str> = text.lines().collect();
            out.extend(lines.chunks(30).map(|c| c.join("\n")));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(args.get(1).cloned().unwrap_or("/tmp/open-cost".into()));
    let units: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    if !dir.exists() {
        let mut chunks = Vec::new();
        sources(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .as_path(),
            &mut chunks,
        );
        assert!(!chunks.is_empty());
        let info = EmbeddingInfo {
            model: "bench".into(),
            dim: DIM,
            trained: false,
        };
        let store = EmbeddedStore::open_or_create(&dir, Some(info)).unwrap();
        let mut w = store.writer().unwrap();
        w.put_repository(&RepoInfo {
            name: "r".into(),
            root: "/r".into(),
            ..RepoInfo::default()
        })
        .unwrap();
        let t = Instant::now();
        let mut x = 1u64;
        let per_file = 10;
        for f in 0..units / per_file {
            let path = format!("src/m{}/f{f}.rs", f % 97);
            let us: Vec<UnitWrite> = (0..per_file)
                .map(|u| {
                    let n = f * per_file + u;
                    let code = format!("fn unit_{n}() {{\n{}\n}}", chunks[n % chunks.len()]);
                    let v: Vec<f32> = (0..DIM)
                        .map(|_| {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
                        })
                        .collect();
                    let mut key = [0u8; 16];
                    key[..8].copy_from_slice(&(n as u64).to_le_bytes());
                    UnitWrite {
                        record: UnitRecord {
                            path: path.clone(),
                            language: "rust".into(),
                            kind: "function".into(),
                            name: format!("unit_{n}"),
                            symbol: format!("unit_{n}"),
                            start_line: 1,
                            end_line: 30,
                            def_line: 1,
                            start_byte: 0,
                            end_byte: code.len() as u64,
                            doc: None,
                            code,
                        },
                        key: UnitKey(key),
                        vector: Some(v),
                    }
                })
                .collect();
            w.upsert_files(
                "r",
                vec![FileWrite {
                    file: FileEntry {
                        path,
                        hash: format!("{f}"),
                        units: per_file as u32,
                        bytes: 1000,
                    },
                    units: us,
                }],
            )
            .unwrap();
            if f % 2000 == 1999 {
                w.commit(&CancellationToken::new()).unwrap();
            }
        }
        w.commit(&CancellationToken::new()).unwrap();
        drop(w);
        eprintln!("built {units} units in {:.1}s", t.elapsed().as_secs_f64());
    }
    let size = |p: &Path| -> u64 {
        let mut n = 0;
        for e in std::fs::read_dir(p).unwrap().flatten() {
            n += e.metadata().unwrap().len();
        }
        n
    };
    println!(
        "index: lexical/ {:.1} MB, vectors/ {:.1} MB",
        size(&dir.join("lexical")) as f64 / 1e6,
        size(&dir.join("vectors")) as f64 / 1e6
    );
    let open = || {
        let t = Instant::now();
        let store = EmbeddedStore::open(&dir).unwrap();
        let r = store.reader().unwrap();
        let n = r.stats().unwrap().units;
        (t.elapsed().as_secs_f64() * 1e3, n)
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Warm the page cache.
    open();
    let checked: Vec<f64> = (0..15).map(|_| open().0).collect();
    let sums = dir.join("checksums.json");
    let aside = dir.join("checksums.json.aside");
    std::fs::rename(&sums, &aside).unwrap();
    let unchecked: Vec<f64> = (0..15).map(|_| open().0).collect();
    std::fs::rename(&aside, &sums).unwrap();
    println!(
        "open + first snapshot, median of 15 (warm cache): {:.1} ms with every checksum verified; \
         {:.1} ms with the vector rows unchecked (lexical footers still verified)",
        median(checked),
        median(unchecked)
    );
    // What opening costs without any verification: tantivy's open and reader, the rows mapped.
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let index = tantivy::Index::open_in_dir(dir.join("lexical")).unwrap();
            let reader = index.reader().unwrap();
            let n = reader.searcher().num_docs();
            let f = std::fs::File::open(dir.join("vectors/rows.i8")).unwrap();
            // SAFETY: a benchmark mapping a file nobody writes.
            let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
            std::hint::black_box((n, map.len()));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "the same without verification (tantivy open + reader, rows mapped): {:.1} ms",
        median(t)
    );
    // The lexical part alone: tantivy's own full validation.
    let index = tantivy::Index::open_in_dir(dir.join("lexical")).unwrap();
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            assert!(index.validate_checksum().unwrap().is_empty());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!("tantivy validate_checksum of lexical/: {:.1} ms", median(t));
    // A second snapshot in the same process: nothing new to verify.
    let store = EmbeddedStore::open(&dir).unwrap();
    store.reader().unwrap();
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let _ = store.snapshot().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "a later snapshot in the same process (nothing committed since): {:.2} ms",
        median(t)
    );
    // Counts derived from the commit's documents (10,000 files, 100,000 units).
    let snap = store.snapshot().unwrap();
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let repos = gnn_coder_store::StoreReader::repositories(snap.as_ref()).unwrap();
            std::hint::black_box(repos);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "repositories() with counts from the documents: {:.2} ms",
        median(t)
    );
    // The raw cost of the rows' checksums: CRC-32 over the file, read through a fresh map.
    let rows = dir.join("vectors/rows.i8");
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            let f = std::fs::File::open(&rows).unwrap();
            // SAFETY: a benchmark reading a file nobody writes.
            let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
            let c = crc32fast::hash(&map);
            std::hint::black_box(c);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!("CRC-32 of rows.i8 through a fresh map: {:.1} ms", median(t));
    let bytes = std::fs::read(&rows).unwrap();
    let t: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(crc32fast::hash(&bytes));
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "CRC-32 of rows.i8 in memory: {:.1} ms ({:.1} GB/s)",
        median(t.clone()),
        bytes.len() as f64 / median(t) / 1e6
    );
}
