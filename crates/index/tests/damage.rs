//! Conformance: a damaged index fails loudly, never answers wrongly (issue 22, class 3).
//!
//! Every file of a small index (the manifest, the checksums record, the vector rows and keys,
//! the approximate index, every tantivy segment file and tantivy's own metadata) is damaged in
//! turn: truncated to nothing, truncated to half, overwritten with zeros, and one byte flipped
//! at its start, middle and end. Each time the index is opened, read (repositories, counts,
//! lexical and vector searches, unit records), written (a writer is opened and commits) and
//! read again. Every outcome must be an error or the undamaged index's exact answers: a panic
//! or a different answer fails the test.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use gnn_coder_index::EmbeddedStore;
use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, ErrorKind, FieldBoosts, FileEntry, FileWrite, Filters,
    LexicalQuery, RepoInfo, Store, StoreError, StoreReader, UnitKey, UnitRecord, UnitWrite,
    VectorQuery,
};

const DIM: usize = 16;
/// Small, so that the index has an approximate index file (and searches use it).
const ANN_MIN_ROWS: u32 = 40;

fn info() -> EmbeddingInfo {
    EmbeddingInfo {
        model: "test-model".into(),
        dim: DIM,
        trained: false,
    }
}

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter().map(|a| a / n).collect()
}

const WORDS: [&str; 8] = [
    "parse", "header", "retry", "backoff", "socket", "config", "token", "render",
];

fn file(i: u64, version: u64) -> FileWrite {
    let path = format!("src/mod{i}.py");
    let units: Vec<UnitWrite> = (0..3u64)
        .map(|u| {
            let seed = i * 100 + u + version * 10_000;
            let name = format!(
                "{}_{}_{i}_{u}",
                WORDS[(seed % 8) as usize],
                WORDS[((seed / 3) % 8) as usize]
            );
            let code = format!("def {name}(x):\n    return {seed}\n");
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&seed.to_le_bytes());
            UnitWrite {
                record: UnitRecord {
                    path: path.clone(),
                    language: "python".into(),
                    kind: "function".into(),
                    name: name.clone(),
                    symbol: name,
                    start_line: 1 + 3 * u,
                    end_line: 2 + 3 * u,
                    def_line: 1 + 3 * u,
                    start_byte: 30 * u,
                    end_byte: 30 * u + code.len() as u64,
                    doc: None,
                    code,
                },
                key: UnitKey(key),
                vector: Some(vector(seed)),
            }
        })
        .collect();
    FileWrite {
        file: FileEntry {
            path,
            hash: format!("h{i}-{version}"),
            units: 3,
            bytes: 90,
        },
        units,
    }
}

/// Two commits (the second rewrites some files, so segments have deletes), an approximate
/// index over the rows.
fn build(dir: &Path) {
    let mut store = EmbeddedStore::open_or_create(dir, Some(info())).unwrap();
    store.set_ann_min_rows(ANN_MIN_ROWS);
    let cancel = CancellationToken::new();
    let mut w = store.embedded_writer().unwrap();
    use gnn_coder_store::StoreWriter;
    w.put_repository(&RepoInfo {
        name: "alpha".into(),
        root: "/src/alpha".into(),
        ..RepoInfo::default()
    })
    .unwrap();
    w.upsert_files("alpha", (0..30).map(|i| file(i, 0)).collect())
        .unwrap();
    w.commit(&cancel).unwrap();
    assert!(w.maintain_ann(&cancel).unwrap(), "an approximate index");
    w.upsert_files(
        "alpha",
        (20..45).map(|i| file(i, u64::from(i < 30))).collect(),
    )
    .unwrap();
    w.commit(&cancel).unwrap();
    w.maintain_ann(&cancel).unwrap();
}

/// Everything a reader answers, as text: any difference is a wrong answer.
fn answers(dir: &Path) -> Result<String, StoreError> {
    let mut store = EmbeddedStore::open(dir)?;
    store.set_ann_min_rows(ANN_MIN_ROWS);
    let r = store.reader()?;
    read(r.as_ref())
}

