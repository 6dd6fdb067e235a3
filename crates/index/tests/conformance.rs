//! The store conformance suite (`gnn_coder_store::conformance`) against the embedded store:
//! each case gets its own temporary directory.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use gnn_coder_index::{EmbeddedStore, FORMAT_VERSION, MANIFEST_FILE};
use gnn_coder_store::conformance::Harness;
use gnn_coder_store::{EmbeddingInfo, Result, Store};

/// Names the index directory of the parent's case in the killed-writer child.
const DIR_ENV: &str = "GNN_CODER_CONFORMANCE_INDEX_DIR";

/// One index directory, made on the first `create`.
#[derive(Default)]
struct Embedded {
    tmp: OnceLock<tempfile::TempDir>,
}

impl Embedded {
    fn dir(&self) -> PathBuf {
        self.tmp
            .get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
            .path()
            .join("idx")
    }
}

impl Harness for Embedded {
    fn create(&self, embedding: Option<EmbeddingInfo>) -> Box<dyn Store> {
        Box::new(EmbeddedStore::open_or_create(&self.dir(), embedding).expect("create the index"))
    }

    fn reopen(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(EmbeddedStore::open(&self.dir())?))
    }

    fn make_newer_version(&self) {
        let path = self.dir().join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).expect("the manifest");
        let from = format!("\"format_version\": {FORMAT_VERSION}");
        assert!(text.contains(&from), "{text}");
        let to = format!("\"format_version\": {}", FORMAT_VERSION + 1);
        fs::write(&path, text.replace(&from, &to)).expect("rewrite the manifest");
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![(DIR_ENV.into(), self.dir().to_string_lossy().into_owned())]
    }

    fn open_from_env(&self) -> Result<Box<dyn Store>> {
        let dir = std::env::var_os(DIR_ENV).expect("the parent names the index directory");
        Ok(Box::new(EmbeddedStore::open(&PathBuf::from(dir))?))
    }
}

gnn_coder_store::conformance_tests!(Embedded::default());
