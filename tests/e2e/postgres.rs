//! End-to-end tests of the PostgreSQL store through the real binary, on a real PostgreSQL +
//! pgvector server (`scripts/postgres.sh`, started by the test when it is not running): the
//! command-line client with `--store` and `$GNN_CODER_STORE`, two `gnn-coder serve` replicas on
//! one store (one killed, the other answering), `gnn-coder jobs` into the store, `store
//! migrate`, `health`, and the refusals (a newer schema, a bad URL, an unreachable server).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use gnn_coder_service::proto as pb;

mod support;
use support::*;

#[path = "../../crates/postgres/tests/server/mod.rs"]
mod pg;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("NO_COLOR", "1")
        .env_remove("GNN_CODER_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.current_dir(std::env::temp_dir())
        .output()
        .expect("run gnn-coder")
}

fn ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(
        out.status.success(),
        "gnn-coder {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(args, env);
    assert!(!out.status.success(), "gnn-coder {args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// The symbols of `search --json`'s results.
fn symbols(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).expect("search --json");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["symbol"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_cli_indexes_and_searches_through_the_store() {
    let db = pg::TestDb::new();
    let url = db.url.as_str();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let root_s = root.to_str().unwrap();

    let out = run(&["index", root_s, "--store", url], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("indexed"), "{err}");
    // Nothing is written next to the sources: the index is the database.
    assert!(!root.join(".gnn-coder").exists());

    for mode in ["lexical", "semantic", "hybrid"] {
        let json = ok(
            &[
                "search",
                "levenshtein edit distance",
                "--store",
                url,
                "--mode",
                mode,
                "--json",
            ],
            &[],
        );
        assert!(
            symbols(&json).iter().any(|s| s.contains("levenshtein")),
            "{mode}: {json}"
        );
    }
    // $GNN_CODER_STORE names the store when no flag does.
    let json = ok(
        &["search", "slugify a title", "--json", "-k", "3"],
        &[("GNN_CODER_STORE", url)],
    );
    assert!(symbols(&json).iter().any(|s| s == "slugify"), "{json}");
    // Filters run inside the legs.
    let json = ok(
        &[
            "search",
            "edit distance",
            "--store",
            url,
            "--lang",
            "go",
            "--json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["language"] == "go"), "{json}");

    // similar, repos, info.
    let out = ok(
        &[
            "similar",
            "python/text_utils.py:7",
            "--store",
            url,
            "-k",
            "3",
        ],
        &[],
    );
    assert!(!out.trim().is_empty(), "{out}");
    let repos = ok(&["repos", "--store", url], &[]);
    assert!(repos.contains("polyglot"), "{repos}");
    let info = ok(&["info", "--store", url], &[]);
    assert!(info.contains("approximate index"), "{info}");

    // A refresh with nothing changed embeds nothing; a changed file is re-read.
    let out = run(&["index", root_s, "--store", url], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("0 added, 0 changed"),
        "{err}"
    );
    fs::write(
        root.join("python/extra.py"),
        "def merge_sorted_lists(a, b):\n    return sorted(a + b)\n",
    )
    .unwrap();
    ok(&["index", root_s, "--store", url], &[]);
    let json = ok(
        &[
            "search",
            "merge sorted lists",
            "--store",
            url,
            "--json",
            "-k",
            "1",
        ],
        &[],
    );
    assert_eq!(symbols(&json), ["merge_sorted_lists"], "{json}");

    // remove, then the store is empty of it.
    ok(&["remove", "polyglot", "--store", url], &[]);
    let repos = ok(&["repos", "--store", url], &[]);
    assert!(!repos.contains("polyglot"), "{repos}");

    // migrate is idempotent and says so.
    let out = ok(&["store", "migrate", "--store", url], &[]);
    assert!(out.contains("up to date"), "{out}");
    // --index and --store together are refused; so is a URL that is not PostgreSQL's.
    let err = fails(&["search", "x", "--store", url, "--index", "/tmp/x"], &[]);
    assert!(err.contains("not both"), "{err}");
    let err = fails(&["search", "x", "--store", "mysql://h/db"], &[]);
    assert!(err.contains("PostgreSQL URL"), "{err}");

    // A store written by a newer gnn-coder is refused with the reason, never misread.
    db.execute("UPDATE gc_meta SET schema_version = schema_version + 1");
    let err = fails(&["search", "x", "--store", url], &[]);
    assert!(err.contains("version"), "{err}");
    let err = fails(&["store", "migrate", "--store", url], &[]);
    assert!(err.contains("version") || err.contains("newer"), "{err}");
}

#[test]
fn an_unreachable_or_empty_store_is_a_clear_error() {
    // Nothing listens on port 9 of loopback.
    let err = fails(
        &[
            "search",
            "x",
            "--store",
            "postgres://nobody@127.0.0.1:9/none",
        ],
        &[],
    );
    assert!(
        err.contains("unavailable") || err.contains("connect"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A database without a store: search says how to make one; the password is never shown.
    let db = pg::TestDb::new();
    let with_password = db.url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    let err = fails(&["search", "x", "--store", &with_password], &[]);
    assert!(err.contains("gnn-coder index"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}

/// A PostgreSQL server built with OpenSSL (Debian's `postgresql`; the PyPI wheel of the other
/// tests has no TLS), speaking only TLS on TCP (`hostssl` alone in pg_hba.conf), with a
/// certificate for `localhost` signed by a CA made here. Stopped when dropped.
struct TlsServer {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl TlsServer {
    fn start() -> TlsServer {
        // (scripts/postgres.sh, run for the other tests, creates the `postgres` user as root.)
        pg::admin_url();
        let bin = fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| {
                let mut v: Vec<_> = d
                    .flatten()
                    .map(|e| e.path().join("bin"))
                    .filter(|b| b.join("postgres").is_file())
                    .collect();
                v.sort();
                v.pop()
            })
            .expect(
                "Debian's PostgreSQL server (apt-get install postgresql) runs the TLS test; \
                 .ci/run installs it",
            );
        let root = is_root();
        // Below /var/tmp, where the unprivileged server user can reach it.
        let dir = tempfile::Builder::new()
            .prefix("gnn-coder-tls-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let (ca, _, cert, key) = certificates(dir.path(), "pg");
        let data = dir.path().join("data");
        fs::create_dir(&data).unwrap();
        let as_owner = |program: &Path| {
            let mut c = if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            };
            c.stdout(std::process::Stdio::null());
            c
        };
        if root {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
            let status = Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let status = Command::new("chmod").arg("600").arg(&key).status().unwrap();
        assert!(status.success());
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // TCP only with TLS: a plain connection is refused by the server itself.
        fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-c listen_addresses=localhost -p {port} -k {} -c ssl=on -c ssl_cert_file={} \
             -c ssl_key_file={}",
            data.display(),
            cert.display(),
            key.display()
        );
        let out = as_owner(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.path().join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(dir.path().join("log")).unwrap_or_default()
        );
        TlsServer {
            bin,
            data,
            port,
            ca,
            _dir: dir,
        }
    }

    fn url(&self, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres{params}",
            self.port
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = c
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[test]
fn tls_to_the_database_is_verified() {
    let server = TlsServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("python");
    copy_dir(&fixture().join("python"), &root);
    let url = server.url("?sslmode=require");
    let ca = server.ca.to_str().unwrap();
    let with_ca = [("PGSSLROOTCERT", ca)];
    // Debian's server has no pgvector: a lexical-only store needs none.
    ok(
        &[
            "index",
            root.to_str().unwrap(),
            "--store",
            &url,
            "--lexical-only",
        ],
        &with_ca,
    );
    let json = ok(
        &[
            "search",
            "slugify a title",
            "--store",
            &url,
            "--json",
            "-k",
            "1",
        ],
        &with_ca,
    );
    assert_eq!(symbols(&json), ["slugify"], "{json}");
    // Without the CA that signed it, the server's certificate is refused: TLS is verified.
    let err = fails(&["search", "slugify", "--store", &url], &[]);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // Without sslmode=require the connection is plain, which this server refuses.
    let err = fails(&["search", "slugify", "--store", &server.url("")], &with_ca);
    assert!(err.contains("pg_hba") || err.contains("SSL"), "{err}");
    // A CA file that holds no certificate is named.
    let bogus = tmp.path().join("empty.pem");
    fs::write(&bogus, "not a certificate\n").unwrap();
    let err = fails(
        &["search", "slugify", "--store", &url],
        &[("PGSSLROOTCERT", bogus.to_str().unwrap())],
    );
    assert!(err.contains("PGSSLROOTCERT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_one_store() {
    let db = pg::TestDb::new();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let allow = tmp.path().to_str().unwrap();
    let a = Server::start_with(&["--store", &db.url, "--allow-root", allow]);
    let mut b = Server::start_with(&["--store", &db.url, "--allow-root", allow]);
    let mut ca = a.client().await;
    let mut cb = b.client().await;

    // Indexed through one replica, searchable through the other once committed.
    let (_, summary) = index(&mut ca, index_request(&root, "poly")).await;
    assert!(summary.units >= 40, "{summary:?}");
    let hits = cb
        .search(search("levenshtein edit distance"))
        .await
        .expect("search through b")
        .into_inner()
        .hits;
    assert!(
        hits.iter().any(|h| h.symbol.contains("levenshtein")),
        "{hits:?}"
    );

    // An edit through b (UpdateFiles) is seen through a.
    let file = root.join("python/text_utils.py");
    let mut text = fs::read_to_string(&file).unwrap();
    text.push_str("\n\ndef reverse_every_word(sentence):\n    return ' '.join(w[::-1] for w in sentence.split())\n");
    cb.update_files(pb::UpdateFilesRequest {
        repository: "poly".into(),
        changes: vec![pb::FileChange {
            path: "python/text_utils.py".into(),
            contents: Some(text.into_bytes()),
            deleted: false,
        }],
        unsaved: false,
    })
    .await
    .expect("update through b");
    let hits = ca
        .search(search("reverse every word of a sentence"))
        .await
        .expect("search through a")
        .into_inner()
        .hits;
    assert_eq!(
        hits.first().map(|h| h.symbol.as_str()),
        Some("reverse_every_word"),
        "{hits:?}"
    );

    // Both are healthy; one killed, the other keeps answering.
    let out = run(&["health", "--server", &a.url], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(a);
    let out = run(&["health", "--server", &b.url], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = cb
        .search(search("slugify a title"))
        .await
        .expect("b answers after a died")
        .into_inner()
        .hits;
    assert!(hits.iter().any(|h| h.symbol == "slugify"), "{hits:?}");
    let status = b.terminate();
    assert!(status.success(), "{status:?}\n{}", b.log());
    // A stopped server fails the health check.
    let out = run(&["health", "--server", &b.url, "--timeout", "2"], &[]);
    assert!(!out.status.success());
}

#[test]
fn jobs_index_several_repositories_into_the_store() {
    let db = pg::TestDb::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for lang in ["python", "rust", "go"] {
        let root = tmp.path().join(lang);
        copy_dir(&fixture().join(lang), &root);
        lines.push_str(&format!(
            "{{\"name\": \"{lang}\", \"root\": {:?}}}\n",
            root.to_str().unwrap()
        ));
    }
    let jobs = tmp.path().join("repos.jsonl");
    fs::write(&jobs, lines).unwrap();
    let report = ok(
        &[
            "jobs",
            jobs.to_str().unwrap(),
            "--store",
            &db.url,
            "--parallel",
            "2",
            "-q",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&report).expect("the JSON report");
    assert!(report.contains("python") && report.contains("go"), "{v}");
    let repos = ok(&["repos", "--store", &db.url], &[]);
    for lang in ["python", "rust", "go"] {
        assert!(repos.contains(lang), "{repos}");
    }
    let json = ok(
        &[
            "search",
            "edit distance",
            "--store",
            &db.url,
            "--repo",
            "rust",
            "--json",
        ],
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let results = v["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r["repository"] == "rust"), "{json}");
}