fn read(r: &dyn StoreReader) -> Result<String, StoreError> {
    let mut out = String::new();
    for repo in r.repositories()? {
        out += &format!(
            "repo {} files {} units {}\n",
            repo.name, repo.files, repo.units
        );
        out += &format!("files {}\n", r.files(&repo.name)?.len());
    }
    let s = r.stats()?;
    out += &format!(
        "stats {} {} {} {}\n",
        s.repositories, s.files, s.units, s.vectors
    );
    let mut ids = Vec::new();
    for w in WORDS {
        let hits = r.lexical(&LexicalQuery {
            text: w.into(),
            boosts: FieldBoosts::default(),
            filters: Filters::default(),
            limit: 5,
        })?;
        ids.extend(hits.iter().map(|(id, _)| *id));
        out += &format!("lexical {w}: {:?}\n", scored(&hits));
    }
    for seed in [1u64, 2, 3, 2002, 10_021, 77] {
        let query = |exact| VectorQuery {
            vector: vector(seed),
            filters: Filters::default(),
            limit: 5,
            exact,
        };
        let hits = r.vector(&query(true))?;
        ids.extend(hits.iter().map(|(id, _)| *id));
        out += &format!("vector {seed}: {:?}\n", scored(&hits));
        // The approximate index is built by several threads, so which neighbours it misses
        // differs from build to build (and a damaged one is replaced by the exact scan): its
        // answer is right when it invents nothing, i.e. every hit is a unit of the index with
        // the score the exact scan gives it, in order.
        let approx = r.vector(&query(false))?;
        let approx_ids: Vec<_> = approx.iter().map(|(id, _)| *id).collect();
        let exact_scores = r.vector_scores(&approx_ids, &vector(seed))?;
        let consistent = approx.len() == hits.len()
            && r.units(&approx_ids)?.len() == approx.len()
            && approx
                .iter()
                .zip(&exact_scores)
                .all(|((_, s), e)| e.is_some_and(|e| (e - s).abs() < 1e-4))
            && approx.windows(2).all(|w| w[0].1 >= w[1].1);
        out += &if consistent {
            format!("approximate {seed}: consistent\n")
        } else {
            format!("approximate {seed}: INCONSISTENT {:?}\n", scored(&approx))
        };
    }
    for u in r.units(&ids)? {
        out += &format!(
            "unit {} {} {} {}\n",
            u.record.path, u.record.name, u.record.start_line, u.record.code
        );
        if let Some(v) = r.unit_vector(u.id)? {
            out += &format!("  vector {:.3?}\n", &v[..3]);
        }
    }
    let scores = r.vector_scores(&ids, &vector(5))?;
    out += &format!(
        "scores {:?}\n",
        scores
            .iter()
            .map(|s| s.map(|x| format!("{x:.4}")))
            .collect::<Vec<_>>()
    );
    out += &format!(
        "units of mod3 {}\n",
        r.units_of_file("alpha", "src/mod3.py")?.len()
    );
    Ok(out)
}

fn scored(hits: &[(gnn_coder_store::UnitId, f32)]) -> Vec<String> {
    hits.iter()
        .map(|(id, s)| format!("{}:{s:.4}", id.0))
        .collect()
}

/// Opens a writer, rewrites one file and commits, as a plain refresh would.
fn write(dir: &Path) -> Result<(), StoreError> {
    use gnn_coder_store::StoreWriter;
    let mut store = EmbeddedStore::open(dir)?;
    store.set_ann_min_rows(ANN_MIN_ROWS);
    let mut w = store.embedded_writer()?;
    w.upsert_files("alpha", vec![file(3, 0)])?;
    let cancel = CancellationToken::new();
    w.commit(&cancel)?;
    w.maintain_ann(&cancel)?;
    Ok(())
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let (p, q) = (e.path(), to.join(e.file_name()));
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            fs::copy(&p, &q).unwrap();
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Empty,
    Half,
    Zeros,
    Flip(f64),
}

fn damage(path: &Path, how: Damage) -> bool {
    let mut bytes = fs::read(path).unwrap();
    if bytes.is_empty() {
        return false;
    }
    match how {
        Damage::Empty => bytes.clear(),
        Damage::Half => bytes.truncate(bytes.len() / 2),
        Damage::Zeros => {
            if bytes.iter().all(|b| *b == 0) {
                return false;
            }
            bytes.iter_mut().for_each(|b| *b = 0);
        }
        Damage::Flip(at) => {
            let i = ((bytes.len() - 1) as f64 * at) as usize;
            bytes[i] ^= 0x5a;
        }
    }
    fs::write(path, bytes).unwrap();
    true
}

/// Files that are not data: locks, which hold no state that a read or a write trusts.
fn is_lock(rel: &str) -> bool {
    rel.ends_with(".lock") || rel == ".gitignore"
}

