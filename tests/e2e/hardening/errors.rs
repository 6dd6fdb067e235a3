//! Class 5 of issue 22: errors a person (or a client) can act on. Long client input comes back
//! as a short INVALID_ARGUMENT, a malformed message is INVALID_ARGUMENT, TLS failures name their
//! cause, and a full disk says so.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use gnn_coder_service::client::{self, ClientOptions};
use gnn_coder_service::codec::RawCodec;
use gnn_coder_service::proto as pb;
use tonic::Code;

use super::support::{BIN, Server, big_repo, certificates, index_request, model_dir, search};

/// Longest status message the server sends (`convert::MAX_STATUS_MESSAGE`).
const MAX_MESSAGE: usize = 1024;

/// The status of a call that must fail.
async fn status_of<T: std::fmt::Debug>(
    f: impl Future<Output = Result<T, tonic::Status>>,
) -> tonic::Status {
    match f.await {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s,
    }
}

fn assert_short(s: &tonic::Status, code: Code, what: &str) {
    assert_eq!(s.code(), code, "{what}: {s:?}");
    assert!(
        s.message().len() <= MAX_MESSAGE,
        "{what}: a {}-byte message",
        s.message().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_client_input_comes_back_as_a_short_status() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    big_repo(&root, 3);
    let server = Server::lexical(tmp.path());
    let mut c = server.client().await;
    super::support::index(&mut c, index_request(&root, "r")).await;
    let long = "x".repeat(100_000);

    // Before: each message quoted the 100 KB input, and the client failed with "metadata size
    // exceeds hard limit" (INTERNAL) instead of reading the status.
    let mut req = index_request(&root, "r");
    req.name = long.clone();
    let s = status_of(c.index_repository(req)).await;
    assert_short(&s, Code::InvalidArgument, "a 100 KB repository name");

    let mut req = search("handler");
    req.filters = Some(pb::Filters {
        repositories: vec![long.clone()],
        ..Default::default()
    });
    let s = status_of(c.search(req)).await;
    assert_short(&s, Code::NotFound, "a 100 KB repository filter");

    let mut req = search("handler");
    req.filters = Some(pb::Filters {
        path_globs: vec![format!("{long}[")],
        ..Default::default()
    });
    let s = status_of(c.search(req)).await;
    assert_short(&s, Code::InvalidArgument, "a 100 KB bad glob");

    let s = status_of(c.search(search(&long))).await;
    assert_short(&s, Code::InvalidArgument, "a 100 KB query");

    let s = status_of(c.update_files(pb::UpdateFilesRequest {
        repository: "r".into(),
        changes: vec![pb::FileChange {
            path: format!("../{long}.py"),
            contents: Some(b"def f():\n    pass\n".to_vec()),
            deleted: false,
        }],
        unsaved: false,
    }))
    .await;
    assert_short(&s, Code::InvalidArgument, "a 100 KB path");

    let s = status_of(c.get_repository(pb::GetRepositoryRequest { name: long.clone() })).await;
    assert_short(&s, Code::NotFound, "GetRepository of a 100 KB name");

    let s = status_of(c.search_similar(pb::SimilarRequest {
        target: Some(pb::similar_request::Target::Unit(pb::UnitRef {
            repository: "r".into(),
            path: long.clone(),
            line: 1,
        })),
        ..Default::default()
    }))
    .await;
    assert!(
        s.message().len() <= MAX_MESSAGE,
        "SearchSimilar of a 100 KB path: {} bytes",
        s.message().len()
    );
    assert_ne!(s.code(), Code::Internal, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_invalid_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("idx"), &["--lexical-only"]);
    let channel = client::channel(&server.url, &ClientOptions::default())
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    // A length-delimited field 1 (the query) that claims 255 bytes and holds 2; a varint that
    // never ends; a group that is never closed.
    let bodies: [&[u8]; 3] = [
        &[0x0a, 0xff, 0x01, b'a', b'b'],
        &[0x10, 0xff, 0xff, 0xff],
        &[0x0b],
    ];
    for (method, body) in [
        ("Search", bodies[0]),
        ("Search", bodies[1]),
        ("GetRepository", bodies[0]),
        ("IndexRepository", bodies[2]),
        ("UpdateFiles", bodies[1]),
    ] {
        grpc.ready().await.unwrap();
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!(
            "/gnn_coder.v1.CodeSearch/{method}"
        ))
        .unwrap();
        let result = if method == "IndexRepository" {
            grpc.server_streaming(tonic::Request::new(body.to_vec()), path, RawCodec)
                .await
                .map(|_| ())
        } else {
            grpc.unary(tonic::Request::new(body.to_vec()), path, RawCodec)
                .await
                .map(|_| ())
        };
        let s = result.expect_err("a malformed message is refused");
        // Before: INTERNAL, tonic-prost's code for every decode failure.
        assert_eq!(s.code(), Code::InvalidArgument, "{method} {body:?}: {s:?}");
        assert!(s.message().contains("protobuf"), "{}", s.message());
    }
    // The server still serves well-formed calls.
    let mut c = server.client().await;
    c.list_repositories(pb::ListRepositoriesRequest {})
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// TLS failures through the command line.

/// `gnn-coder repos --server URL [--tls-ca CA]`, which must fail; its stderr.
fn repos_fails(url: &str, ca: Option<&Path>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["repos", "--server", url]);
    if let Some(ca) = ca {
        cmd.arg("--tls-ca").arg(ca);
    }
    let out: Output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{url}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("{url}: {stderr}");
    stderr
}

