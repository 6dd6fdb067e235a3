//! Compiles `proto/gnn_coder/v1/*.proto` with the vendored protoc (no system protoc needed),
//! and writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = proto_root.join("gnn_coder/v1/search.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // Decode errors are INVALID_ARGUMENT, not tonic-prost's INTERNAL (src/codec.rs).
        .codec_path("crate::codec::WireCodec")
        .file_descriptor_set_path(out.join("gnn_coder_v1_descriptor.bin"))
        .compile_with_config(config, &[file], &[proto_root])?;
    Ok(())
}
