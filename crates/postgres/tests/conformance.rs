//! The store conformance suite (`gnn_coder_store::conformance`) against the PostgreSQL store on
//! a real server (`tests/server`): each case gets a database of its own.

mod server;

use std::sync::OnceLock;

use gnn_coder_postgres::PgStore;
use gnn_coder_store::conformance::Harness;
use gnn_coder_store::{EmbeddingInfo, Result, Store};

/// Names the database of the parent's case in the killed-writer child.
const DB_ENV: &str = "GNN_CODER_CONFORMANCE_PG_DB";

/// One database, made on the first `create`.
#[derive(Default)]
struct Postgres {
    db: OnceLock<server::TestDb>,
}

impl Postgres {
    fn db(&self) -> &server::TestDb {
        self.db.get_or_init(server::TestDb::new)
    }
}

impl Harness for Postgres {
    fn create(&self, embedding: Option<EmbeddingInfo>) -> Box<dyn Store> {
        Box::new(PgStore::open_or_create(&self.db().url, embedding).expect("create the store"))
    }

    fn reopen(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(PgStore::open(&self.db().url)?))
    }

    fn make_newer_version(&self) {
        self.db()
            .execute("UPDATE gc_meta SET schema_version = schema_version + 1");
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![(DB_ENV.into(), self.db().name.clone())]
    }

    fn open_from_env(&self) -> Result<Box<dyn Store>> {
        let name = std::env::var(DB_ENV).expect("the parent names the database");
        // The parent owns (and drops) the database.
        let url = server::TestDb::existing(&name).keep();
        let url = format!("{}/{url}", server::admin_url().rsplit_once('/').unwrap().0);
        Ok(Box::new(PgStore::open(&url)?))
    }
}

gnn_coder_store::conformance_tests!(Postgres::default());