fn tls_server(idx: &Path, cert: &Path, key: &Path) -> Server {
    Server::start(
        idx,
        &[
            "--lexical-only",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn tls_failures_name_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, ca_key, cert, key) = certificates(tmp.path(), "a");
    let (other_ca, _, _, _) = certificates(tmp.path(), "b");
    let server = tls_server(&tmp.path().join("idx"), &cert, &key);
    let https = server.url.replace("127.0.0.1", "localhost");
    assert!(https.starts_with("https://"), "{https}");
    let http = format!("http://{}", server.addr());

    // The right CA works.
    let ok = Command::new(BIN)
        .args(["repos", "--server", &https, "--tls-ca"])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // A CA that did not sign the server's certificate.
    let e = repos_fails(&https, Some(&other_ca));
    assert!(e.contains("UnknownIssuer"), "the cause is named: {e}");
    assert!(
        e.contains("not signed by the CA given with --tls-ca"),
        "{e}"
    );

    // Plain text to a TLS server.
    let e = repos_fails(&http, None);
    assert!(e.contains("use https://"), "{e}");
    assert!(!e.trim_end().ends_with("transport error"), "{e}");
    drop(server);

    // A server that presents its CA certificate as its own.
    let server = tls_server(&tmp.path().join("idx2"), &ca, &ca_key);
    let https = server.url.replace("127.0.0.1", "localhost");
    let e = repos_fails(&https, Some(&ca));
    assert!(e.contains("CaUsedAsEndEntity"), "the cause is named: {e}");
    assert!(e.contains("presents a CA certificate"), "{e}");
    drop(server);

    // TLS to a plain-text server.
    let plain = Server::start(&tmp.path().join("idx3"), &["--lexical-only"]);
    let e = repos_fails(&plain.url.replace("http://", "https://"), Some(&ca));
    assert!(e.contains("does not speak TLS"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// A full disk.

/// A small tmpfs mounted for one test (root only; `None` where mounting is not allowed),
/// unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipping: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// About 4 MB of Python whose docstrings do not compress much: written between two commits,
/// its index outgrows a 1 MB disk while tantivy's workers index it (the failure that lost its
/// cause: "an index writer was killed").
fn wordy_repo(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut word = || {
        (0..8)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                char::from(b'a' + ((seed >> 33) % 26) as u8)
            })
            .collect::<String>()
    };
    for i in 0..200 {
        let mut text = String::new();
        for j in 0..40 {
            let doc: Vec<String> = (0..60).map(|_| word()).collect();
            text.push_str(&format!(
                "def h_{i}_{j}(r):\n    '''{}'''\n    return {j}\n\n",
                doc.join(" ")
            ));
        }
        fs::write(dir.join(format!("m{i}.py")), text).unwrap();
    }
}

#[test]
fn a_full_disk_says_so_in_the_cli() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    wordy_repo(&root);
    let out = Command::new(BIN)
        .args(["index"])
        .arg(&root)
        .arg("--index")
        .arg(disk.path().join("idx"))
        .args(["--lexical-only", "--commit-every", "100000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Before: "An index writer was killed.. A worker thread encountered an error".
    assert!(stderr.contains("No space left on device"), "{stderr}");
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_resource_exhausted() {
    let Some(disk) = SmallDisk::mount("1m") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    wordy_repo(&root);
    let server = Server::start(
        &disk.path().join("idx"),
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
        ],
    );
    let mut c = server.client().await;
    let mut req = index_request(&root, "r");
    req.commit_every = 100_000;
    let outcome = match c.index_repository(req).await {
        Err(s) => s,
        Ok(stream) => {
            let mut stream = stream.into_inner();
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => panic!("the index job succeeded on a full disk"),
                    Err(s) => break s,
                }
            }
        }
    };
    assert_eq!(outcome.code(), Code::ResourceExhausted, "{outcome:?}");
    assert!(
        outcome.message().contains("No space left on device"),
        "{outcome:?}"
    );
    // The command-line client says so, at once: a full disk is not retried as a busy server.
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .arg("index")
        .arg(&root)
        .args([
            "--name",
            "r",
            "--commit-every",
            "100000",
            "--server",
            &server.url,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    eprintln!("{stderr}");
    assert!(stderr.contains("disk is full"), "{stderr}");
    assert!(started.elapsed().as_secs() < 30, "no retries: {stderr}");
    drop(server);
}

// ---------------------------------------------------------------------------------------------
// Class 4: `--commit-every` below one internal batch, through a kill -9.

#[test]
fn commit_every_survives_a_kill_mid_run() {
    let Some(model) = model_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    // 200 files (under one internal batch of 256 files or 2,048 units) of 8 units: embedding
    // them takes a while.
    big_repo(&root, 200);
    for i in 0..200 {
        let p = root.join("pkg0").join(format!("mod{i}.py"));
        let mut text = fs::read_to_string(&p).unwrap();
        for j in 0..4 {
            text.push_str(&format!(
                "\ndef extra_{i}_{j}(items):\n    return sorted(items)[{j}:{i}]\n"
            ));
        }
        fs::write(&p, text).unwrap();
    }
    let idx = tmp.path().join("idx");
    let index = |extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("index")
            .arg(&root)
            .arg("--index")
            .arg(&idx)
            .arg("--model-dir")
            .arg(&model)
            .args(["--commit-every", "10", "--quiet"])
            .args(extra);
        cmd
    };
    let mut run = index(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first commit to become searchable while the run is still going.
    let started = std::time::Instant::now();
    let mut committed_while_running = false;
    while run.try_wait().unwrap().is_none() && started.elapsed().as_secs() < 300 {
        let out = Command::new(BIN)
            .args([
                "search",
                "handler request",
                "--mode",
                "lexical",
                "--json",
                "--index",
            ])
            .arg(&idx)
            .output()
            .unwrap();
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("handler_") {
            committed_while_running = run.try_wait().unwrap().is_none();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = run.kill(); // SIGKILL
    let _ = run.wait();
    assert!(
        committed_while_running,
        "a commit is searchable before the run ends"
    );
    let out = index(&["--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["files"], 200, "{summary}");
    let unchanged = summary["files_unchanged"].as_u64().unwrap();
    assert!(
        unchanged >= 10,
        "the files committed before the kill are not read again: {summary}"
    );
    // Before: one commit, after every file was embedded (200 files are less than a batch), so
    // the first searchable commit held all of them and the kill came too late to matter.
    assert!(
        unchanged < 200 && summary["embeddings_computed"].as_u64().unwrap() > 0,
        "the first commit came early (after 10 files), so the kill left work for the rerun: \
         {summary}"
    );
}
