//! The embedded store through the store traits: writes, snapshots, filters in both legs, the
//! embedding cache, the lock, crash leftovers and bad directories.

use std::fs;
use std::path::Path;

use gnn_coder_index::{EmbeddedStore, MANIFEST_FILE, VectorCodes};
use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, ErrorKind, FieldBoosts, FileEntry, FileWrite, Filters,
    LexicalQuery, PathGlobs, RepoInfo, Store, StoreReader, UnitKey, UnitRecord, UnitWrite,
    VectorQuery,
};

const DIM: usize = 8;

fn info() -> EmbeddingInfo {
    EmbeddingInfo {
        model: "test-model".into(),
        dim: DIM,
        trained: false,
    }
}

fn vector(i: usize) -> Vec<f32> {
    let mut v = [0.0f32; DIM];
    v[i % DIM] = 1.0;
    v[(i + 1) % DIM] = 0.5;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn unit(path: &str, language: &str, name: &str, code: &str, line: u64) -> UnitRecord {
    UnitRecord {
        path: path.into(),
        language: language.into(),
        kind: "function".into(),
        name: name.into(),
        symbol: name.into(),
        start_line: line,
        end_line: line + 2,
        def_line: line,
        start_byte: line * 10,
        end_byte: line * 10 + code.len() as u64,
        doc: None,
        code: code.into(),
    }
}

fn key(n: u8) -> UnitKey {
    UnitKey([n; 16])
}

/// One file with units `(name, code, vector index)`.
fn file(path: &str, language: &str, units: &[(&str, &str, usize)]) -> FileWrite {
    FileWrite {
        file: FileEntry {
            path: path.into(),
            hash: format!("hash-of-{path}"),
            units: units.len() as u32,
            bytes: 100,
        },
        units: units
            .iter()
            .enumerate()
            .map(|(i, (name, code, v))| UnitWrite {
                record: unit(path, language, name, code, 1 + 10 * i as u64),
                key: key(*v as u8),
                vector: Some(vector(*v)),
            })
            .collect(),
    }
}

fn lexical(r: &dyn StoreReader, text: &str, filters: Filters) -> Vec<String> {
    let ids: Vec<_> = r
        .lexical(&LexicalQuery {
            text: text.into(),
            boosts: FieldBoosts::default(),
            filters,
            limit: 10,
        })
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    r.units(&ids)
        .unwrap()
        .into_iter()
        .map(|u| format!("{}:{}", u.repository, u.record.name))
        .collect()
}

fn dense(r: &dyn StoreReader, v: usize, filters: Filters, limit: usize) -> Vec<String> {
    let ids: Vec<_> = r
        .vector(&VectorQuery {
            vector: vector(v),
            filters,
            limit,
            exact: false,
        })
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    r.units(&ids)
        .unwrap()
        .into_iter()
        .map(|u| format!("{}:{}", u.repository, u.record.name))
        .collect()
}

fn populated(dir: &Path) -> EmbeddedStore {
    let store = EmbeddedStore::open_or_create(dir, Some(info())).unwrap();
    let mut w = store.writer().unwrap();
    w.put_repository(&RepoInfo {
        name: "alpha".into(),
        root: "/src/alpha".into(),
        ..RepoInfo::default()
    })
    .unwrap();
    w.upsert_files(
        "alpha",
        vec![
            file(
                "src/http.py",
                "python",
                &[
                    ("parse_header", "def parse_header(line): pass", 0),
                    ("send_request", "def send_request(url): pass", 1),
                ],
            ),
            file(
                "src/size.rs",
                "rust",
                &[("parse_size", "fn parse_size(s: &str) -> u64 { 0 }", 2)],
            ),
        ],
    )
    .unwrap();
    w.put_repository(&RepoInfo {
        name: "beta".into(),
        root: "/src/beta".into(),
        ..RepoInfo::default()
    })
    .unwrap();
    w.upsert_files(
        "beta",
        vec![file(
            "lib/header.py",
            "python",
            &[("parse_header", "def parse_header(h): pass", 3)],
        )],
    )
    .unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);
    store
}

#[test]
fn both_legs_filter_before_the_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated(&tmp.path().join("idx"));
    let r = store.reader().unwrap();
    let all = lexical(r.as_ref(), "parse header", Filters::default());
    assert_eq!(all.len(), 3, "{all:?}");
    let beta = Filters {
        repositories: vec!["beta".into()],
        ..Filters::default()
    };
    assert_eq!(
        lexical(r.as_ref(), "parse header", beta.clone()),
        vec!["beta:parse_header"]
    );
    let rust = Filters {
        languages: vec!["rust".into()],
        ..Filters::default()
    };
    assert_eq!(
        lexical(r.as_ref(), "parse", rust.clone()),
        vec!["alpha:parse_size"]
    );
    let glob = Filters {
        path_globs: PathGlobs::new(["src/**/*.rs"]).unwrap(),
        ..Filters::default()
    };
    assert_eq!(
        lexical(r.as_ref(), "parse", glob.clone()),
        vec!["alpha:parse_size"]
    );

    // Vector leg: the nearest overall is unit 0, but each filter keeps its own best at rank 1.
    assert_eq!(
        dense(r.as_ref(), 0, Filters::default(), 1),
        vec!["alpha:parse_header"]
    );
    assert_eq!(dense(r.as_ref(), 0, beta, 1), vec!["beta:parse_header"]);
    assert_eq!(dense(r.as_ref(), 0, rust, 1), vec!["alpha:parse_size"]);
    assert_eq!(dense(r.as_ref(), 0, glob, 5), vec!["alpha:parse_size"]);
    let none = Filters {
        repositories: vec!["gamma".into()],
        ..Filters::default()
    };
    assert!(dense(r.as_ref(), 0, none.clone(), 5).is_empty());
    assert!(lexical(r.as_ref(), "parse", none).is_empty());

    let repos = r.repositories().unwrap();
    assert_eq!(
        repos.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["alpha", "beta"]
    );
    let files = r.files("alpha").unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].hash, "hash-of-src/http.py");
    // One file by its key: the same entry, only in its own repository.
    assert_eq!(
        r.file("alpha", &files[0].path).unwrap().as_ref(),
        Some(&files[0])
    );
    assert_eq!(r.file("beta", &files[0].path).unwrap(), None);
    assert_eq!(r.file("alpha", "no/such.py").unwrap(), None);
    let stats = r.stats().unwrap();
    assert_eq!(
        (stats.repositories, stats.files, stats.units, stats.vectors),
        (2, 3, 4, 4)
    );
    // An index directory ignores itself.
    assert_eq!(
        fs::read_to_string(tmp.path().join("idx/.gitignore"))
            .unwrap()
            .lines()
            .last(),
        Some("*")
    );
}

