//! End-to-end tests of `gnn-coder train` / `eval`: a run killed with SIGKILL and started again
//! resumes from its latest checkpoint and ends with exactly the weights of an uninterrupted run;
//! the trained weights load in `index`/`search`; bad input gives messages, not panics.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::model_dir;

const BIN: &str = env!("CARGO_BIN_EXE_gnn-coder");

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run gnn-coder")
}

/// Run `gnn-coder` with `args`, which must succeed; its output.
fn run_ok(args: &[String]) -> Output {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

/// Distinct small training pairs in the miner's format.
fn write_pairs(path: &Path, n: usize, offset: usize) {
    let verbs = [
        "add", "scale", "clip", "shift", "merge", "count", "parse", "format",
    ];
    let nouns = [
        "vectors", "prices", "names", "tokens", "events", "paths", "rows", "dates",
    ];
    let mut out = String::new();
    for i in offset..offset + n {
        let v = verbs[i % verbs.len()];
        let o = nouns[(i / verbs.len()) % nouns.len()];
        let code = format!(
            "def {v}_{o}_{i}(items, factor={i}):\n    result = []\n    for item in items:\n        result.append(item * factor + {i})\n    return result\n"
        );
        let pair = serde_json::json!({
            "id": format!("p{i}"), "package": format!("pkg{}", i % 3), "lang": "python",
            "path": format!("pkg/m{i}.py"), "symbol": format!("{v}_{o}_{i}"),
            "query": format!("{v} the {o} number {i} by a factor."), "code": code,
            "start_line": 1, "end_line": 5, "indent": 0,
        });
        out.push_str(&pair.to_string());
        out.push('\n');
    }
    fs::write(path, out).unwrap();
}

fn train_args<'a>(
    pairs: &'a Path,
    valid: &'a Path,
    out: &'a Path,
    cache: &'a Path,
    model: &'a Path,
) -> Vec<String> {
    [
        "train",
        "--pairs",
        s(pairs),
        "--valid",
        s(valid),
        "--out",
        s(out),
        "--cache-dir",
        s(cache),
        "--model-dir",
        s(model),
        "--batch-size",
        "8",
        "--max-steps",
        "24",
        "--checkpoint-every",
        "3",
        "--tuned-layers",
        "1",
        // Batches of BM25-mined same-package groups: resuming must rebuild the same groups.
        "--hard-negatives",
        "4",
        "--max-tokens",
        "48",
        "--json",
        "--threads",
        "1",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// The tensors of a safetensors file by name (raw bytes; the header's metadata order varies).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = &v["data_offsets"];
            let (s, e) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), data[s..e].to_vec())
        })
        .collect()
}

/// Runs `a` and `b` wrote the same weights, tensor by tensor.
fn same_weights(a: &Path, b: &Path, when: &str) {
    for f in ["head.safetensors", "transformer.safetensors"] {
        let wa = tensors(&a.join("weights").join(f));
        assert!(!wa.is_empty());
        assert!(
            wa == tensors(&b.join("weights").join(f)),
            "{f} differs {when}"
        );
    }
}

fn latest_step(out: &Path) -> Option<usize> {
    let name = fs::read_to_string(out.join("checkpoints/latest")).ok()?;
    name.trim().strip_prefix("step-")?.parse().ok()
}

