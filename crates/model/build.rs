//! Names the built-in weights: the SHA-256 of `weights/gnn-coder/head.safetensors`, which an
//! index records as its model (`files::BUNDLED_HEAD_SHA256`), computed once here rather than
//! by every process at start-up.

use sha2::Digest;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../weights/gnn-coder");
    let head = dir.join("head.safetensors");
    println!("cargo:rerun-if-changed={}", head.display());
    let bytes = std::fs::read(&head)
        .unwrap_or_else(|e| panic!("cannot read the shipped weights {}: {e}", head.display()));
    println!(
        "cargo:rustc-env=GNN_CODER_BUNDLED_HEAD_SHA256={:x}",
        sha2::Sha256::digest(&bytes)
    );
}
