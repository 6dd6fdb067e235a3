//! The deployment files under deploy/ pass their checkers: tests/deploy/check.py validates the
//! Kubernetes manifests against Kubernetes' schemas, the compose files with the Compose CLI,
//! the systemd unit with `systemd-analyze verify`, the shell scripts with `bash -n` and
//! ShellCheck, the Dockerfiles (and hadolint), and every gnn-coder command line in them against
//! the CLI's flags; then it breaks a copy of each file on purpose and expects every check to
//! fail there. The checkers come from tests/e2e/python/requirements.txt (.ci/run installs it).
//!
//! (Found by Cargo's test auto-discovery: crates/cli/tests/*.rs; no [[test]] entry needed.)

use std::path::PathBuf;
use std::process::Command;

#[test]
fn deploy_files_pass_their_checkers() {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let out = Command::new("python3")
        .arg("tests/deploy/check.py")
        .current_dir(&root)
        .output()
        .expect("cannot run python3 (needed for tests/deploy/check.py)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "tests/deploy/check.py failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
