//! Class 3: a damaged index fails loudly, never answers wrongly. Every file of a real index
//! (built by the binary with the model) is truncated, halved, zeroed or has a byte flipped; a
//! search must then either give the undamaged index's exact answer or fail with a message that
//! says the index is damaged, names the file and says `--rebuild` (never exit 101, a panic). A
//! plain refresh does not hide the damage; `--rebuild` repairs it. The server answers DATA_LOSS
//! for a damaged index it serves, or refuses to start on one, naming the file.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tonic::Code;

use super::support::{BIN, Server, copy_dir, fixture, search};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run gnn-coder")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn files_below(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_below(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Empty,
    Half,
    Zeros,
    Flip,
}

fn damage(path: &Path, how: Damage) -> bool {
    let mut bytes = fs::read(path).unwrap();
    if bytes.is_empty() {
        return false;
    }
    match how {
        Damage::Empty => bytes.clear(),
        Damage::Half => bytes.truncate(bytes.len() / 2),
        Damage::Zeros => bytes.iter_mut().for_each(|b| *b = 0),
        Damage::Flip => {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x5a;
        }
    }
    fs::write(path, bytes).unwrap();
    true
}

/// The fixture indexed with the model (vectors included).
fn build(dir: &Path) {
    let out = run(&["index", s(&fixture()), "--index", s(dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn search_args(index: &Path, semantic: bool) -> Vec<&str> {
    let mut a = vec!["search", "--index", s(index), "--json", "-k", "5"];
    if !semantic {
        a.extend(["--mode", "lexical"]);
    }
    a.push("parse a size like 512K");
    a
}

/// The message of a refusal: says damaged, names the file, says how to repair.
fn check_refusal(case: &str, out: &Output, file: &str, failures: &mut Vec<String>) {
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(101) || (err.contains("panicked") && !err.contains("damaged")) {
        failures.push(format!("{case}: panicked: {err}"));
    } else if !(err.contains("damaged") && err.contains("--rebuild") && err.contains(file)) {
        failures.push(format!("{case}: unclear refusal: {err}"));
    }
}

#[test]
fn a_damaged_index_is_refused_with_the_file_named_or_answers_right() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build(&pristine);
    let reference = |semantic: bool| {
        let out = run(&search_args(&pristine, semantic));
        assert!(out.status.success(), "{out:?}");
        out.stdout
    };
    let (lexical_ref, hybrid_ref) = (reference(false), reference(true));
    assert!(
        String::from_utf8_lossy(&hybrid_ref).contains("parse_ini"),
        "the reference finds something"
    );

    let mut files = Vec::new();
    files_below(&pristine, &mut files);
    let rels: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(&pristine)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|r| !r.ends_with(".lock") && r != ".gitignore")
        .collect();
    assert!(rels.iter().any(|r| r == "vectors/rows.i8"), "{rels:?}");
    assert!(rels.iter().any(|r| r.ends_with(".term")), "{rels:?}");

    let mut failures = Vec::new();
    let (mut refused, mut right) = (0, 0);
    for rel in &rels {
        let semantic = rel.starts_with("vectors/");
        let want = if semantic { &hybrid_ref } else { &lexical_ref };
        for how in [Damage::Empty, Damage::Half, Damage::Zeros, Damage::Flip] {
            let dir = tmp.path().join("case");
            let _ = fs::remove_dir_all(&dir);
            copy_dir(&pristine, &dir);
            if !damage(&dir.join(rel), how) {
                continue;
            }
            let case = format!("{rel} {how:?}");
            let out = run(&search_args(&dir, semantic));
            let name = Path::new(rel).file_name().unwrap().to_string_lossy();
            if out.status.success() {
                if out.stdout == *want {
                    right += 1;
                } else {
                    failures.push(format!(
                        "{case}: answered wrongly:\n{}",
                        String::from_utf8_lossy(&out.stdout)
                    ));
                }
            } else {
                refused += 1;
                // tantivy's metadata names its directory at least.
                let named = if rel.starts_with("lexical/") && name.ends_with(".json") {
                    "lexical"
                } else {
                    &name
                };
                check_refusal(&case, &out, named, &mut failures);
            }
        }
    }
    eprintln!("{refused} refused, {right} answered right");
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The zeroed vector rows (which answered arbitrary units at score 0): a plain refresh is
    // refused too, with the same advice; --rebuild repairs.
    let dir = tmp.path().join("repair");
    copy_dir(&pristine, &dir);
    damage(&dir.join("vectors/rows.i8"), Damage::Zeros);
    let out = run(&["index", s(&fixture()), "--index", s(&dir)]);
    assert!(!out.status.success());
    let mut failures = Vec::new();
    check_refusal("refresh", &out, "rows.i8", &mut failures);
    assert!(failures.is_empty(), "{failures:?}");
    let out = run(&["index", s(&fixture()), "--index", s(&dir), "--rebuild"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&search_args(&dir, true));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, hybrid_ref, "rebuilt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_data_loss_or_refuses_to_start_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build(&pristine);

    // Damaged vector rows: DATA_LOSS, naming the file, for searches that read them.
    let dir = tmp.path().join("rows");
    copy_dir(&pristine, &dir);
    damage(&dir.join("vectors/rows.i8"), Damage::Zeros);
    let server = Server::start(&dir, &[]);
    let mut c = server.client().await;
    let status = c.search(search("parse a size")).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains("rows.i8"), "{status:?}");
    drop(server);

    // A damaged term dictionary (which panicked the CLI): refused at start, not a panic.
    let dir = tmp.path().join("term");
    copy_dir(&pristine, &dir);
    let mut files = Vec::new();
    files_below(&dir.join("lexical"), &mut files);
    let term = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "term"))
        .unwrap();
    damage(term, Damage::Flip);
    let mut child = Command::new(BIN)
        .args(["serve", "--index", s(&dir), "--listen", "127.0.0.1:0"])
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("the server started on a damaged index");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(101));
    let err = String::from_utf8_lossy(&out.stderr);
    let name = term.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains("damaged") && err.contains(name.as_ref()),
        "{err}"
    );
}
