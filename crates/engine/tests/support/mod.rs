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

/// Three small Python files: a size parser and formatter, a retry loop, a header parser.
#[allow(dead_code)] // not every test file that includes this module uses it
pub const SAMPLE_FILES: &[(&str, &str)] = &[
    (
        "sizes.py",
        "def parse_size(text):\n    number = int(text[:-1])\n    unit = text[-1]\n    return number * {'K': 1024, 'M': 1 << 20}[unit]\n\n\
         def format_size(n):\n    if n >= 1 << 20:\n        return f'{n >> 20}M'\n    return f'{n >> 10}K'\n",
    ),
    (
        "net/retry.py",
        "def retry_with_backoff(fn, attempts):\n    for i in range(attempts):\n        try:\n            return fn()\n        except IOError:\n            sleep(2 ** i)\n",
    ),
    (
        "net/http.py",
        "class Client:\n    def parse_headers(self, raw):\n        out = {}\n        for line in raw.split('\\n'):\n            k, v = line.split(':', 1)\n            out[k.strip()] = v.strip()\n        return out\n",
    ),
];
