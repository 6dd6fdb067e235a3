//! What several of the engine's test files share: a small repository indexed with the model.

use std::fs;
use std::path::Path;

use gnn_coder_engine::{CancellationToken, Engine, EngineOptions, IndexOptions, ModelChoice};

/// Writes `text` to `root/rel`, creating its directories.
pub fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, text).expect("write");
}

/// Writes `files` into `tmp/repo`, indexes them with the default model as repository `repo`
/// into `tmp/idx`, and reopens the index.
pub fn engine_with_files(tmp: &Path, files: &[(&str, &str)]) -> Engine {
    let root = tmp.join("repo");
    for (rel, text) in files {
        write(&root, rel, text);
    }
    let options = || EngineOptions {
        model: ModelChoice::default(),
        threads: 2,
        ..EngineOptions::default()
    };
    let idx = tmp.join("idx");
    {
        let engine = Engine::open_or_create(&idx, options(), false).expect("creates");
        let mut opts = IndexOptions::new(&root);
        opts.name = Some("repo".into());
        engine
            .index_repository(&opts, &|_| {}, &CancellationToken::new())
            .expect("indexes");
    }
    Engine::open(&idx, options()).expect("opens")
}
