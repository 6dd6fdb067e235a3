//! Issue 22, classes 1 and 4: what the engine reads stays inside a repository's root whatever
//! races on the path (a component exchanged for a symbolic link with
//! `renameat2(RENAME_EXCHANGE)` in a loop, against every entry point), and file names that are
//! not UTF-8 are kept exact.

use std::fs;
use std::path::{Path, PathBuf};

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, FileOutcome, FileUpdate, IndexOptions, SearchRequest,
};

const SECRET: &str = "topsecret_escape_marker";

fn lexical() -> EngineOptions {
    EngineOptions {
        lexical_only: true,
        threads: 2,
        ..EngineOptions::default()
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn inside_code(i: usize) -> String {
    format!("def inside_function_{i}():\n    return {i}\n")
}

fn secret_code() -> String {
    format!("def {SECRET}():\n    return '{SECRET}'\n")
}

/// Whether anything indexed holds the secret (searched by its words, checked on the code).
fn escaped(engine: &Engine) -> bool {
    let mut req = SearchRequest::new("topsecret escape marker", 50);
    req.demote_tests = false;
    engine
        .search(&req)
        .unwrap()
        .iter()
        .any(|h| h.unit.code.contains(SECRET) || h.unit.symbol.contains(SECRET))
}

#[cfg(target_os = "linux")]
mod races {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    /// How long each race runs: long enough for many attempts, short enough for CI.
    const RACE: Duration = Duration::from_millis(2500);

    /// Exchanges `a` and `b` (a real entry and a symbolic link out) until dropped; counts swaps.
    struct Swapper {
        stop: Arc<AtomicBool>,
        swaps: Arc<AtomicU64>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Swapper {
        fn start(a: PathBuf, b: PathBuf) -> Swapper {
            let stop = Arc::new(AtomicBool::new(false));
            let swaps = Arc::new(AtomicU64::new(0));
            let (s, n) = (stop.clone(), swaps.clone());
            let thread = std::thread::spawn(move || {
                use rustix::fs::{CWD, RenameFlags, renameat_with};
                while !s.load(Ordering::Relaxed) {
                    renameat_with(CWD, &a, CWD, &b, RenameFlags::EXCHANGE).expect("exchange");
                    n.fetch_add(1, Ordering::Relaxed);
                }
            });
            Swapper {
                stop,
                swaps,
                thread: Some(thread),
            }
        }

        /// Stops; the number of exchanges (even: both names as they started).
        fn stop(mut self) -> u64 {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
            self.swaps.load(Ordering::Relaxed)
        }
    }

    impl Drop for Swapper {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// `base/repo` (a directory of files) and `base/outside` with the same names holding the
    /// secret; the base is canonical.
    fn layout(tmp: &Path, files: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
        let base = tmp.canonicalize().unwrap();
        let (repo, outside) = (base.join("repo"), base.join("outside"));
        for (i, f) in files.iter().enumerate() {
            write(&repo.join(f), &inside_code(i));
            write(&outside.join(f), &secret_code());
        }
        (base, repo, outside)
    }

    fn update_race(target: &str, swap_a: &str, link_to: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let (base, repo, outside) = layout(tmp.path(), &["a.py", "sub/b.py", "keep.py"]);
        let engine = Engine::open_or_create(&base.join("idx"), lexical(), false).unwrap();
        engine
            .index_repository(
                &IndexOptions::new(&repo).named("r"),
                &|_| {},
                &CancellationToken::new(),
            )
            .unwrap();
        std::os::unix::fs::symlink(outside.join(link_to), repo.join("swap_link")).unwrap();
        let swapper = Swapper::start(repo.join(swap_a), repo.join("swap_link"));
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let (mut runs, mut indexed, mut refused) = (0, 0, 0);
        while started.elapsed() < RACE {
            let s = engine
                .update_files(
                    "r",
                    &[FileUpdate {
                        path: target.into(),
                        ..FileUpdate::default()
                    }],
                    &cancel,
                )
                .unwrap();
            runs += 1;
            match &s.files[0].outcome {
                FileOutcome::Indexed { .. } | FileOutcome::Unchanged => indexed += 1,
                _ => refused += 1,
            }
            assert!(!escaped(&engine), "escaped on run {runs}: {s:?}");
        }
        let swaps = swapper.stop();
        eprintln!("{target}: {swaps} swaps, {runs} runs, {indexed} read, {refused} refused");
        assert!(swaps > 100 && runs > 10, "{swaps} swaps, {runs} runs");
        // Both sides of the race were seen: the real file and the link.
        assert!(
            indexed > 0 && refused > 0,
            "{indexed} indexed, {refused} refused"
        );
    }

    #[test]
    fn update_of_a_swapped_file_stays_inside() {
        update_race("a.py", "a.py", "a.py");
    }

    #[test]
    fn update_below_a_swapped_directory_stays_inside() {
        update_race("sub/b.py", "sub", "sub");
    }

    /// As the server does: validate (the root resolved and held once), check the held path
    /// against the allowed root, index through the handle.
    #[test]
    fn index_of_a_swapped_root_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let (base, _repo, outside) = layout(tmp.path(), &["a.py", "sub/b.py"]);
        // The allowed root holds `allowed/repo` and a link beside it to the outside.
        let allowed = base.join("allowed");
        fs::create_dir_all(&allowed).unwrap();
        fs::rename(base.join("repo"), allowed.join("repo")).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("swap_link")).unwrap();
        let engine = Engine::open_or_create(&base.join("idx"), lexical(), false).unwrap();
        let first = IndexOptions::new(allowed.join("repo")).named("r");
        engine
            .index_repository(&first, &|_| {}, &CancellationToken::new())
            .unwrap();
        let swapper = Swapper::start(allowed.join("repo"), allowed.join("swap_link"));
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let (mut runs, mut indexed, mut refused) = (0, 0, 0);
        while started.elapsed() < RACE {
            runs += 1;
            let opts = IndexOptions::new(allowed.join("repo")).named("r");
            let Ok(valid) = opts.validate() else {
                refused += 1;
                continue;
            };
            if !valid.root().starts_with(&allowed) {
                refused += 1;
                continue;
            }
            // A run may fail (the repository's root changed); it must not read outside.
            if engine.index_repository(&valid, &|_| {}, &cancel).is_ok() {
                indexed += 1;
            }
            assert!(!escaped(&engine), "escaped on run {runs}");
        }
        let swaps = swapper.stop();
        eprintln!("root: {swaps} swaps, {runs} runs, {indexed} indexed, {refused} refused");
        assert!(swaps > 100 && runs > 10, "{swaps} swaps, {runs} runs");
        assert!(
            indexed > 0 && refused > 0,
            "{indexed} indexed, {refused} refused"
        );
    }

    /// A subdirectory exchanged with a link while the walk runs.
    #[test]
    fn a_directory_swapped_during_the_walk_stays_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<String> = (0..60).map(|i| format!("sub/m{i}.py")).collect();
        let names: Vec<&str> = files.iter().map(String::as_str).collect();
        let (base, repo, outside) = layout(tmp.path(), &names);
        // Names only the outside has, some of them skipped by name alone.
        for n in ["py", "min.js", "pyc"] {
            write(&outside.join(format!("sub/{SECRET}.{n}")), &secret_code());
        }
        std::os::unix::fs::symlink(outside.join("sub"), repo.join("swap_link")).unwrap();
        let engine = Engine::open_or_create(&base.join("idx"), lexical(), false).unwrap();
        let swapper = Swapper::start(repo.join("sub"), repo.join("swap_link"));
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let mut runs = 0;
        let mut files_seen = 0;
        while started.elapsed() < RACE {
            runs += 1;
            let opts = IndexOptions::new(&repo).named("r");
            let events = std::sync::Mutex::new(Vec::new());
            let on_event = |e: &gnn_coder_engine::IndexEvent| {
                events.lock().unwrap().push(format!("{e:?}"));
            };
            if let Ok(s) = engine.index_repository(&opts, &on_event, &cancel) {
                files_seen += s.files;
            }
            assert!(!escaped(&engine), "escaped on run {runs}");
            for e in events.into_inner().unwrap() {
                assert!(!e.contains(SECRET), "an outside name on run {runs}: {e}");
            }
        }
        let swaps = swapper.stop();
        eprintln!("walk: {swaps} swaps, {runs} runs, {files_seen} files read in all");
        assert!(swaps > 100 && runs > 5, "{swaps} swaps, {runs} runs");
        assert!(files_seen > 0, "the walk never read the real directory");
    }
}

/// Two names that differ only in bytes that are not UTF-8 are two files, found by search,
/// unchanged on refresh, and updated by their exact text.
#[cfg(unix)]
#[test]
fn names_that_are_not_utf8_stay_distinct() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    let ff = repo.join(OsStr::from_bytes(b"bad\xffname.py"));
    let fe = repo.join(OsStr::from_bytes(b"bad\xfename.py"));
    if fs::write(&ff, "def alpha_in_ff():\n    return 1\n").is_err() {
        return; // a file system that refuses such names
    }
    fs::write(&fe, "def beta_in_fe():\n    return 2\n").unwrap();
    fs::write(
        repo.join("back\\slash.py"),
        "def gamma_backslash():\n    return 3\n",
    )
    .unwrap();
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    let index = || {
        engine
            .index_repository(
                &IndexOptions::new(&repo).named("r"),
                &|_| {},
                &CancellationToken::new(),
            )
            .unwrap()
    };
    let s = index();
    assert_eq!((s.files, s.units, s.files_added), (3, 3, 3), "{s:?}");
    let path_of = |q: &str| {
        let hits = engine.search(&SearchRequest::new(q, 5)).unwrap();
        let hit = hits.iter().find(|h| h.unit.symbol == q);
        hit.unwrap_or_else(|| panic!("{q} not found: {hits:?}"))
            .unit
            .path
            .clone()
    };
    assert_eq!(path_of("alpha_in_ff"), "bad\\xffname.py");
    assert_eq!(path_of("beta_in_fe"), "bad\\xfename.py");
    assert_eq!(path_of("gamma_backslash"), "back\\\\slash.py");
    // A path glob matches the text, `\\` for its backslash.
    let mut req = SearchRequest::new("alpha_in_ff beta_in_fe", 5);
    req.path_globs = vec!["bad\\\\xff*".into()];
    let hits = engine.search(&req).unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].unit.symbol, "alpha_in_ff");

    let s = index();
    assert_eq!(
        (
            s.files_added,
            s.files_changed,
            s.files_removed,
            s.files_unchanged
        ),
        (0, 0, 0, 3),
        "a refresh sees no change: {s:?}"
    );

    // An update names each file by its exact text.
    fs::write(&ff, "def alpha_changed():\n    return 1\n").unwrap();
    fs::write(&fe, "def beta_changed():\n    return 2\n").unwrap();
    let cancel = CancellationToken::new();
    let update = |path: &str| {
        engine
            .update_files(
                "r",
                &[FileUpdate {
                    path: path.into(),
                    ..FileUpdate::default()
                }],
                &cancel,
            )
            .unwrap()
    };
    for p in ["bad\\xffname.py", "bad\\xfename.py"] {
        let s = update(p);
        assert_eq!(s.files[0].outcome, FileOutcome::Indexed { units: 1 }, "{p}");
    }
    assert_eq!(path_of("alpha_changed"), "bad\\xffname.py");
    assert_eq!(path_of("beta_changed"), "bad\\xfename.py");
    assert_eq!(
        update("back\\\\slash.py").files[0].outcome,
        FileOutcome::Unchanged
    );
    // The lossy name is no file: nothing indexed goes.
    let s = update("bad\u{fffd}name.py");
    assert_eq!(s.units_removed, 0, "{s:?}");
    assert_eq!(engine.repository("r").unwrap().files, 3);
    let s = index();
    assert_eq!((s.files, s.files_unchanged), (3, 3), "{s:?}");
}
