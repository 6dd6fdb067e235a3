//! Crash safety and locking of `gnn-coder index`, with real processes: SIGKILL at random
//! moments of indexing never leaves an index that fails to open, never shows half a file, and
//! the next run completes the work; a second writer is refused with the first one's PID, and
//! the lock of a killed writer does not block the next.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gnn-coder");
const FILES: usize = 60;
const UNITS_PER_FILE: usize = 3;

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// File `i` of version `v`: three functions that all mention `common`.
fn write_file(root: &Path, i: usize, v: usize) {
    let dir = root.join(format!("pkg{}", i % 6));
    fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for u in 0..UNITS_PER_FILE {
        text.push_str(&format!(
            "def f{i}_{u}_v{v}(x):\n    \"\"\"common helper {i} {u}\"\"\"\n    return x + {i} * {u} + {v}\n\n\n"
        ));
    }
    fs::write(dir.join(format!("mod{i}.py")), text).unwrap();
}

fn index_cmd(root: &Path, idx: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "index",
        s(root),
        "--index",
        s(idx),
        "--name",
        "repo",
        "--quiet",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run gnn-coder")
}

/// Units per path found by searching for the word every unit has.
fn units_by_path(idx: &Path) -> BTreeMap<String, Vec<String>> {
    let out = run(&[
        "search",
        "--index",
        s(idx),
        "--json",
        "--mode",
        "lexical",
        "--kind",
        "all",
        "-k",
        "100000",
        "common",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "search after a kill failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for h in v["results"].as_array().unwrap() {
        by_path
            .entry(h["path"].as_str().unwrap().to_string())
            .or_default()
            .push(h["symbol"].as_str().unwrap().to_string());
    }
    by_path
}

/// A tiny deterministic PRNG (xorshift), so a failing seed can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn kill_loop(extra: &[&str], rounds: usize, seed: u64) {
    // Soak runs: GNN_CODER_KILL_SEED and GNN_CODER_KILL_ROUNDS override the defaults.
    let seed = std::env::var("GNN_CODER_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(seed);
    let rounds = std::env::var("GNN_CODER_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(rounds);
    eprintln!("kill loop: seed {seed}, {rounds} rounds");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let idx = tmp.path().join("idx");
    for i in 0..FILES {
        write_file(&root, i, 0);
    }
    let mut version = vec![0usize; FILES];
    let out = index_cmd(&root, &idx, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rng = Rng(seed);
    // How long an uninterrupted refresh of half the files takes, to spread the kills over it.
    let change = |version: &mut Vec<usize>, rng: &mut Rng| {
        for _ in 0..FILES / 2 {
            let i = (rng.next() % FILES as u64) as usize;
            version[i] += 1;
            write_file(&root, i, version[i]);
        }
    };
    change(&mut version, &mut rng);
    let started = Instant::now();
    let out = index_cmd(&root, &idx, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full = started.elapsed();
    let mut killed_mid_run = 0;
    for round in 0..rounds {
        // Change files so every run has work.
        change(&mut version, &mut rng);
        // The first round also starts from nothing.
        if round == 0 {
            fs::remove_dir_all(&idx).unwrap();
        }
        let delay = Duration::from_micros(rng.next() % (full.as_micros() as u64 + 1));
        let mut child: Child = index_cmd(&root, &idx, extra).spawn().unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();

        // Whatever the moment, the index opens (or was never created) and shows whole files.
        if idx.join("gnn-coder.json").exists() {
            let repos = run(&["repos", "--index", s(&idx), "--json"]);
            assert!(
                repos.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&repos.stderr)
            );
            for (path, symbols) in units_by_path(&idx) {
                assert_eq!(
                    symbols.len(),
                    UNITS_PER_FILE,
                    "round {round} (seed {seed}): half a file {path}: {symbols:?}"
                );
                let versions: std::collections::BTreeSet<&str> = symbols
                    .iter()
                    .map(|s| s.rsplit('_').next().unwrap())
                    .collect();
                assert_eq!(
                    versions.len(),
                    1,
                    "round {round}: mixed versions of {path}: {symbols:?}"
                );
            }
        } else {
            assert!(
                !idx.exists() || fs::read_dir(&idx).unwrap().next().is_none(),
                "round {round}: a directory without a manifest was left: {:?}",
                fs::read_dir(&idx).map(|d| d.count())
            );
        }
    }
    assert!(
        killed_mid_run >= rounds / 2,
        "only {killed_mid_run} of {rounds} kills hit a running indexer"
    );

    // The next run completes the work: the index equals the files on disk.
    let out = index_cmd(&root, &idx, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found = units_by_path(&idx);
    assert_eq!(found.len(), FILES);
    for i in 0..FILES {
        let path = format!("pkg{}/mod{i}.py", i % 6);
        let mut want: Vec<String> = (0..UNITS_PER_FILE)
            .map(|u| format!("f{i}_{u}_v{}", version[i]))
            .collect();
        let mut got = found[&path].clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{path}");
    }
    let repos = run(&["repos", "--index", s(&idx), "--json"]);
    let repo: Value = serde_json::from_slice(&repos.stdout).unwrap();
    assert_eq!(repo["units"], (FILES * UNITS_PER_FILE) as u64);
    assert_eq!(repo["files"], FILES as u64);
}

#[test]
fn sigkill_at_random_moments_never_corrupts_the_index() {
    kill_loop(
        &["--lexical-only", "--commit-every", "4"],
        24,
        0x9e37_79b9_7f4a_7c15,
    );
}

/// The pretrained model, when fetched (CI fetches it; see README).
fn have_model() -> bool {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/all-MiniLM-L6-v2/model.safetensors")
        .is_file()
}

#[test]
fn sigkill_while_embedding_never_corrupts_the_index() {
    if !have_model() {
        eprintln!("skipped: the pretrained model is not fetched (scripts/fetch-model.sh)");
        return;
    }
    kill_loop(
        &["--weights", "none", "--commit-every", "6", "--threads", "2"],
        6,
        0x2545_f491_4f6c_dd1d,
    );
}

#[test]
fn a_second_writer_is_refused_and_a_killed_writers_lock_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let idx = tmp.path().join("idx");
    for i in 0..400 {
        write_file(&root, i, 0);
    }
    // A slow first writer: a commit after every file.
    let mut first = index_cmd(&root, &idx, &["--lexical-only", "--commit-every", "1"])
        .spawn()
        .unwrap();
    let lock = idx.join("writer.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid = first.id().to_string();
    while fs::read_to_string(&lock)
        .map(|t| t.trim() != pid)
        .unwrap_or(true)
    {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first writer ended before the check"
        );
        assert!(
            Instant::now() < deadline,
            "the first writer never took the lock"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = index_cmd(&root, &idx, &["--lexical-only"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("locked by PID {pid}")), "{err}");
    // Readers are not blocked by the writer.
    let search = run(&["search", "--index", s(&idx), "--mode", "lexical", "common"]);
    assert!(
        search.status.success(),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );

    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(
        fs::read_to_string(&lock).unwrap().trim(),
        pid,
        "the dead writer's PID is still in the file"
    );
    let third = index_cmd(&root, &idx, &["--lexical-only"])
        .output()
        .unwrap();
    assert!(
        third.status.success(),
        "stale lock not recovered: {}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(units_by_path(&idx).len(), 400);
}