#[test]
fn snapshots_are_isolated_and_refreshes_replace_files() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated(&tmp.path().join("idx"));
    let before = store.reader().unwrap();
    let mut w = store.writer().unwrap();
    // Replace one file (a new unit reuses a cached vector by key), delete another.
    w.upsert_files(
        "alpha",
        vec![FileWrite {
            file: FileEntry {
                path: "src/http.py".into(),
                hash: "new".into(),
                units: 1,
                bytes: 50,
            },
            units: vec![UnitWrite {
                record: unit(
                    "src/http.py",
                    "python",
                    "fetch_url",
                    "def fetch_url(u): pass",
                    1,
                ),
                key: key(1),
                vector: None,
            }],
        }],
    )
    .unwrap();
    w.delete_files("alpha", &["src/size.rs".into()]).unwrap();
    // Not visible before the commit, to new or old readers.
    assert_eq!(
        lexical(store.reader().unwrap().as_ref(), "size", Filters::default()),
        vec!["alpha:parse_size"]
    );
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);
    let after = store.reader().unwrap();
    assert!(lexical(after.as_ref(), "size", Filters::default()).is_empty());
    assert_eq!(
        lexical(after.as_ref(), "fetch url", Filters::default()),
        vec!["alpha:fetch_url"]
    );
    assert_eq!(
        dense(after.as_ref(), 1, Filters::default(), 1),
        vec!["alpha:fetch_url"]
    );
    assert_eq!(
        after.stats().unwrap().vectors,
        4,
        "the cached vector was reused, not appended"
    );
    // The old snapshot still sees its commit.
    assert_eq!(
        lexical(before.as_ref(), "size", Filters::default()),
        vec!["alpha:parse_size"]
    );
    // A new unit without a vector and no cached one is refused.
    let mut w = store.writer().unwrap();
    let err = w
        .upsert_files(
            "alpha",
            vec![FileWrite {
                file: FileEntry {
                    path: "x.py".into(),
                    hash: "h".into(),
                    units: 1,
                    bytes: 1,
                },
                units: vec![UnitWrite {
                    record: unit("x.py", "python", "x", "def x(): pass", 1),
                    key: key(99),
                    vector: None,
                }],
            }],
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    drop(w);
    // Removing a repository removes its files, units and record.
    let mut w = store.writer().unwrap();
    w.delete_repository("alpha").unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);
    let r = store.reader().unwrap();
    assert_eq!(r.repositories().unwrap().len(), 1);
    assert_eq!(
        lexical(r.as_ref(), "parse fetch header url", Filters::default()),
        vec!["beta:parse_header"]
    );
}

#[test]
fn an_uncommitted_writer_leaves_nothing_and_reopening_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    populated(&dir);
    {
        let store = EmbeddedStore::open(&dir).unwrap();
        let mut w = store.writer().unwrap();
        w.delete_repository("alpha").unwrap();
        w.upsert_files(
            "beta",
            vec![file(
                "new.py",
                "python",
                &[("brand_new", "def brand_new(): pass", 7)],
            )],
        )
        .unwrap();
        // dropped without commit
    }
    let store = EmbeddedStore::open(&dir).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().units, 4);
    assert!(lexical(r.as_ref(), "brand new", Filters::default()).is_empty());
    // A torn vector tail (a crash mid-append) is cut by the next writer; search still works.
    let rows = dir.join("vectors/rows.i8");
    let mut bytes = fs::read(&rows).unwrap();
    bytes.extend_from_slice(&[1, 2, 3]);
    fs::write(&rows, bytes).unwrap();
    let w = store.writer().unwrap();
    drop(w);
    assert_eq!(fs::metadata(&rows).unwrap().len(), 4 * (4 + DIM as u64));
    assert_eq!(
        dense(store.reader().unwrap().as_ref(), 3, Filters::default(), 1),
        vec!["beta:parse_header"]
    );
}

#[test]
fn one_writer_at_a_time_and_stale_locks_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    let w = store.writer().unwrap();
    let other = EmbeddedStore::open(&dir).unwrap();
    let err = other.writer().err().expect("second writer refused");
    assert_eq!(err.kind(), ErrorKind::Locked);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("locked by PID {}", std::process::id())),
        "{msg}"
    );
    // Readers are never blocked by the writer.
    assert_eq!(other.reader().unwrap().stats().unwrap().units, 4);
    drop(w);
    // The lock file of a dead process (no flock held) does not block.
    fs::write(dir.join("writer.lock"), "999999999\n").unwrap();
    let w = other.writer().expect("stale lock recovered");
    assert_eq!(
        fs::read_to_string(dir.join("writer.lock")).unwrap().trim(),
        std::process::id().to_string()
    );
    // A writer that ends cleanly leaves no PID behind.
    drop(w);
    assert_eq!(fs::read_to_string(dir.join("writer.lock")).unwrap(), "");
}

