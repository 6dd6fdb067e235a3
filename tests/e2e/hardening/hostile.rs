//! Class 2 (hostile files cost quadratic time and memory) and class 4's `\r` line endings,
//! through `gnn-coder index --lexical-only` and `search`: a file of 20,000 nested modules (289
//! KB; before, over 10 minutes and 7.1 GB) is skipped as too complex within seconds, the index
//! stays small, and the files beside it are searchable, on their right lines.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::support::BIN;

fn nested_modules(depth: usize) -> String {
    let mut s = String::new();
    for i in 0..depth {
        s.push_str(&format!("mod m{i} {{\n"));
    }
    s.push_str("fn hidden_in_the_nest(x: u32) -> u32 { x + 1 }\n");
    s.push_str(&"}\n".repeat(depth));
    s
}

/// Runs gnn-coder; fails the test (and kills the process) past `limit`.
fn run(args: &[&str], limit: Duration) -> (String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gnn-coder");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for gnn-coder").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gnn-coder {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("gnn-coder output");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "gnn-coder {args:?} failed:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_size(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[test]
fn a_hostile_file_is_skipped_and_its_neighbours_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let nest = nested_modules(20_000);
    assert!(nest.len() > 280_000);
    std::fs::write(repo.join("nest.rs"), &nest).unwrap();
    std::fs::write(
        repo.join("widget.rs"),
        "/// Parses a widget header.\npub fn parse_widget_header(x: u32) -> u32 {\n    x + 1\n}\n",
    )
    .unwrap();
    // Old Mac line endings: the function is on line 5, not line 1.
    std::fs::write(
        repo.join("mac.py"),
        "import os\r\r\rclass Reader:\r    def read_legacy_records(self, path):\r        return open(path).read()\r",
    )
    .unwrap();
    let index = tmp.path().join("index");
    let (_, stderr) = run(
        &[
            "index",
            "--lexical-only",
            repo.to_str().unwrap(),
            "--index",
            index.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(stderr.contains("skipped files: 1 too complex"), "{stderr}");
    assert!(stderr.contains("nest.rs (too complex"), "{stderr}");
    assert!(
        stderr.contains("nested more than 64 deep") || stderr.contains("definitions"),
        "{stderr}"
    );
    // Two small files: the index is small (8,000 levels used to write 93 MB).
    let size = dir_size(&index);
    assert!(size < 4 << 20, "index of {size} bytes");

    let (out, _) = run(
        &[
            "search",
            "--index",
            index.to_str().unwrap(),
            "--json",
            "parse widget header",
        ],
        Duration::from_secs(60),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("search --json");
    let results = v["results"].as_array().expect("results");
    assert_eq!(results[0]["path"], "widget.rs", "{out}");
    assert_eq!(results[0]["symbol"], "parse_widget_header", "{out}");
    assert!(
        results.iter().all(|r| r["path"] != "nest.rs"),
        "the skipped file is not indexed: {out}"
    );

    let (out, _) = run(
        &[
            "search",
            "--index",
            index.to_str().unwrap(),
            "--json",
            "read legacy records",
        ],
        Duration::from_secs(60),
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("search --json");
    let top = &v["results"][0];
    assert_eq!(top["symbol"], "Reader.read_legacy_records", "{out}");
    assert_eq!(top["start_line"], 5, "{out}");
    assert_eq!(top["end_line"], 6, "{out}");
}

/// The server: an 83 KB `UpdateFiles` buffer of nested modules took the 120 s request timeout
/// and raised the server from 247 MB to 1.2 GB. It is now skipped as too complex at once, and
/// a `\r` buffer in the same request is indexed on its right lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_update_files_buffer_is_refused_at_once() {
    use super::support::{Server, index, index_request, search};
    use gnn_coder_service::proto as pb;

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("widget.rs"),
        "pub fn parse_widget_header(x: u32) -> u32 {\n    x + 1\n}\n",
    )
    .unwrap();
    let server = Server::lexical(tmp.path());
    let mut c = server.client().await;
    index(&mut c, index_request(&repo, "r")).await;

    let nest = nested_modules(6_000);
    assert!(nest.len() > 80_000);
    let t = Instant::now();
    let up = c
        .update_files(pb::UpdateFilesRequest {
            repository: "r".into(),
            changes: vec![
                pb::FileChange {
                    path: "nest.rs".into(),
                    contents: Some(nest.into_bytes()),
                    deleted: false,
                },
                pb::FileChange {
                    path: "mac.py".into(),
                    contents: Some(
                        b"import os\r\r\rclass Reader:\r    def read_legacy_records(self, path):\r        return open(path).read()\r"
                            .to_vec(),
                    ),
                    deleted: false,
                },
            ],
            unsaved: false,
        })
        .await
        .expect("UpdateFiles answers")
        .into_inner();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(60), "UpdateFiles took {took:?}");
    let nest = &up.files[0];
    assert_eq!(
        (
            nest.path.as_str(),
            nest.outcome.as_str(),
            nest.reason.as_str()
        ),
        ("nest.rs", "skipped", "too complex"),
        "{up:?}"
    );
    assert!(nest.detail.contains("nested more than 64 deep"), "{up:?}");
    assert_eq!(up.files[1].outcome, "indexed", "{up:?}");

    let found = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("read legacy records")
        })
        .await
        .unwrap()
        .into_inner();
    let top = &found.hits[0];
    assert_eq!(
        (top.path.as_str(), top.start_line, top.end_line),
        ("mac.py", 5, 6)
    );
    assert_eq!(
        top.snippet[0], "def read_legacy_records(self, path):",
        "{top:?}"
    );
    let widget = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("parse widget header")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(widget.hits[0].path, "widget.rs");
}
