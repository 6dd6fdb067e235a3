//! A repository's file and unit counts are those of its committed documents (issue 22, class
//! 4): concurrent updates do not lose additions, and an interrupted run does not leave counts
//! that disagree with what is searchable.

use std::fs;
use std::path::Path;

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, ErrorKind, FileUpdate, IndexEvent, IndexOptions,
};

fn lexical() -> EngineOptions {
    EngineOptions {
        lexical_only: true,
        threads: 2,
        ..EngineOptions::default()
    }
}

/// A Python file of two functions.
fn write(root: &Path, rel: &str, n: usize) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(
        p,
        format!(
            "def first_{n}(x):\n    return x + {n}\n\n\ndef second_{n}(y):\n    return y * {n}\n"
        ),
    )
    .unwrap();
}

/// The bytes of the files below `dir`.
fn bytes_below(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            bytes_below(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn concurrent_updates_keep_exact_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    for i in 0..20 {
        write(&root, &format!("base/f{i}.py"), i);
    }
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    let mut opts = IndexOptions::new(&root);
    opts.name = Some("r".into());
    engine
        .index_repository(&opts, &|_| {}, &CancellationToken::new())
        .unwrap();
    let r = engine.repository("r").unwrap();
    assert_eq!((r.files, r.units), (20, 40));

    // Four clients each add ten new files at the same time, five times over.
    const ROUNDS: usize = 5;
    for round in 0..ROUNDS {
        for t in 0..4 {
            for i in 0..10 {
                write(
                    &root,
                    &format!("new{round}-{t}/f{i}.py"),
                    1000 * round + 100 * (t + 1) + i,
                );
            }
        }
    }
    for round in 0..ROUNDS {
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4 {
                let engine = &engine;
                let start = &start;
                s.spawn(move || {
                    let updates: Vec<FileUpdate> = (0..10)
                        .map(|i| FileUpdate {
                            path: format!("new{round}-{t}/f{i}.py"),
                            ..FileUpdate::default()
                        })
                        .collect();
                    start.wait();
                    // Another client's update of the same repository may be running: retry.
                    loop {
                        match engine.update_files("r", &updates, &CancellationToken::new()) {
                            Ok(_) => break,
                            Err(e) if e.kind() == ErrorKind::Locked => {
                                std::thread::sleep(std::time::Duration::from_millis(5))
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                });
            }
        });
    }
    let want = 20 + 40 * ROUNDS as u64;
    let r = engine.repository("r").unwrap();
    assert_eq!(
        (r.files, r.units),
        (want, 2 * want),
        "no update's additions lost"
    );
    let stats = engine.stats().unwrap();
    assert_eq!((stats.files, stats.units), (want, 2 * want));
    assert_eq!(r.bytes, bytes_below(&root), "no update's bytes lost");

    // Removals count as well.
    let gone: Vec<FileUpdate> = (0..5)
        .map(|i| FileUpdate {
            path: format!("base/f{i}.py"),
            deleted: true,
            ..FileUpdate::default()
        })
        .collect();
    engine
        .update_files("r", &gone, &CancellationToken::new())
        .unwrap();
    let r = engine.repository("r").unwrap();
    assert_eq!((r.files, r.units), (want - 5, 2 * (want - 5)));
}

#[test]
fn counts_after_an_interrupted_run_are_what_is_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    for i in 0..700 {
        write(&root, &format!("d{}/f{i}.py", i % 7), i);
    }
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    let mut opts = IndexOptions::new(&root);
    opts.name = Some("r".into());
    opts.commit_every = 50;
    // Stopped right after its first commit, as a kill would stop it.
    let cancel = CancellationToken::new();
    let err = engine
        .index_repository(
            &opts,
            &|e| {
                if matches!(e, IndexEvent::Committed { .. }) {
                    cancel.cancel();
                }
            },
            &cancel,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    let stats = engine.stats().unwrap();
    assert!(stats.files > 0 && stats.files < 700, "{stats:?}");
    let r = engine.repository("r").unwrap();
    assert_eq!(
        (r.files, r.units),
        (stats.files, stats.units),
        "the counts are the committed files'"
    );
    assert_eq!(r.units, 2 * r.files);
}