#[test]
fn bad_directories_and_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // Missing, foreign, damaged, other version.
    let missing = tmp.path().join("missing");
    assert_eq!(
        EmbeddedStore::open(&missing).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let foreign = tmp.path().join("docs");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("thesis.txt"), "x").unwrap();
    assert_eq!(
        EmbeddedStore::open_or_create(&foreign, None)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        EmbeddedStore::remove(&foreign).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        fs::read_dir(&foreign).unwrap().count(),
        1,
        "the foreign directory was touched"
    );
    let dir = tmp.path().join("idx");
    populated(&dir);
    let manifest = dir.join(MANIFEST_FILE);
    let good = fs::read_to_string(&manifest).unwrap();
    fs::write(
        &manifest,
        good.replace("\"format_version\": 2", "\"format_version\": 9"),
    )
    .unwrap();
    let err = EmbeddedStore::open(&dir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incompatible);
    assert!(err.to_string().contains("format version 9"), "{err}");
    fs::write(&manifest, "{ not json").unwrap();
    let err = EmbeddedStore::open(&dir).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    fs::write(&manifest, &good).unwrap();
    fs::remove_dir_all(dir.join("lexical")).unwrap();
    assert!(
        EmbeddedStore::open(&dir)
            .unwrap_err()
            .to_string()
            .contains("damaged")
    );
    // A damaged index can be removed (to rebuild it).
    EmbeddedStore::remove(&dir).unwrap();
    assert!(!dir.exists());

    let store = populated(&dir);
    let r = store.reader().unwrap();
    let wrong_dim = r.vector(&VectorQuery {
        vector: vec![1.0; 3],
        filters: Filters::default(),
        limit: 5,
        exact: false,
    });
    assert_eq!(wrong_dim.unwrap_err().kind(), ErrorKind::Incompatible);
    // A bad glob is refused where the filters are made, before any leg runs.
    let err = PathGlobs::new(["src/["]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("src/["), "{err}");
    // Punctuation analyses to nothing: no hits, no error; a huge limit is fine.
    assert!(lexical(r.as_ref(), "()", Filters::default()).is_empty());
    let huge = r
        .vector(&VectorQuery {
            vector: vector(0),
            filters: Filters::default(),
            limit: usize::MAX,
            exact: true,
        })
        .unwrap();
    assert_eq!(huge.len(), 4);
    // Unknown unit ids are skipped.
    assert!(
        r.units(&[gnn_coder_store::UnitId(u64::MAX)])
            .unwrap()
            .is_empty()
    );
    // A lexical-only index has no vector leg.
    let lex = EmbeddedStore::open_or_create(&tmp.path().join("lex"), None).unwrap();
    let err = lex.reader().unwrap().vector(&VectorQuery {
        vector: vector(0),
        filters: Filters::default(),
        limit: 5,
        exact: false,
    });
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Incompatible);
}

