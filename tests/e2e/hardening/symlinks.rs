//! Class 1 of issue 22: no escape from `--allow-root` through symlink races. A thread exchanges
//! a path component with a symbolic link to an outside directory (`renameat2(RENAME_EXCHANGE)`
//! in a loop) while a real client drives `gnn-coder serve` through every entry point that reads
//! files: `UpdateFiles` of a swapped file, `UpdateFiles` below a swapped directory, a walk with
//! a subdirectory swapped, and `IndexRepository` of a swapped root. The outside files hold a
//! secret; it must never come back in any hit, snippet or event.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gnn_coder_service::client::Client;
use gnn_coder_service::proto as pb;

use crate::support::{Server, search};

const SECRET: &str = "topsecret_escape_marker";
/// Each phase's share of the race: many attempts, a few seconds in all.
const PHASE: Duration = Duration::from_millis(1500);

/// Exchanges two paths until stopped; errors (a side briefly missing) are retried.
struct Swapper {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    paths: (PathBuf, PathBuf),
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), swaps.clone());
        let paths = (a.clone(), b.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if exchange(&a, &b) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Swapper {
            stop,
            swaps,
            thread: Some(thread),
            paths,
        }
    }

    /// Stops and puts both names back as they started; the number of exchanges.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let swaps = self.swaps.load(Ordering::Relaxed);
        if swaps % 2 == 1 {
            assert!(exchange(&self.paths.0, &self.paths.1));
        }
        swaps
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

fn exchange(a: &Path, b: &Path) -> bool {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).is_ok()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Fails the test when the secret shows in a search's hits (path, symbol or snippet).
async fn assert_no_escape(c: &mut Client, what: &str) {
    let hits = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            top_k: 50,
            ..search("topsecret escape marker")
        })
        .await
        .map(|r| r.into_inner().hits)
        .unwrap_or_default();
    for h in hits {
        let text = format!("{} {} {}", h.path, h.symbol, h.snippet.join("\n"));
        assert!(!text.contains(SECRET), "escaped through {what}: {h:?}");
    }
}

/// Runs an index request to its end, whatever the outcome; fails on a secret in any event.
async fn index_any(c: &mut Client, root: &Path) -> bool {
    let req = pb::IndexRepositoryRequest {
        root: root.to_string_lossy().into_owned(),
        name: "r".into(),
        ..Default::default()
    };
    let Ok(stream) = c.index_repository(req).await else {
        return false;
    };
    let mut stream = stream.into_inner();
    let mut ok = false;
    while let Ok(Some(e)) = stream.message().await {
        let text = format!("{e:?}");
        assert!(!text.contains(SECRET), "escaped in an event: {text}");
        ok |= matches!(e.event, Some(pb::index_event::Event::Summary(_)));
    }
    ok
}

/// `UpdateFiles` of one path read from disk; whether it indexed the file.
async fn update_any(c: &mut Client, path: &str) -> bool {
    let req = pb::UpdateFilesRequest {
        repository: "r".into(),
        changes: vec![pb::FileChange {
            path: path.into(),
            contents: None,
            deleted: false,
        }],
        unsaved: false,
    };
    match c.update_files(req).await {
        Ok(r) => r
            .into_inner()
            .files
            .iter()
            .any(|f| f.outcome == "indexed" || f.outcome == "unchanged"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_races_never_leave_the_allowed_root() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let (allowed, outside) = (base.join("allowed"), base.join("outside"));
    let repo = allowed.join("repo");
    let names: Vec<String> = ["a.py".to_string()]
        .into_iter()
        .chain((0..40).map(|i| format!("sub/m{i}.py")))
        .collect();
    for (i, n) in names.iter().enumerate() {
        write(
            &repo.join(n),
            &format!("def inside_function_{i}():\n    return {i}\n"),
        );
        write(
            &outside.join(n),
            &format!("def {SECRET}():\n    return '{SECRET}'\n"),
        );
    }
    let link = |at: &Path, to: &Path| std::os::unix::fs::symlink(to, at).unwrap();
    link(&repo.join("a_link.py"), &outside.join("a.py"));
    link(&repo.join("sub_link"), &outside.join("sub"));
    link(&allowed.join("repo_link"), &outside);
    let server = Server::start(
        &base.join("idx"),
        &["--lexical-only", "--allow-root", allowed.to_str().unwrap()],
    );
    let mut c = server.client().await;
    assert!(index_any(&mut c, &repo).await, "{}", server.log());
    assert_no_escape(&mut c, "a plain index").await;

    // UpdateFiles of a file exchanged with a link to an outside file.
    let swapper = Swapper::start(repo.join("a.py"), repo.join("a_link.py"));
    let (t, mut runs, mut read) = (Instant::now(), 0, 0);
    while t.elapsed() < PHASE {
        runs += 1;
        read += u32::from(update_any(&mut c, "a.py").await);
        assert_no_escape(&mut c, "UpdateFiles of a swapped file").await;
    }
    let swaps = swapper.stop();
    assert!(
        swaps > 100 && runs > 10 && read > 0,
        "{swaps} swaps, {runs} runs, {read} read"
    );

    // UpdateFiles below, and a walk through, a directory exchanged with a link.
    let swapper = Swapper::start(repo.join("sub"), repo.join("sub_link"));
    let (t, mut runs, mut read) = (Instant::now(), 0, 0);
    while t.elapsed() < PHASE {
        runs += 1;
        read += u32::from(update_any(&mut c, "sub/m3.py").await);
        assert_no_escape(&mut c, "UpdateFiles below a swapped directory").await;
        index_any(&mut c, &repo).await;
        assert_no_escape(&mut c, "a walk through a swapped directory").await;
    }
    let swaps = swapper.stop();
    assert!(
        swaps > 100 && runs > 3 && read > 0,
        "{swaps} swaps, {runs} runs, {read} read"
    );

    // IndexRepository (and UpdateFiles) of a root exchanged with a link out of the allowed root.
    let swapper = Swapper::start(repo.clone(), allowed.join("repo_link"));
    let (t, mut runs, mut indexed) = (Instant::now(), 0, 0);
    while t.elapsed() < PHASE {
        runs += 1;
        indexed += u32::from(index_any(&mut c, &repo).await);
        assert_no_escape(&mut c, "IndexRepository of a swapped root").await;
        update_any(&mut c, "a.py").await;
        assert_no_escape(&mut c, "UpdateFiles in a swapped root").await;
    }
    let swaps = swapper.stop();
    assert!(
        swaps > 100 && runs > 3,
        "{swaps} swaps, {runs} runs, {indexed} indexed"
    );

    // Afterwards the repository indexes normally.
    assert!(index_any(&mut c, &repo).await, "{}", server.log());
    assert_no_escape(&mut c, "the last index").await;
    let hits = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("inside_function_0")
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert!(hits.iter().any(|h| h.path == "a.py"), "{hits:?}");
}
