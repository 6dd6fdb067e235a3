//! Shared helpers of the end-to-end tests that run `gnn-coder serve`: the server process, the
//! fixture, index streams. Each test binary uses what it needs.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gnn_coder_service::client::{self, Client, ClientOptions};
use gnn_coder_service::proto as pb;
use pb::index_event::Event;
use tonic::Code;

pub const BIN: &str = env!("CARGO_BIN_EXE_gnn-coder");

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/polyglot")
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A running `gnn-coder serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: PathBuf,
    _logdir: tempfile::TempDir,
}

impl Server {
    pub fn start(index: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["--index", index.to_str().expect("a UTF-8 index path")];
        args.extend_from_slice(extra);
        Server::start_with(&args)
    }

    /// `gnn-coder serve ARGS --listen 127.0.0.1:0` (ARGS name the index: `--index` or
    /// `--store`).
    pub fn start_with(args: &[&str]) -> Server {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("server.log");
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start gnn-coder serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the server did not start:\n{}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let url = line
            .strip_prefix("gnn-coder: serving on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            url,
            log,
            _logdir: logdir,
        }
    }

    /// A lexical-only server whose index is `DIR/idx` and which may index anything below `DIR`.
    pub fn lexical(dir: &Path) -> Server {
        let allow = dir.to_str().expect("a UTF-8 temporary directory");
        Server::start(&dir.join("idx"), &["--lexical-only", "--allow-root", allow])
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn addr(&self) -> String {
        self.url.split("://").nth(1).unwrap().to_string()
    }

    pub async fn client(&self) -> Client {
        self.client_with(ClientOptions::default()).await
    }

    pub async fn client_with(&self, opts: ClientOptions) -> Client {
        client::connect(&self.url, &opts).await.expect("connect")
    }

    /// SIGTERM, then the exit status (killed after 60 s).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if t.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("the server did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn index_request(root: &Path, name: &str) -> pb::IndexRepositoryRequest {
    pb::IndexRepositoryRequest {
        root: root.canonicalize().unwrap().to_string_lossy().into_owned(),
        name: name.into(),
        ..Default::default()
    }
}

/// Runs an index stream to its end: (events, summary).
pub async fn index(
    client: &mut Client,
    req: pb::IndexRepositoryRequest,
) -> (Vec<Event>, pb::IndexSummary) {
    let mut stream = client
        .index_repository(req)
        .await
        .expect("index accepted")
        .into_inner();
    let mut events = Vec::new();
    let mut summary = None;
    while let Some(e) = stream.message().await.expect("index stream") {
        match e.event.unwrap() {
            Event::Summary(s) => summary = Some(s),
            other => events.push(other),
        }
    }
    (events, summary.expect("a summary last"))
}

pub fn search(query: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        query: query.into(),
        top_k: 5,
        ..Default::default()
    }
}

pub async fn code_of<T: std::fmt::Debug>(
    f: impl Future<Output = Result<T, tonic::Status>>,
) -> Code {
    match f.await {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(s) => s.code(),
    }
}

/// A repository of many small Python files (lexical indexing takes seconds).
pub fn big_repo(dir: &Path, files: usize) {
    for i in 0..files {
        let sub = dir.join(format!("pkg{}", i / 500));
        fs::create_dir_all(&sub).unwrap();
        fs::write(
            sub.join(format!("mod{i}.py")),
            format!(
                "def handler_{i}(request):\n    return route_{i}(request) + {i}\n\n\
                 def route_{i}(request):\n    return len(request) * {i}\n\n\
                 class Widget{i}:\n    def render(self):\n        return 'widget {i}'\n"
            ),
        )
        .unwrap();
    }
}

/// The pretrained model of the checkout, if fetched (`scripts/fetch-model.sh`). CI fetches it,
/// so there a missing model fails the test instead of skipping it.
pub fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run scripts/fetch-model.sh before the tests"
    );
    eprintln!(
        "skipping: no model at {} (run scripts/fetch-model.sh)",
        dir.display()
    );
    None
}

/// A CA and a server certificate (for `localhost`) it signed, as PEM files in `dir`:
/// (ca cert, ca key, server cert, server key).
pub fn certificates(dir: &Path, tag: &str) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Each CA its own name, so a client looks one up as the issuer only if it is.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("gnn-coder test CA {tag}"));
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let files = (
        dir.join(format!("{tag}-ca.pem")),
        dir.join(format!("{tag}-ca.key")),
        dir.join(format!("{tag}-cert.pem")),
        dir.join(format!("{tag}-cert.key")),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, ca_key_pem).unwrap();
    std::fs::write(&files.2, leaf.pem()).unwrap();
    std::fs::write(&files.3, leaf_key.serialize_pem()).unwrap();
    files
}