/// Past 20,000 vectors the writer builds the approximate index; searches use it with the
/// filters inside the walk, and rows appended since are still found (scanned exactly).
#[test]
fn the_approximate_index_is_built_used_and_kept_current() {
    const N: usize = 24_000;
    const D: usize = 16;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = EmbeddedStore::open_or_create(
        &dir,
        Some(EmbeddingInfo {
            model: "m".into(),
            dim: D,
            trained: false,
        }),
    )
    .unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 - 0.5
    };
    let mut random_vector = || {
        let v: Vec<f32> = (0..D).map(|_| rnd()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let mut w = store.writer().unwrap();
    for repo in ["big", "small"] {
        w.put_repository(&RepoInfo {
            name: repo.into(),
            root: format!("/{repo}"),
            ..RepoInfo::default()
        })
        .unwrap();
    }
    for f in 0..N / 100 {
        let repo = if f % 10 < 3 { "small" } else { "big" };
        let units = (0..100)
            .map(|u| {
                let id = f * 100 + u;
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&(id as u64).to_le_bytes());
                UnitWrite {
                    record: unit(
                        &format!("f{f}.py"),
                        "python",
                        &format!("u{id}"),
                        "def u(): pass",
                        1 + u as u64,
                    ),
                    key: UnitKey(k),
                    vector: Some(random_vector()),
                }
            })
            .collect();
        w.upsert_files(
            repo,
            vec![FileWrite {
                file: FileEntry {
                    path: format!("f{f}.py"),
                    hash: "h".into(),
                    units: 100,
                    bytes: 1,
                },
                units,
            }],
        )
        .unwrap();
    }
    w.commit(&CancellationToken::new()).unwrap();
    w.maintain(&CancellationToken::new()).unwrap();
    drop(w);
    let r = store.reader().unwrap();
    assert_eq!(
        r.stats().unwrap().ann_vectors,
        N as u64,
        "the approximate index covers every row"
    );

    let search = |r: &dyn StoreReader,
                  v: &[f32],
                  filters: Filters,
                  exact: bool|
     -> Vec<gnn_coder_store::UnitId> {
        r.vector(&VectorQuery {
            vector: v.to_vec(),
            filters,
            limit: 10,
            exact,
        })
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    };
    let (mut found, mut total) = (0, 0);
    for _ in 0..30 {
        let q = random_vector();
        let exact = search(r.as_ref(), &q, Filters::default(), true);
        let approx = search(r.as_ref(), &q, Filters::default(), false);
        total += exact.len();
        found += approx.iter().filter(|id| exact.contains(id)).count();
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
    // A filter keeping 30% of the units: still applied inside the leg (10 hits, all of them
    // from the repository asked for).
    let small = Filters {
        repositories: vec!["small".into()],
        ..Filters::default()
    };
    let q = random_vector();
    let ids = search(r.as_ref(), &q, small.clone(), false);
    assert_eq!(ids.len(), 10);
    assert!(
        r.units(&ids)
            .unwrap()
            .iter()
            .all(|u| u.repository == "small")
    );

    // A unit added later is not in the approximate index but is found first for its vector.
    let fresh = random_vector();
    let mut w = store.writer().unwrap();
    w.upsert_files(
        "small",
        vec![FileWrite {
            file: FileEntry {
                path: "fresh.py".into(),
                hash: "h".into(),
                units: 1,
                bytes: 1,
            },
            units: vec![UnitWrite {
                record: unit("fresh.py", "python", "fresh", "def fresh(): pass", 1),
                key: UnitKey([0xee; 16]),
                vector: Some(fresh.clone()),
            }],
        }],
    )
    .unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    w.maintain(&CancellationToken::new()).unwrap();
    drop(w);
    let r = store.reader().unwrap();
    assert_eq!(
        r.stats().unwrap().ann_vectors,
        N as u64,
        "one new row does not rebuild it"
    );
    let top = search(r.as_ref(), &fresh, Filters::default(), false);
    assert_eq!(r.units(&top[..1]).unwrap()[0].record.name, "fresh");
    // The fresh rows obey the filters too. Leaving one unit out still leaves more than the
    // threshold, so the walk and the fresh tail both apply it.
    let fresh_id = top[0];
    let other = search(r.as_ref(), &fresh, Filters::default(), true)[1];
    let without = |id| Filters {
        exclude_units: vec![id],
        ..Filters::default()
    };
    let top = search(r.as_ref(), &fresh, without(other), false);
    assert_eq!(top[0], fresh_id);
    assert!(!top.contains(&other));
    let top = search(r.as_ref(), &fresh, without(fresh_id), false);
    assert_eq!(top.len(), 10);
    assert!(!top.contains(&fresh_id));
    // A unit deleted from the graph's rows is never returned (the walk keeps live units only).
    let gone = r.units(&[other]).unwrap().remove(0);
    let mut w = store.writer().unwrap();
    w.delete_files(&gone.repository, std::slice::from_ref(&gone.record.path))
        .unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);
    let r = store.reader().unwrap();
    let top = search(r.as_ref(), &fresh, Filters::default(), false);
    assert_eq!(top.len(), 10);
    let names: Vec<_> = r
        .units(&top)
        .unwrap()
        .into_iter()
        .map(|u| u.record.path)
        .collect();
    assert!(!names.contains(&gone.record.path), "{names:?}");
    assert_eq!(names[0], "fresh.py");
    // Found in its repository, absent from the other.
    let top = search(r.as_ref(), &fresh, small.clone(), false);
    assert_eq!(r.units(&top[..1]).unwrap()[0].record.name, "fresh");
    let big = Filters {
        repositories: vec!["big".into()],
        ..Filters::default()
    };
    let top = search(r.as_ref(), &fresh, big, false);
    assert_eq!(top.len(), 10);
    assert!(r.units(&top).unwrap().iter().all(|u| u.repository == "big"));
    // A damaged approximate index only makes searches exact.
    drop(r);
    drop(store);
    for e in fs::read_dir(dir.join("vectors")).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("ann-") {
            fs::write(e.path(), b"garbage").unwrap();
        }
    }
    let store = EmbeddedStore::open(&dir).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().ann_vectors, 0);
    let top = search(r.as_ref(), &fresh, Filters::default(), false);
    assert_eq!(r.units(&top[..1]).unwrap()[0].record.name, "fresh");
}

