//! The cadence of an index run (issue 22, class 4): commits at the requested `commit_every`
//! even below one internal batch, and a cancel that reaches the embedding loop.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gnn_coder_engine::{
    CancellationToken, Engine, EngineOptions, ErrorKind, IndexEvent, IndexOptions, ModelChoice,
};

fn lexical() -> EngineOptions {
    EngineOptions {
        lexical_only: true,
        threads: 2,
        ..EngineOptions::default()
    }
}

/// `files` Python files of `per_file` small functions each.
fn repo(root: &Path, files: usize, per_file: usize) {
    for i in 0..files {
        let dir = root.join(format!("pkg{}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for j in 0..per_file {
            text.push_str(&format!(
                "def handler_{i}_{j}(request):\n    \"\"\"Handle request {i} {j}.\"\"\"\n    \
                 return len(request) * {j} + {i}\n\n"
            ));
        }
        fs::write(dir.join(format!("mod{i}.py")), text).unwrap();
    }
}

/// The `files` of each `Committed` event of a run.
fn commits(events: &Mutex<Vec<u64>>) -> Vec<u64> {
    events.lock().unwrap().clone()
}

#[test]
fn commit_every_below_one_batch_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo(&root, 40, 2);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    let mut opts = IndexOptions::new(&root).named("r");
    opts.commit_every = 10;
    let seen = Mutex::new(Vec::new());
    let on_event = |e: &IndexEvent| {
        if let IndexEvent::Committed { files } = e {
            seen.lock().unwrap().push(*files);
        }
    };
    let summary = engine
        .index_repository(&opts, &on_event, &CancellationToken::new())
        .unwrap();
    assert_eq!(summary.files, 40);
    // Before: one batch of all 40 files, committed once (and again at the end).
    let c = commits(&seen);
    assert_eq!(&c[..4], &[10, 20, 30, 40], "a commit every 10 files: {c:?}");
}

#[test]
fn a_run_stopped_after_a_commit_keeps_it_and_the_next_run_skips_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    repo(&root, 40, 2);
    let engine = Engine::open_or_create(&tmp.path().join("idx"), lexical(), false).unwrap();
    let mut opts = IndexOptions::new(&root).named("r");
    opts.commit_every = 10;
    // Stopped at its first commit, as a kill -9 right after it would.
    let cancel = CancellationToken::new();
    let first = AtomicU64::new(0);
    let on_event = |e: &IndexEvent| {
        if let IndexEvent::Committed { files } = e {
            let _ = first.compare_exchange(0, *files, Ordering::SeqCst, Ordering::SeqCst);
            cancel.cancel();
        }
    };
    let err = engine
        .index_repository(&opts, &on_event, &cancel)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert_eq!(
        first.load(Ordering::SeqCst),
        10,
        "the first commit holds 10 files"
    );
    let s = engine
        .index_repository(&opts, &|_| {}, &CancellationToken::new())
        .unwrap();
    assert_eq!(s.files, 40);
    assert!(
        s.files_unchanged >= 10,
        "the committed files are not read again: {s:?}"
    );
    assert_eq!(s.files_added + s.files_unchanged, 40);
}

/// The pretrained model of the checkout, if fetched (`scripts/fetch-model.sh`). CI fetches it,
/// so there a missing model fails the test instead of skipping it.
fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run scripts/fetch-model.sh before the tests"
    );
    eprintln!("skipping: no model at {}", dir.display());
    None
}

/// Units per model batch (`EmbedderOptions::batch_size`'s default): how often the embedding
/// workers look at the token.
const MODEL_BATCH: u64 = 32;

#[test]
fn a_cancel_reaches_the_embedding_loop() {
    let Some(model_dir) = model_dir() else { return };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    // Far more units than the workers can embed between a cancel and their next check.
    let files = (50 * (workers + 2)) as usize;
    repo(&root, files, 4);
    let options = EngineOptions {
        model: ModelChoice {
            model_dir: Some(model_dir),
            weights: None,
        },
        threads: 2,
        ..EngineOptions::default()
    };
    let engine = Engine::open_or_create(&tmp.path().join("idx"), options, false).unwrap();
    assert!(engine.embedding().is_some(), "the index has a model");
    let cancel = CancellationToken::new();
    let at_cancel = AtomicU64::new(u64::MAX);
    let most = AtomicU64::new(0);
    let on_event = |e: &IndexEvent| {
        if let IndexEvent::Progress(p) = e
            && p.embeddings_computed > 0
        {
            most.fetch_max(p.embeddings_computed, Ordering::SeqCst);
            if at_cancel
                .compare_exchange(
                    u64::MAX,
                    p.embeddings_computed,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                cancel.cancel();
            }
        }
    };
    let opts = IndexOptions::new(&root).named("r");
    let started = std::time::Instant::now();
    let err = engine
        .index_repository(&opts, &on_event, &cancel)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let (at, most) = (
        at_cancel.load(Ordering::SeqCst),
        most.load(Ordering::SeqCst),
    );
    assert!(at != u64::MAX, "embedding started");
    eprintln!("cancelled at {at} units embedded; {most} when the run stopped ({workers} workers)");
    // Before: progress (and the token) came per chunk of 256 units, and every worker finished
    // its chunk after the cancel.
    assert!(
        at <= MODEL_BATCH * workers,
        "progress comes per model batch: first report at {at} units"
    );
    // One batch per worker, two where a worker's check races the cancel.
    assert!(
        most - at <= 2 * MODEL_BATCH * workers,
        "{} units embedded after the cancel (at {at}); at most a batch or two of \
         {MODEL_BATCH} per worker ({workers})",
        most - at
    );
    // A safety net, not a speed goal.
    assert!(started.elapsed().as_secs() < 120);
}