#[test]
fn every_damaged_file_gives_an_error_or_the_right_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build(&pristine);
    let reference = answers(&pristine).unwrap();
    // What a read after the write should answer: the same write on an undamaged copy.
    let clean = tmp.path().join("clean-write");
    copy_dir(&pristine, &clean);
    write(&clean).unwrap();
    let after_write = answers(&clean).unwrap();
    for a in [&reference, &after_write] {
        assert!(!a.contains("INCONSISTENT"), "{a}");
    }
    assert_ne!(
        after_write, reference,
        "the write moves the rewritten units"
    );
    // Sanity: the reference does use the approximate index and several segments.
    let mut all = Vec::new();
    files_below(&pristine, &mut all);
    let rels: Vec<String> = all
        .iter()
        .map(|p| {
            p.strip_prefix(&pristine)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|r| !is_lock(r))
        .collect();
    assert!(
        rels.iter().any(|r| r.starts_with("vectors/ann-")),
        "{rels:?}"
    );
    assert!(rels.iter().any(|r| r.ends_with(".del")), "{rels:?}");
    assert!(rels.iter().any(|r| r == "checksums.json"), "{rels:?}");

    let hows = [
        Damage::Empty,
        Damage::Half,
        Damage::Zeros,
        Damage::Flip(0.0),
        Damage::Flip(0.5),
        Damage::Flip(1.0),
    ];
    let mut failures = Vec::new();
    let mut outcomes = Vec::new();
    let mut n = 0;
    for rel in &rels {
        for how in hows {
            n += 1;
            let dir = tmp.path().join(format!("case{n}"));
            copy_dir(&pristine, &dir);
            if !damage(&dir.join(rel), how) {
                let _ = fs::remove_dir_all(&dir);
                continue;
            }
            let case = format!("{rel} {how:?}");
            let run = catch_unwind(AssertUnwindSafe(|| {
                let first = answers(&dir);
                let wrote = write(&dir);
                let after = answers(&dir);
                (first, wrote, after)
            }));
            let (first, wrote, after) = match run {
                Ok(r) => r,
                Err(_) => {
                    failures.push(format!("{case}: panicked"));
                    continue;
                }
            };
            let mut outcome = Vec::new();
            let want_after = if wrote.is_ok() {
                &after_write
            } else {
                &reference
            };
            for (what, r, want) in [
                ("read", &first, &reference),
                ("read after write", &after, want_after),
            ] {
                match r {
                    Ok(a) if a == want => outcome.push(format!("{what}: right")),
                    Ok(a) => failures.push(format!(
                        "{case}: {what} answered wrongly:\n{}",
                        diff(want, a)
                    )),
                    Err(e) => {
                        check_error(&case, what, e, rel, &mut failures);
                        outcome.push(format!("{what}: {:?}", e.kind()));
                    }
                }
            }
            if let Err(e) = &wrote {
                check_error(&case, "write", e, rel, &mut failures);
            }
            outcomes.push(format!("{case}: {}", outcome.join(", ")));
            let _ = fs::remove_dir_all(&dir);
        }
    }
    eprintln!("{}", outcomes.join("\n"));
    assert!(
        failures.is_empty(),
        "{} of {n} damaged indexes misbehaved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// An error must say the index is damaged and name the damaged file (or its directory).
fn check_error(case: &str, what: &str, e: &StoreError, rel: &str, failures: &mut Vec<String>) {
    let text = e.to_string();
    if e.kind() != ErrorKind::Damaged {
        failures.push(format!(
            "{case}: {what} failed with {:?}, not Damaged: {text}",
            e.kind()
        ));
        return;
    }
    let name = Path::new(rel).file_name().unwrap().to_string_lossy();
    // tantivy's own metadata (meta.json, .managed.json) is named by its directory at least.
    let tantivy_meta = rel.starts_with("lexical/") && name.ends_with(".json");
    let named = text.contains(name.as_ref()) || (tantivy_meta && text.contains("lexical"));
    if !named {
        failures.push(format!("{case}: {what} does not name the file: {text}"));
    }
}

fn diff(a: &str, b: &str) -> String {
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .take(3)
        .map(|(x, y)| format!("  want {x}\n  got  {y}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rewrites the footer of a tantivy file so that its checksum matches its (damaged) body: the
/// damage tantivy's checksums cannot see.
fn forge_footer(path: &Path, flip_at: f64) {
    let bytes = fs::read(path).unwrap();
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let body_len = n - 8 - footer_len;
    let mut body = bytes[..body_len].to_vec();
    let mut footer: serde_json::Value = serde_json::from_slice(&bytes[body_len..n - 8]).unwrap();
    let i = ((body_len.max(1) - 1) as f64 * flip_at) as usize;
    body[i] ^= 0x5a;
    footer["crc"] = crc32(&body).into();
    let json = serde_json::to_vec(&footer).unwrap();
    let mut out = body;
    out.extend_from_slice(&json);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&bytes[n - 4..]);
    fs::write(path, out).unwrap();
}

/// CRC-32 (IEEE), as tantivy's footers use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Damage that passes tantivy's checksums (a forged footer) reaches tantivy's parsers, which
/// panic on some of it: the panic must come back as a damaged-index error, never unwind out of
/// the store (the CLI exited 101 on a flipped byte in a term dictionary). Answers may differ
/// here: damage with a valid checksum is beyond what can be detected.
#[test]
fn panics_inside_tantivy_become_damaged_index_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build(&pristine);
    let mut all = Vec::new();
    files_below(&pristine.join("lexical"), &mut all);
    let mut segment_files: Vec<PathBuf> = all
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.ends_with(".json")
        })
        .map(|p| p.strip_prefix(&pristine).unwrap().to_path_buf())
        .collect();
    segment_files.sort();
    let (mut n, mut errors, mut damaged) = (0, 0, 0);
    let mut failures = Vec::new();
    for rel in &segment_files {
        for step in 0..10 {
            n += 1;
            let at = f64::from(step) / 10.0 + 0.05;
            let dir = tmp.path().join(format!("forged{n}"));
            copy_dir(&pristine, &dir);
            forge_footer(&dir.join(rel), at);
            // Reads only: tantivy's writer applies deletes in its own thread pool, where a panic
            // aborts the process; writers open only after every segment file passed its checksum.
            let run = catch_unwind(AssertUnwindSafe(|| answers(&dir).map(|_| ())));
            match run {
                Err(_) => failures.push(format!("{} at {at:.2}: panicked", rel.display())),
                Ok(Err(e)) => {
                    errors += 1;
                    if e.kind() == ErrorKind::Damaged {
                        damaged += 1;
                    }
                }
                Ok(Ok(())) => {}
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    eprintln!("{n} forged files: {errors} errors, {damaged} of them Damaged");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        damaged > 0,
        "some forged damage is caught as a panic inside tantivy"
    );
}

/// A damaged approximate index is not an error (searches scan exactly, with the same answers,
/// checked above) and the next writer rebuilds it from the rows.
#[test]
fn a_damaged_approximate_index_is_rebuilt_by_the_next_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build(&dir);
    let ann = |dir: &Path| {
        let mut store = EmbeddedStore::open(dir).unwrap();
        store.set_ann_min_rows(ANN_MIN_ROWS);
        store.reader().unwrap().stats().unwrap().ann_vectors
    };
    let rows = ann(&dir);
    assert!(rows > 0);
    let mut all = Vec::new();
    files_below(&dir.join("vectors"), &mut all);
    let file = all
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("ann-"))
        .unwrap();
    damage(file, Damage::Flip(0.5));
    assert_eq!(ann(&dir), 0, "not used while damaged");
    write(&dir).unwrap();
    assert_eq!(ann(&dir), rows, "rebuilt");
}

/// An index written before `checksums.json` existed still opens: rows its documents name must
/// exist and every row must have a scale `quantize` can write (a zeroed row has none). Its
/// next commit records checksums.
#[test]
fn an_index_without_checksums_opens_with_length_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build(&pristine);
    let reference = answers(&pristine).unwrap();
    fs::remove_file(pristine.join("checksums.json")).unwrap();
    assert_eq!(answers(&pristine).unwrap(), reference);

    for how in [Damage::Empty, Damage::Half, Damage::Zeros] {
        let dir = tmp.path().join(format!("{how:?}"));
        copy_dir(&pristine, &dir);
        damage(&dir.join("vectors/rows.i8"), how);
        let err = answers(&dir).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
        assert!(err.to_string().contains("rows.i8"), "{err}");
        // A writer must not cut the rows to what is left of the keys either. (Zeroed keys of
        // such an index are not detected: they only make the cache miss.)
        if matches!(how, Damage::Zeros) {
            continue;
        }
        let dir = tmp.path().join(format!("keys-{how:?}"));
        copy_dir(&pristine, &dir);
        damage(&dir.join("vectors/keys.bin"), how);
        let err = write(&dir).unwrap_err();
        assert!(err.to_string().contains("keys.bin"), "{err}");
        assert_eq!(answers(&dir).unwrap(), reference, "the rows were not cut");
    }

    write(&pristine).unwrap();
    assert!(
        pristine.join("checksums.json").exists(),
        "recorded by the next commit"
    );
    damage(&pristine.join("vectors/rows.i8"), Damage::Flip(0.5));
    assert_eq!(answers(&pristine).unwrap_err().kind(), ErrorKind::Damaged);
}