/// With filters most units pass (the product's kind filter), the lexical leg walks the bare
/// disjunction with block-max WAND and checks each candidate's columns; with selective ones it
/// intersects the disjunction with the filters. Either way its top 10 must be exactly the
/// best-scoring units that pass: checked against the unfiltered ranking of every unit, filtered
/// here, over three segments, one with deleted units.
#[test]
fn filtered_lexical_results_are_the_best_passing_units() {
    let tmp = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_or_create(&tmp.path().join("idx"), Some(info())).unwrap();
    let kinds = ["function", "method", "function", "class"];
    let files = |part: usize, per_file: usize| -> Vec<(String, FileWrite)> {
        (0..4)
            .map(|f| {
                let (repo, lang, ext) = match (part * 4 + f) % 5 {
                    0 => ("b", "rust", "rs"),
                    1 | 3 => ("a", "rust", "rs"),
                    _ => ("a", "python", "py"),
                };
                let path = format!("src/p{part}/f{f}.{ext}");
                let units = (0..per_file)
                    .map(|u| {
                        let i = (part * 4 + f) * 100 + u;
                        let code = format!(
                            "{}{}{}",
                            "parse ".repeat(1 + i % 7),
                            "header ".repeat(i % 4),
                            (0..i % 37).map(|w| format!("w{w} ")).collect::<String>()
                        );
                        let mut record =
                            unit(&path, lang, &format!("u{i}"), &code, 1 + 10 * u as u64);
                        record.kind = kinds[i % kinds.len()].into();
                        let mut k = [0u8; 16];
                        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
                        UnitWrite {
                            record,
                            key: UnitKey(k),
                            vector: Some(vector(i)),
                        }
                    })
                    .collect::<Vec<_>>();
                let write = FileWrite {
                    file: FileEntry {
                        path: path.clone(),
                        hash: format!("h{part}{f}{per_file}"),
                        units: units.len() as u32,
                        bytes: 1,
                    },
                    units,
                };
                (repo.to_owned(), write)
            })
            .collect()
    };
    for (part, per_file) in [(0, 30), (1, 30), (2, 30), (0, 12)] {
        let mut w = store.writer().unwrap();
        for (repo, write) in files(part, per_file) {
            w.upsert_files(&repo, vec![write]).unwrap();
        }
        w.commit(&CancellationToken::new()).unwrap();
    }
    let r = store.reader().unwrap();
    let query = |filters: Filters, limit: usize| {
        r.lexical(&LexicalQuery {
            text: "parse header".into(),
            boosts: FieldBoosts::default(),
            filters,
            limit,
        })
        .unwrap()
    };
    let every = query(Filters::default(), 10_000);
    assert_eq!(every.len(), 12 * 4 + 30 * 4 * 2);
    let ids: Vec<_> = every.iter().map(|(id, _)| *id).collect();
    let units = r.units(&ids).unwrap();
    let globs = PathGlobs::new(["src/p1/**"]).unwrap();
    let function = || vec!["function".to_owned()];
    let cases: Vec<(&str, Filters, Box<dyn Fn(usize) -> bool>)> = vec![
        (
            "kind",
            Filters {
                kinds: function(),
                ..Filters::default()
            },
            Box::new(|i| units[i].record.kind == "function"),
        ),
        (
            "language",
            Filters {
                languages: vec!["python".into()],
                ..Filters::default()
            },
            Box::new(|i| units[i].record.language == "python"),
        ),
        (
            "repository (selective)",
            Filters {
                repositories: vec!["b".into()],
                kinds: function(),
                ..Filters::default()
            },
            Box::new(|i| units[i].repository == "b" && units[i].record.kind == "function"),
        ),
        (
            "path glob and kind",
            Filters {
                kinds: function(),
                path_globs: globs,
                ..Filters::default()
            },
            Box::new(|i| {
                units[i].record.path.starts_with("src/p1/") && units[i].record.kind == "function"
            }),
        ),
        (
            "exclusion and kind",
            Filters {
                kinds: function(),
                exclude_units: vec![ids[0]],
                ..Filters::default()
            },
            Box::new(|i| i != 0 && units[i].record.kind == "function"),
        ),
    ];
    for (what, filters, passes) in cases {
        let want: Vec<f32> = (0..every.len())
            .filter(|&i| passes(i))
            .map(|i| every[i].1)
            .take(10)
            .collect();
        assert!(!want.is_empty(), "{what}: no unit passes");
        let got = query(filters, 10);
        let scores: Vec<f32> = got.iter().map(|(_, s)| *s).collect();
        assert_eq!(scores.len(), want.len(), "{what}");
        for (g, w) in scores.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{what}: {scores:?} against {want:?}");
        }
        for (id, _) in &got {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert!(passes(i), "{what}: {} does not pass", units[i].record.name);
        }
    }
}

/// Writes units `u0`..`u{n-1}` of one file, unit `i` with the vector `vector_of(i)`, commits,
/// and runs the writer's maintenance (which builds the approximate index past the threshold).
fn numbered_units(store: &EmbeddedStore, n: u32, vector_of: impl Fn(u32) -> Vec<f32>) {
    let mut w = store.writer().unwrap();
    let units = (0..n)
        .map(|i| {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            UnitWrite {
                record: unit("a.py", "python", &format!("u{i}"), "def u(): pass", 1),
                key: UnitKey(k),
                vector: Some(vector_of(i)),
            }
        })
        .collect();
    let file = FileEntry {
        path: "a.py".into(),
        hash: "h".into(),
        units: n,
        bytes: 1,
    };
    w.upsert_files("r", vec![FileWrite { file, units }])
        .unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    w.maintain(&CancellationToken::new()).unwrap();
}

/// The approximate-index threshold is an option of the store (default 20,000 or
/// `$GNN_CODER_ANN_MIN_ROWS` read at open): lowered, a small index builds and uses the graph.
#[test]
fn the_approximate_index_threshold_is_an_option() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |store: &EmbeddedStore| numbered_units(store, 200, |i| vector(i as usize));
    let default = EmbeddedStore::open_or_create(&tmp.path().join("a"), Some(info())).unwrap();
    if std::env::var_os("GNN_CODER_ANN_MIN_ROWS").is_none() {
        assert_eq!(default.ann_min_rows(), 20_000);
    }
    let mut lowered = EmbeddedStore::open_or_create(&tmp.path().join("b"), Some(info())).unwrap();
    lowered.set_ann_min_rows(100);
    assert_eq!(lowered.ann_min_rows(), 100);
    write(&default);
    write(&lowered);
    if default.ann_min_rows() > 200 {
        assert_eq!(default.reader().unwrap().stats().unwrap().ann_vectors, 0);
    }
    let r = lowered.reader().unwrap();
    assert_eq!(r.stats().unwrap().ann_vectors, 200);
    assert_eq!(dense(r.as_ref(), 3, Filters::default(), 5).len(), 5);
}

/// A pseudo-random unit vector of `dim` dimensions (xorshift seeded by `i`).
fn random_unit_vector(i: u32, dim: usize) -> Vec<f32> {
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.into_iter().map(|a| a / n).collect()
}

