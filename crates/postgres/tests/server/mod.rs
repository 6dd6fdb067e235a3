//! A real PostgreSQL + pgvector server for the tests: `$GNN_CODER_TEST_PG` (an admin URL), else
//! the one `scripts/postgres.sh` runs on 127.0.0.1:54329, started by that script when it is not
//! running yet. Every test gets a database of its own, dropped when the test ends.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The admin URL of the test server (started once per test binary when needed).
pub fn admin_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("GNN_CODER_TEST_PG") {
            return url;
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/postgres.sh"))
            .arg("start")
            .output()
            .expect("cannot run scripts/postgres.sh");
        assert!(
            out.status.success(),
            "scripts/postgres.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
    .clone()
}

/// Runs `sql` on `url` from a thread of its own (callers may be inside a runtime).
fn execute_on(url: String, sql: String) {
    std::thread::spawn(move || execute_now(&url, &sql))
        .join()
        .unwrap_or_else(|_| panic!("SQL on the test server failed"));
}

/// The CA certificate that signed the test server's TLS certificate (`scripts/postgres.sh ca`).
pub fn ca_cert() -> String {
    admin_url();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/postgres.sh"))
        .arg("ca")
        .output()
        .expect("cannot run scripts/postgres.sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn admin(sql: &str) {
    execute_on(admin_url(), sql.to_string());
}

fn execute_now(url: &str, sql: &str) {
    let url = url.to_string();
    let sql = sql.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("cannot reach the test PostgreSQL server");
        tokio::spawn(conn);
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// A database of its own on the test server, dropped with this value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "gc_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        admin(&format!("CREATE DATABASE {name}"));
        let base = admin_url();
        let cut = base.rfind('/').expect("a database in the admin URL");
        let url = format!("{}/{name}", &base[..cut]);
        TestDb { name, url }
    }

    /// An existing database by name (a child process reopening its parent's).
    pub fn existing(name: &str) -> TestDb {
        let base = admin_url();
        let cut = base.rfind('/').expect("a database in the admin URL");
        TestDb {
            name: name.to_string(),
            url: format!("{}/{name}", &base[..cut]),
        }
    }

    /// Runs SQL in this database (tampering in tests).
    pub fn execute(&self, sql: &str) {
        execute_on(self.url.clone(), sql.to_string());
    }

    /// Keeps the database after the test (a child process must not drop its parent's).
    pub fn keep(mut self) -> String {
        let name = std::mem::take(&mut self.name);
        std::mem::forget(self);
        name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            admin(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