#[test]
fn training_resumes_after_being_killed_with_identical_weights() {
    let Some(model) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("train.jsonl");
    let valid = tmp.path().join("valid.jsonl");
    write_pairs(&pairs, 48, 0);
    write_pairs(&valid, 16, 1000);
    let cache = tmp.path().join("cache");

    // Uninterrupted reference run (also fills the shared cache).
    let a = tmp.path().join("a");
    let out = run_ok(&train_args(&pairs, &valid, &a, &cache, &model));
    let summary: serde_json::Value =
        serde_json::from_str(text(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["steps"], 24);
    let mrr = summary["valid"]["mrr10"].as_f64().unwrap();
    assert!(mrr > 0.0 && mrr <= 1.0, "{summary}");

    // The same run, killed (SIGKILL) once a checkpoint exists, then started again.
    let b = tmp.path().join("b");
    let mut child = Command::new(BIN)
        .args(train_args(&pairs, &valid, &b, &cache, &model))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while latest_step(&b).is_none_or(|s| s < 3) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = latest_step(&b).unwrap();
    assert!(
        killed_at < 24,
        "killed too late to test resuming ({killed_at})"
    );

    let out = run_ok(&train_args(&pairs, &valid, &b, &cache, &model));
    let stdout = text(&out.stdout);
    let start: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(start["event"], "start");
    assert_eq!(start["resumed"], true, "{stdout}");
    let resumed_from = start["step"].as_u64().unwrap() as usize;
    assert!((3..24).contains(&resumed_from), "{stdout}");

    // Same data order, same optimizer state: the same weights, bit for bit.
    same_weights(&a, &b, &format!("after resuming from step {resumed_from}"));

    // Ctrl-C (SIGINT) stops a run at a checkpoint of the step it was in, writes no weights,
    // and the same command resumes to the same weights.
    let c = tmp.path().join("c");
    let mut child = Command::new(BIN)
        .args(train_args(&pairs, &valid, &c, &cache, &model))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while latest_step(&c).is_none_or(|s| s < 3) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("training stopped at step") && err.contains("resume"),
        "{err}"
    );
    let stopped_at = latest_step(&c).unwrap();
    if stopped_at < 24 {
        assert!(
            !c.join("weights/head.safetensors").exists(),
            "weights of an unfinished run"
        );
    }
    run_ok(&train_args(&pairs, &valid, &c, &cache, &model));
    same_weights(&a, &c, &format!("after an interrupt at step {stopped_at}"));

    // A different configuration in the same directory is refused, not mixed in.
    let mut args = train_args(&pairs, &valid, &b, &cache, &model);
    let i = args.iter().position(|a| a == "--batch-size").unwrap();
    args[i + 1] = "4".into();
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("different configuration"),
        "{}",
        text(&out.stderr)
    );
    // So is another graph network (a pool ratio loads into the same shapes), and a graph
    // network without layers is refused before any training.
    for (flag, value, message) in [
        ("--pool-ratio", "0.25", "different head configuration"),
        ("--graph-layers", "0", "at least one layer"),
    ] {
        let mut args = train_args(&pairs, &valid, &b, &cache, &model);
        args.extend([flag.to_string(), value.to_string()]);
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success());
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }

    // Weights that fine-tuned a layer can start a stage-1 run, whose frozen transformer is then
    // theirs: the caches it builds carry those layers' checksum, so a later run from the
    // pretrained model in the same cache directory does not take its states for MiniLM's (it
    // rebuilds them and ends where run `a` did).
    let cache2 = tmp.path().join("cache2");
    let mut args = train_args(&pairs, &valid, &tmp.path().join("s1"), &cache2, &model);
    let i = args.iter().position(|a| a == "--tuned-layers").unwrap();
    args[i + 1] = "0".into();
    args.extend(
        ["--split-layer", "5", "--init", s(&a.join("weights"))]
            .iter()
            .map(|a| a.to_string()),
    );
    run_ok(&args);
    let fingerprint = |cache: &Path| {
        let meta = fs::read_to_string(cache.join("train-codes/meta.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&meta).unwrap()["fingerprint"].clone()
    };
    assert_ne!(fingerprint(&cache2), fingerprint(&cache));
    let d = tmp.path().join("d");
    run_ok(&train_args(&pairs, &valid, &d, &cache2, &model));
    same_weights(&a, &d, "when the cache was first built from trained layers");

    // The weights serve `index` and `search`, and `eval` measures them.
    let weights = a.join("weights");
    assert!(weights.join("SHA256SUMS").is_file());
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    fs::write(repo.join("m.py"), "def add_vectors_0(items, factor=0):\n    result = []\n    for item in items:\n        result.append(item * factor)\n    return result\n\ndef open_socket(host, port):\n    import socket\n    return socket.create_connection((host, port))\n").unwrap();
    let idx = tmp.path().join("idx");
    let out = run(&[
        "index",
        s(&repo),
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
        "--weights",
        s(&weights),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("untrained"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "search",
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
        "--weights",
        s(&weights),
        "--mode",
        "semantic",
        "--json",
        "connect to a server socket",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hits: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(hits["results"][0]["symbol"], "open_socket", "{hits}");
    // Searching with other weights than the index was built with is refused.
    let out = run(&[
        "search",
        "--index",
        s(&idx),
        "--model-dir",
        s(&model),
        "--weights",
        "none",
        "--mode",
        "semantic",
        "x",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--weights"),
        "{}",
        text(&out.stderr)
    );

    // `eval` of these weights with the run's cache and sizes, plus `extra`.
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--weights",
            s(&weights),
            "--model-dir",
            s(&model),
            "--cache-dir",
            s(&cache),
            "--split-layer",
            "5",
            "--max-tokens",
            "48",
            "--json",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let out = eval(&["--pairs", s(&valid)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(r["n"], 16);
    // Train validated with f32 weights, eval loads the shipped f16 ones: equal up to rounding.
    assert!(
        (r["mrr10"].as_f64().unwrap() - mrr).abs() < 0.1,
        "eval {r} vs train {summary}"
    );

    // A benchmark tree: every function is a candidate; several query mixes are scored from one
    // encoding, each into its own results file (the batch-search contract).
    let queries = tmp.path().join("bench-queries.jsonl");
    fs::write(
        &queries,
        "{\"id\": \"q1\", \"query\": \"connect to a server socket\", \"path\": \"m.py\", \"line\": 7, \"end_line\": 9, \"lang\": \"python\"}\n",
    )
    .unwrap();
    let results = tmp.path().join("bench.jsonl");
    let bench_eval = |mix: &str| {
        eval(&[
            "--bench",
            s(&repo),
            "--queries",
            s(&queries),
            "--query-mix",
            mix,
            "--results",
            s(&results),
        ])
    };
    let out = bench_eval("0,1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    for m in ["0", "1"] {
        let file = tmp.path().join(format!("bench-mix{m}.jsonl"));
        let line: serde_json::Value =
            serde_json::from_str(fs::read_to_string(&file).unwrap().trim()).unwrap();
        assert_eq!(line["id"], "q1");
        assert_eq!(line["results"].as_array().map(Vec::len), Some(2), "{line}");
    }
    let out = bench_eval("2");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("[0, 1]"),
        "{}",
        text(&out.stderr)
    );

    // Corrupted weights are caught by their checksum.
    let head = weights.join("head.safetensors");
    let mut bytes = fs::read(&head).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&head, bytes).unwrap();
    let out = run(&[
        "eval",
        "--weights",
        s(&weights),
        "--model-dir",
        s(&model),
        "--pairs",
        s(&valid),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("checksum"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_training_input_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    fs::write(&bad, "{\"id\": 1}\nnot json\n").unwrap();
    let out = tmp.path().join("out");
    for args in [
        vec!["train", "--out", s(&out)],
        vec!["train", "--pairs", s(&bad), "--out", s(&out)],
        vec![
            "train",
            "--pairs",
            "/nonexistent/pairs.jsonl",
            "--out",
            s(&out),
        ],
        vec!["eval", "--weights", s(tmp.path())],
        vec!["eval"],
    ] {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = text(&o.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A backend this build lacks, or one that does not exist, is refused before any work,
    // saying how to get it.
    if model_dir().is_none() {
        return;
    }
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs, 8, 0);
    for (device, says) in [("tch", "--features tch"), ("gpu", "use flex")] {
        let o = run(&[
            "train",
            "--pairs",
            s(&pairs),
            "--out",
            s(&out),
            "--device",
            device,
        ]);
        let err = text(&o.stderr);
        assert!(!o.status.success(), "--device {device} succeeded");
        assert!(err.contains(says), "--device {device}: {err}");
        assert!(!err.contains("panicked"), "--device {device}: {err}");
    }
}