/// Names and scores of the three units nearest `vector` (the graph walk, or `exact`).
fn top_three(r: &dyn StoreReader, vector: Vec<f32>, exact: bool) -> (Vec<String>, Vec<f32>) {
    let hits = r
        .vector(&VectorQuery {
            vector,
            filters: Filters::default(),
            limit: 3,
            exact,
        })
        .unwrap();
    let ids: Vec<_> = hits.iter().map(|(id, _)| *id).collect();
    let names = r
        .units(&ids)
        .unwrap()
        .into_iter()
        .map(|u| u.record.name)
        .collect();
    (names, hits.iter().map(|(_, s)| *s).collect())
}

/// The approximate index's file holds the graph and no second copy of the vectors (a reader
/// takes them from the rows): at 384 dimensions it is smaller than the codes alone would be,
/// and the graph walk over the vectors read back finds each unit's own vector first.
#[test]
fn the_approximate_index_file_holds_no_copy_of_the_vectors() {
    const D: usize = 384;
    const N: u32 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let wide = EmbeddingInfo { dim: D, ..info() };
    let vec_of = |i: u32| random_unit_vector(i, D);
    let mut store = EmbeddedStore::open_or_create(&dir, Some(wide)).unwrap();
    store.set_ann_min_rows(100);
    numbered_units(&store, N, vec_of);
    let ann: Vec<u64> = fs::read_dir(dir.join("vectors"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ann-"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(ann.len(), 1);
    assert!(
        ann[0] < u64::from(N) * D as u64,
        "{} bytes: the codes alone are {}",
        ann[0],
        N as usize * D
    );
    drop(store);
    let mut store = EmbeddedStore::open(&dir).unwrap();
    store.set_ann_min_rows(100);
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().ann_vectors, u64::from(N));
    for i in [0, 7, 150, N - 1] {
        let (names, _) = top_three(r.as_ref(), vec_of(i), false);
        assert_eq!(names[0], format!("u{i}"));
    }
}

/// The store hands out one snapshot while nothing is committed (a reload per query cost more
/// than the query), and a commit by another handle (as by another process) is seen at the next
/// request: new units found in both legs, deleted ones gone, with the per-segment columns of the
/// segments both commits share reused.
#[test]
fn snapshots_are_reused_until_any_handle_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    let a = store.snapshot().unwrap();
    let b = store.snapshot().unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&a, &b),
        "no commit: the same snapshot"
    );
    // Filters build the per-segment columns of the first snapshot.
    let rust = Filters {
        languages: vec!["rust".into()],
        ..Filters::default()
    };
    assert_eq!(
        dense(a.as_ref(), 0, rust.clone(), 1),
        vec!["alpha:parse_size"]
    );

    let other = EmbeddedStore::open(&dir).unwrap();
    let mut w = other.writer().unwrap();
    w.upsert_files(
        "beta",
        vec![file(
            "lib/size.rs",
            "rust",
            &[("parse_bytes", "fn parse_bytes(s: &str) -> u64 { 1 }", 4)],
        )],
    )
    .unwrap();
    w.delete_files("alpha", &["src/size.rs".into()]).unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);

    let c = store.snapshot().unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&a, &c),
        "a commit elsewhere: a new snapshot"
    );
    assert_eq!(
        dense(c.as_ref(), 0, rust.clone(), 5),
        vec!["beta:parse_bytes"]
    );
    assert_eq!(
        lexical(c.as_ref(), "size", Filters::default()),
        vec!["beta:parse_bytes"],
        "the deleted parse_size is gone, the new file found"
    );
    // The old snapshot still answers from its commit.
    assert_eq!(dense(a.as_ref(), 0, rust, 5), vec!["alpha:parse_size"]);
    assert!(std::sync::Arc::ptr_eq(&c, &store.snapshot().unwrap()));
}

/// Texts outside the index score as `lexical` scores the same texts inside it (the overlay of
/// unsaved buffers ranks by this), boosts included; a text without the terms scores 0.
#[test]
fn outside_texts_score_as_indexed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated(&tmp.path().join("idx"));
    let r = store.reader().unwrap();
    for boosts in [
        FieldBoosts::default(),
        FieldBoosts {
            name: 5.0,
            ..FieldBoosts::default()
        },
    ] {
        let q = LexicalQuery {
            text: "parse header size".into(),
            boosts,
            filters: Filters::default(),
            limit: 10,
        };
        let ranked = r.lexical(&q).unwrap();
        assert_eq!(ranked.len(), 3);
        let units = r
            .units(&ranked.iter().map(|(id, _)| *id).collect::<Vec<_>>())
            .unwrap();
        let mut records: Vec<UnitRecord> = units.into_iter().map(|u| u.record).collect();
        records.push(unit(
            "x.py",
            "python",
            "unrelated",
            "def unrelated(): pass",
            1,
        ));
        let scores = r
            .lexical_scores(&q, &records)
            .unwrap()
            .expect("the embedded store scores texts");
        for ((_, indexed), outside) in ranked.iter().zip(&scores) {
            assert!((indexed - outside).abs() < 1e-4, "{indexed} vs {outside}");
        }
        assert_eq!(scores[3], 0.0);
    }
}

/// A Python file `path` holding one function `name` under key `k` (vector `k`).
fn one_function_file(path: &str, name: &str, k: u8) -> FileWrite {
    FileWrite {
        file: FileEntry {
            path: path.into(),
            hash: format!("h{k}"),
            units: 1,
            bytes: 10,
        },
        units: vec![UnitWrite {
            record: unit(path, "python", name, &format!("def {name}{k}(): pass"), 1),
            key: key(k),
            vector: Some(vector(k as usize)),
        }],
    }
}

/// A writer reuses what the previous writer of the same process knew of the row files, and
/// only while no other writer (another process) committed since: a key another handle added
/// is known to the next writer here.
#[test]
fn writers_reuse_row_state_only_while_it_is_current() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    let new_file = |path: &str, k: u8| one_function_file(path, "f", k);
    {
        let mut w = store.writer().unwrap();
        assert_eq!(w.known_keys(&[key(0), key(7)]).unwrap(), [true, false]);
        w.upsert_files("alpha", vec![new_file("a7.py", 7)]).unwrap();
        w.commit(&CancellationToken::new()).unwrap();
    }
    {
        // The same process: the key written by the last writer is known.
        let w = store.writer().unwrap();
        assert_eq!(w.known_keys(&[key(7), key(6)]).unwrap(), [true, false]);
    }
    {
        let other = EmbeddedStore::open(&dir).unwrap();
        let mut w = other.writer().unwrap();
        w.upsert_files("alpha", vec![new_file("a6.py", 6)]).unwrap();
        w.commit(&CancellationToken::new()).unwrap();
    }
    let mut w = store.writer().unwrap();
    assert_eq!(
        w.known_keys(&[key(7), key(6)]).unwrap(),
        [true, true],
        "a commit elsewhere invalidates the kept state"
    );
    // And rows appended now land after the other writer's.
    w.upsert_files("alpha", vec![new_file("a5.py", 5)]).unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    drop(w);
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().vectors, 7);
    assert_eq!(dense(r.as_ref(), 6, Filters::default(), 1), vec!["alpha:f"]);
    assert_eq!(dense(r.as_ref(), 5, Filters::default(), 1), vec!["alpha:f"]);
}

/// `prepare_writes` builds the key map a first writer needs ahead of it, from the committed
/// record: the writer then knows the committed keys, a commit by another handle in between
/// makes the prepared map stale and unused, and damaged keys are refused rather than mapped.
#[test]
fn prepared_writes_know_the_committed_keys_and_refuse_damaged_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    let one_unit = |path: &str, k: u8| one_function_file(path, "g", k);
    // Prepared and current: the first writer knows every committed key, and writes.
    let fresh = EmbeddedStore::open(&dir).unwrap();
    fresh.prepare_writes().unwrap();
    fresh.prepare_writes().unwrap();
    {
        let mut w = fresh.writer().unwrap();
        assert_eq!(
            w.known_keys(&[key(0), key(1), key(7)]).unwrap(),
            [true, true, false]
        );
        w.upsert_files("alpha", vec![one_unit("g7.py", 7)]).unwrap();
        w.commit(&CancellationToken::new()).unwrap();
    }
    // Prepared, then another handle commits: the prepared map is stale and not used.
    let late = EmbeddedStore::open(&dir).unwrap();
    late.prepare_writes().unwrap();
    {
        let mut w = store.writer().unwrap();
        w.upsert_files("alpha", vec![one_unit("g6.py", 6)]).unwrap();
        w.commit(&CancellationToken::new()).unwrap();
    }
    {
        let w = late.writer().unwrap();
        assert_eq!(
            w.known_keys(&[key(7), key(6), key(5)]).unwrap(),
            [true, true, false],
            "a commit after the preparation is known"
        );
    }
    let r = late.reader().unwrap();
    assert_eq!(dense(r.as_ref(), 6, Filters::default(), 1), vec!["alpha:g"]);
    drop(r);
    drop((store, fresh, late));
    // A flipped byte among the committed keys: damage, named by its file.
    let keys = dir.join("vectors/keys.bin");
    let mut bytes = fs::read(&keys).unwrap();
    bytes[3] ^= 0x40;
    fs::write(&keys, bytes).unwrap();
    let err = EmbeddedStore::open(&dir)
        .unwrap()
        .prepare_writes()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    assert!(err.to_string().contains("keys.bin"), "{err}");
    // An index without vectors has nothing to prepare.
    let lexical = EmbeddedStore::open_or_create(&tmp.path().join("lex"), None).unwrap();
    lexical.prepare_writes().unwrap();
}

/// Writes `path` of repository `beta` as one Python function `name`, deletes `delete` (if any),
/// and commits: one update, one segment.
fn save_function(store: &EmbeddedStore, path: &str, name: &str, delete: Option<String>) {
    let mut w = store.writer().unwrap();
    w.upsert_files(
        "beta",
        vec![file(
            path,
            "python",
            &[(name, &format!("def {name}(): pass"), 3)],
        )],
    )
    .unwrap();
    if let Some(d) = delete {
        w.delete_files("beta", &[d]).unwrap();
    }
    w.commit(&CancellationToken::new()).unwrap();
}

/// At most a dozen segments once the merges have ended.
fn assert_segments_bounded(store: &EmbeddedStore) {
    let n = store.snapshot().unwrap().segment_count();
    assert!(n <= 12, "{n} segments");
}

/// One commit per update makes one segment per update; commits merge the smallest segments so
/// that a long session of updates keeps a few, with every unit still found and deletes gone.
#[test]
fn commits_keep_the_segment_count_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let store = populated(&tmp.path().join("idx"));
    for i in 0..40u8 {
        let delete = (i % 10 == 9).then(|| format!("lib/m{}.py", i - 1));
        save_function(
            &store,
            &format!("lib/m{i}.py"),
            &format!("handler_{i}"),
            delete,
        );
    }
    // Commits merge in the background, with later commits and deletes arriving meanwhile.
    store.finish_merges();
    assert_segments_bounded(&store);
    let r = store.reader().unwrap();
    assert_eq!(
        lexical(r.as_ref(), "handler_39", Filters::default())[0],
        "beta:handler_39"
    );
    assert_eq!(
        lexical(r.as_ref(), "handler_0", Filters::default())[0],
        "beta:handler_0"
    );
    assert!(
        !lexical(r.as_ref(), "handler_8", Filters::default()).contains(&"beta:handler_8".into()),
        "deleted"
    );
    assert_eq!(r.files("beta").unwrap().len(), 1 + 40 - 4);
    // The merged segments' files are gone from the directory.
    let files = fs::read_dir(tmp.path().join("idx/lexical"))
        .unwrap()
        .count();
    assert!(files < 12 * 10, "{files} files in lexical/");
}

/// A merge outlives the writer that started it (its commit does not wait), and the store
/// waits for it when it is dropped, so a short-lived process still leaves the merged segments;
/// meanwhile the store's next writer takes the merging one back instead of finding it locked.
#[test]
fn merges_end_after_their_writer_and_before_their_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    let before = store.snapshot().unwrap().segment_count();
    let commits = 13usize.saturating_sub(before).max(1);
    for i in 0..commits {
        save_function(&store, &format!("lib/n{i}.py"), &format!("task_{i}"), None);
    }
    assert!(
        before + commits > 12,
        "{before} + {commits} segments start no merge"
    );
    drop(store);
    // Had the merge died with its writer, the thirteen segments would still be there.
    let store = EmbeddedStore::open(&dir).unwrap();
    assert_segments_bounded(&store);
    let r = store.reader().unwrap();
    for i in 0..commits {
        let name = format!("task_{i}");
        assert_eq!(
            lexical(r.as_ref(), &name, Filters::default())[0],
            format!("beta:{name}")
        );
    }
    // The lock was released with the merging writer: another writer opens.
    drop(store.writer().unwrap());
}

/// An editor saves one file again and again while merges run: each save empties the segment of
/// the one before (tantivy drops it at commit). The merges land, with the file's last save only.
/// (Which segments a merge takes, the newest left out, is pinned by the writer's unit test: a
/// merge holding the newest one fails when the next save commits before it ends, a race that
/// small test segments rarely lose.)
#[test]
fn saving_one_file_again_and_again_still_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let store = populated(&dir);
    for i in 0..24 {
        let path = if i < 12 {
            format!("lib/s{i}.py")
        } else {
            "lib/edited.py".to_string()
        };
        save_function(&store, &path, &format!("step_{i}"), None);
    }
    store.finish_merges();
    assert_segments_bounded(&store);
    let r = store.reader().unwrap();
    assert_eq!(
        lexical(r.as_ref(), "step_23", Filters::default())[0],
        "beta:step_23"
    );
    assert!(
        !lexical(r.as_ref(), "step_22", Filters::default()).contains(&"beta:step_22".into()),
        "the file's earlier save is gone"
    );
    assert_eq!(
        lexical(r.as_ref(), "step_3", Filters::default())[0],
        "beta:step_3"
    );
}

/// An index created with int4 codes keeps them in `rows.i4` (4 + dim / 2 bytes a row), says so
/// in its manifest and keeps them when opened asking for others; the approximate index is
/// built from those rows, and both the graph walk and the exact scan find each unit's own
/// vector first, with a score near 1. A cut rows file is damage named by its file.
#[test]
fn int4_rows_hold_half_the_bytes_and_find_the_same_units() {
    const D: usize = 384;
    const N: u32 = 300;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let wide = EmbeddingInfo { dim: D, ..info() };
    let vec_of = |i: u32| random_unit_vector(i, D);
    let mut store =
        EmbeddedStore::open_or_create_with(&dir, Some(wide.clone()), VectorCodes::Int4).unwrap();
    assert_eq!(store.manifest().vector_codes(), VectorCodes::Int4);
    store.set_ann_min_rows(100);
    numbered_units(&store, N, vec_of);
    let rows = dir.join("vectors/rows.i4");
    assert_eq!(
        fs::metadata(&rows).unwrap().len(),
        u64::from(N) * (4 + D as u64 / 2)
    );
    assert!(!dir.join("vectors/rows.i8").exists());
    drop(store);
    // Opened asking for int8, it stays int4.
    let mut store =
        EmbeddedStore::open_or_create_with(&dir, Some(wide), VectorCodes::Int8).unwrap();
    assert_eq!(store.manifest().vector_codes(), VectorCodes::Int4);
    assert_eq!(store.manifest().vector_encoding, "int4");
    store.set_ann_min_rows(100);
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().ann_vectors, u64::from(N));
    for exact in [false, true] {
        for i in [0, 7, 150, N - 1] {
            let (names, scores) = top_three(r.as_ref(), vec_of(i), exact);
            assert_eq!(names[0], format!("u{i}"), "exact {exact}");
            assert!((scores[0] - 1.0).abs() < 0.05, "score {}", scores[0]);
            // Random vectors are nearly orthogonal: the rest score far below.
            assert!(scores[1] < 0.5, "second score {}", scores[1]);
        }
    }
    drop(r);
    drop(store);
    let f = fs::OpenOptions::new().write(true).open(&rows).unwrap();
    f.set_len(u64::from(N - 1) * (4 + D as u64 / 2)).unwrap();
    drop(f);
    let err = EmbeddedStore::open(&dir)
        .and_then(|s| s.reader().map(|_| ()))
        .unwrap_err();
    assert!(err.to_string().contains("rows.i4"), "{err}");
}
