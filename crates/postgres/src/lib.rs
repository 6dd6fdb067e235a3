//! # gnn-coder-postgres
//!
//! The PostgreSQL + pgvector store: the traits of `gnn-coder-store` over one database that many
//! `gnn-coder serve` replicas and batch jobs share, sharded by repository with Citus when one
//! server is not enough.
//!
//! ## Design
//!
//! - **One commit, one transaction.** A [`StoreWriter`] owns a connection of its own (not one
//!   from the pool) and opens a transaction at its first write; [`StoreWriter::commit`] bumps
//!   the store's generation and commits. A writer dropped, or a process killed, closes the
//!   connection and PostgreSQL rolls the transaction back: nothing half-written is ever seen.
//! - **Readers are snapshots.** A [`StoreReader`] holds a pooled connection inside a
//!   `REPEATABLE READ READ ONLY` transaction, so every leg, fetch and listing sees one commit.
//!   [`Store::reader`] keeps up to eight such snapshots (a connection runs its queries one
//!   after another, so concurrent searches need several) and hands them out until another
//!   commit (by any process) bumps the generation, or for 30 s at most (an open snapshot holds
//!   back `VACUUM`). [`UnitId`]s are the units' row ids, the same in every snapshot.
//! - **Per-repository locks.** A writer takes a session advisory lock on each repository it
//!   touches, at the first write; a second writer on the same repository is refused
//!   ([`gnn_coder_store::ErrorKind::Locked`]), writers on different repositories run at once.
//!   The locks go with the writer's connection.
//! - **BM25 in SQL.** The lexical leg ranks like the embedded store's tantivy leg: the same
//!   analysis (`gnn_coder_index::tokenizer::analyze`: code-aware words, stemmed), the same
//!   fields and boosts, and tantivy's BM25 (k1 = 1.2, b = 0.75, idf = ln(1 + (N − n + ½)/(n + ½))
//!   with field lengths averaged over all units). Postings (`term, field, repo, id → tf, len`)
//!   are computed here and written beside the units; a query reads the document frequencies of
//!   its terms and the field statistics in its snapshot, then sums the weighted term scores per
//!   unit in one grouped join.
//! - **Vectors.** Units carry their vector (pgvector `vector(dim)`); `gc_vectors` is the
//!   embedding cache across repositories and replicas ([`StoreWriter::known_keys`]). The vector
//!   leg orders by inner product (`<#>`), through an HNSW index once `maintain` has built one
//!   (with pgvector's iterative scans so filters apply inside the index walk), or exactly.
//! - **Filters inside the legs.** Languages, kinds and repositories are SQL conditions; path
//!   globs and exclusions are checked on ranked rows fetched ever deeper, before the top-N cut,
//!   as the embedded store does.
//! - **Blocking façade.** The traits are synchronous; the store owns a small tokio runtime and
//!   each call runs its future there and waits on a channel, so it works from any thread,
//!   inside or outside another runtime.
//!
//! The SQL stays Citus-compatible (see [`schema`]): the distribution column is in every key and
//! join, query vectors and terms are parameters, and no statement reads a distributed table in
//! a subquery of itself.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use gnn_coder_store::{EmbeddingInfo, Result, Store, StoreError, StoreReader, StoreWriter};
use tokio_postgres_rustls::MakeRustlsConnect;

mod reader;
pub mod schema;
mod tls;
mod writer;

pub use tls::ROOT_CERT_ENV;

pub use reader::PgReader;
pub use writer::PgWriter;

/// Whether `location` names a PostgreSQL store (`postgres://…` or `postgresql://…`).
pub fn is_postgres_url(location: &str) -> bool {
    let l = location.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// `url` without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    // postgres://user:password@host/db → postgres://user:***@host/db
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let auth_end = rest.find('@');
        let path_start = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = auth_end
            && at < path_start
            && let Some(colon) = rest[..at].find(':')
        {
            return format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &rest[..colon],
                &rest[at..]
            );
        }
    }
    url.to_string()
}

/// Shared by the store, its writers and readers.
pub(crate) struct Inner {
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
    pub(crate) pool: Pool,
    pub(crate) config: tokio_postgres::Config,
    /// TLS when the URL asks for it (`sslmode=require`), else never used.
    pub(crate) tls: MakeRustlsConnect,
    /// The URL without its password.
    pub(crate) location: String,
    /// The reader [`Store::reader`] hands out until the generation moves (or it grows old: an
    /// open snapshot holds back PostgreSQL's clean-up of dead rows and keeps `VACUUM` from
    /// marking new rows visible to all, which the lexical leg's index-only scans need).
    /// Several, so that concurrent searches run on as many connections (one snapshot is one
    /// connection, and PostgreSQL runs a connection's queries one after another).
    pub(crate) cached: Mutex<Vec<CachedReader>>,
    pub(crate) next_reader: std::sync::atomic::AtomicUsize,
}

pub(crate) type CachedReader = (i64, std::time::Instant, Arc<PgReader>);

impl Inner {
    /// Lets go of the cached snapshot (after a commit, before a `VACUUM`).
    pub(crate) fn forget_reader(&self) {
        if let Ok(mut c) = self.cached.lock() {
            c.clear();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.pool.close();
        // Dropping a runtime inside another one's async context panics; this never blocks.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Inner {
    /// Runs `fut` on the store's runtime and waits for it, from any thread.
    pub(crate) fn block<T, F>(&self, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let Some(rt) = self.runtime.as_ref() else {
            return Err(self.unavailable("the store is closed"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| self.unavailable("the store's runtime stopped"))?
    }

    pub(crate) fn unavailable(&self, message: impl Into<String>) -> StoreError {
        StoreError::Unavailable {
            location: self.location.clone(),
            message: message.into(),
        }
    }

    /// A fresh connection outside the pool (a writer's: its locks and transaction are its own).
    pub(crate) async fn connect(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        location: String,
    ) -> Result<tokio_postgres::Client> {
        let (client, conn) = config.connect(tls).await.map_err(|e| db(&location, e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    pub(crate) async fn pooled(pool: &Pool, location: &str) -> Result<deadpool_postgres::Object> {
        pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => db(location, e),
            e => StoreError::Unavailable {
                location: location.to_string(),
                message: e.to_string(),
            },
        })
    }
}

/// A database error as a store error: connection trouble is `Unavailable`, the rest a backend
/// failure with PostgreSQL's own message.
pub(crate) fn db(location: &str, e: tokio_postgres::Error) -> StoreError {
    if let Some(d) = e.as_db_error() {
        let code = d.code().code();
        // Class 08 (connection), 57P (shutdown), 53 (resources), 40001/40P01 are transient.
        if code.starts_with("08") || code.starts_with("57P") || code.starts_with("53") {
            return StoreError::Unavailable {
                location: location.to_string(),
                message: d.message().to_string(),
            };
        }
        return StoreError::Backend {
            message: format!("{location}: {} ({code})", d.message()),
        };
    }
    // The message with its causes (tokio-postgres keeps e.g. a parameter's error as a source).
    let mut message = e.to_string();
    let mut next = std::error::Error::source(&e);
    while let Some(s) = next {
        message.push_str(&format!(": {s}"));
        next = s.source();
    }
    if e.is_closed() || message.contains("connect") || message.contains("timed out") {
        return StoreError::Unavailable {
            location: location.to_string(),
            message,
        };
    }
    StoreError::Backend {
        message: format!("{location}: {message}"),
    }
}

/// How long [`Store::reader`] hands out the same snapshot when nothing was committed.
const READER_MAX_AGE: Duration = Duration::from_secs(30);

/// Snapshots (connections) [`Store::reader`] keeps for concurrent searches.
const READERS: usize = 8;

/// A store in one PostgreSQL database.
pub struct PgStore {
    inner: Arc<Inner>,
    embedding: Option<EmbeddingInfo>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .finish()
    }
}

/// What the `gc_meta` row says.
#[derive(Debug, Clone)]
struct Meta {
    schema_version: i32,
    configured: bool,
    embedding: Option<EmbeddingInfo>,
}

impl PgStore {
    fn connect_inner(url: &str) -> Result<Arc<Inner>> {
        let location = redact(url);
        let config: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::InvalidArgument {
                    message: format!("invalid PostgreSQL URL {location}: {e}"),
                })?;
        let mut config = config;
        // libpq's variable, so a password need not be in the URL (or a process listing).
        if config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            config.password(pw);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("gnn-coder");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("gnn-coder-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                location: location.clone(),
                message: format!("cannot start the async runtime: {e}"),
            })?;
        let tls = tls::connector(&mut config, &location)?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // A reader's snapshot transaction must never outlive it on a pooled connection.
                recycling_method: RecyclingMethod::Custom("ROLLBACK".to_string()),
            },
        );
        let pool = {
            let _enter = runtime.enter();
            Pool::builder(manager)
                .max_size(16)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(10)))
                .build()
                .map_err(|e| StoreError::Unavailable {
                    location: location.clone(),
                    message: e.to_string(),
                })?
        };
        Ok(Arc::new(Inner {
            runtime: Some(runtime),
            pool,
            config,
            tls,
            location,
            cached: Mutex::new(Vec::new()),
            next_reader: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    /// Opens an existing store for reading and writing. Fails with `NotFound` when the database
    /// holds no gnn-coder store yet and `Incompatible` when its schema is of another version.
    pub fn open(url: &str) -> Result<PgStore> {
        let inner = PgStore::connect_inner(url)?;
        let meta = read_meta(&inner)?;
        let Some(meta) = meta.filter(|m| m.configured) else {
            return Err(StoreError::NotFound {
                path: inner.location.clone().into(),
                reason: "the database holds no gnn-coder index yet (build one with \
                         `gnn-coder index ROOT --store URL`)"
                    .to_string(),
            });
        };
        check_version(&inner, meta.schema_version)?;
        Ok(PgStore::from_parts(inner, meta.embedding))
    }

    /// Whether the database holds a store that was given its model (or made lexical-only).
    pub fn exists(url: &str) -> Result<bool> {
        let inner = PgStore::connect_inner(url)?;
        Ok(read_meta(&inner)?.is_some_and(|m| m.configured))
    }

    /// Opens the store, creating its schema (migrating an older one) and giving a new store its
    /// model (`None`: lexical-only). An existing store keeps its own model.
    pub fn open_or_create(url: &str, embedding: Option<EmbeddingInfo>) -> Result<PgStore> {
        let inner = PgStore::connect_inner(url)?;
        migrate_inner(&inner)?;
        let meta = configure(&inner, embedding)?;
        Ok(PgStore::from_parts(inner, meta.embedding))
    }

    /// Brings the schema to this build's version; returns the versions applied.
    pub fn migrate(url: &str) -> Result<Vec<i32>> {
        let inner = PgStore::connect_inner(url)?;
        migrate_inner(&inner)
    }

    /// Deletes every table of the store (`index --rebuild`).
    pub fn remove(url: &str) -> Result<()> {
        let inner = PgStore::connect_inner(url)?;
        let pool = inner.pool.clone();
        let loc = inner.location.clone();
        inner.block(async move {
            let client = Inner::pooled(&pool, &loc).await?;
            let mut sql = String::new();
            for t in schema::TABLES {
                sql.push_str(&format!("DROP TABLE IF EXISTS {t} CASCADE;"));
            }
            sql.push_str("DROP SEQUENCE IF EXISTS gc_unit_ids;");
            client.batch_execute(&sql).await.map_err(|e| db(&loc, e))
        })
    }

    fn from_parts(inner: Arc<Inner>, embedding: Option<EmbeddingInfo>) -> PgStore {
        PgStore { inner, embedding }
    }

    /// Where the store is (its URL without the password).
    pub fn location(&self) -> &str {
        &self.inner.location
    }
}

fn read_meta(inner: &Arc<Inner>) -> Result<Option<Meta>> {
    let pool = inner.pool.clone();
    let loc = inner.location.clone();
    inner.block(async move {
        let client = Inner::pooled(&pool, &loc).await?;
        let exists: Option<String> = client
            .query_one("SELECT to_regclass('gc_meta')::text", &[])
            .await
            .map_err(|e| db(&loc, e))?
            .get(0);
        if exists.is_none() {
            return Ok(None);
        }
        let row = client
            .query_one(
                "SELECT schema_version, configured, model, dim, trained FROM gc_meta WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| db(&loc, e))?;
        Ok(Some(meta_of(&row)))
    })
}

fn meta_of(row: &tokio_postgres::Row) -> Meta {
    let model: Option<String> = row.get(2);
    let dim: Option<i32> = row.get(3);
    let trained: Option<bool> = row.get(4);
    Meta {
        schema_version: row.get(0),
        configured: row.get(1),
        embedding: match (model, dim) {
            (Some(model), Some(dim)) => Some(EmbeddingInfo {
                model,
                dim: usize::try_from(dim).unwrap_or(0),
                trained: trained.unwrap_or(false),
            }),
            _ => None,
        },
    }
}

fn check_version(inner: &Inner, found: i32) -> Result<()> {
    if found == schema::SCHEMA_VERSION {
        return Ok(());
    }
    Err(StoreError::IncompatibleVersion {
        path: format!(
            "{} ({})",
            inner.location,
            if found > schema::SCHEMA_VERSION {
                "written by a newer gnn-coder"
            } else {
                "run `gnn-coder store migrate --store URL` to upgrade it"
            }
        )
        .into(),
        found: u32::try_from(found).unwrap_or(0),
        expected: schema::SCHEMA_VERSION as u32,
    })
}

/// A transaction holding the schema lock (migrations and the model's set-up, one at a time
/// across processes).
async fn schema_transaction<'a>(
    client: &'a mut tokio_postgres::Client,
    loc: &str,
) -> Result<tokio_postgres::Transaction<'a>> {
    let tx = client.transaction().await.map_err(|e| db(loc, e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&schema::MIGRATION_LOCK],
    )
    .await
    .map_err(|e| db(loc, e))?;
    Ok(tx)
}

fn migrate_inner(inner: &Arc<Inner>) -> Result<Vec<i32>> {
    let config = inner.config.clone();
    let tls = inner.tls.clone();
    let loc = inner.location.clone();
    let applied = inner.block(async move {
        let mut client = Inner::connect(config, tls, loc.clone()).await?;
        let tx = schema_transaction(&mut client, &loc).await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS gc_migrations (
                 version int PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| db(&loc, e))?;
        let mut current: i32 = tx
            .query_one("SELECT coalesce(max(version), 0) FROM gc_migrations", &[])
            .await
            .map_err(|e| db(&loc, e))?
            .get(0);
        // The version the data says it has (a newer gnn-coder may have written it).
        let meta: Option<String> = tx
            .query_one("SELECT to_regclass('gc_meta')::text", &[])
            .await
            .map_err(|e| db(&loc, e))?
            .get(0);
        if meta.is_some() {
            let v: i32 = tx
                .query_one("SELECT schema_version FROM gc_meta WHERE id = 1", &[])
                .await
                .map_err(|e| db(&loc, e))?
                .get(0);
            current = current.max(v);
        }
        if current > schema::SCHEMA_VERSION {
            return Err(StoreError::IncompatibleVersion {
                path: format!("{loc} (written by a newer gnn-coder)").into(),
                found: u32::try_from(current).unwrap_or(0),
                expected: schema::SCHEMA_VERSION as u32,
            });
        }
        let mut applied = Vec::new();
        for (i, sql) in schema::MIGRATIONS.iter().enumerate() {
            let version = i as i32 + 1;
            if version <= current {
                continue;
            }
            tx.batch_execute(sql).await.map_err(|e| db(&loc, e))?;
            tx.execute(
                "INSERT INTO gc_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(|e| db(&loc, e))?;
            tx.execute("UPDATE gc_meta SET schema_version = $1", &[&version])
                .await
                .map_err(|e| db(&loc, e))?;
            applied.push(version);
        }
        tx.commit().await.map_err(|e| db(&loc, e))?;
        if !applied.is_empty() {
            // Database-wide settings (Citus propagates ALTER DATABASE): pgvector's iterative
            // index scans, so filtered vector searches still fill their top-k. Owners only;
            // without the right the store still works, with a bit less recall under filters.
            if let Err(e) = client
                .batch_execute(
                    "DO $$ BEGIN
                       EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order',
                                      current_database());
                       EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = 100',
                                      current_database());
                     END $$",
                )
                .await
            {
                tracing::warn!(error = %e, "could not set the database's pgvector settings");
            }
        }
        Ok(applied)
    })?;
    Ok(applied)
}

/// Gives a store that has none its model (or makes it lexical-only); returns the stored meta.
fn configure(inner: &Arc<Inner>, embedding: Option<EmbeddingInfo>) -> Result<Meta> {
    let config = inner.config.clone();
    let tls = inner.tls.clone();
    let loc = inner.location.clone();
    inner.block(async move {
        let mut client = Inner::connect(config, tls, loc.clone()).await?;
        let tx = schema_transaction(&mut client, &loc).await?;
        let row = tx
            .query_one(
                "SELECT schema_version, configured, model, dim, trained FROM gc_meta WHERE id = 1",
                &[],
            )
            .await
            .map_err(|e| db(&loc, e))?;
        let meta = meta_of(&row);
        if meta.configured {
            return Ok(meta);
        }
        if let Some(e) = &embedding {
            if e.dim == 0 || e.dim > 16_000 {
                return Err(StoreError::InvalidArgument {
                    message: format!("vector dimension {} is out of range", e.dim),
                });
            }
            tx.batch_execute(&schema::configure_vectors(e.dim))
                .await
                .map_err(|e| db(&loc, e))?;
            let dim = e.dim as i32;
            tx.execute(
                "UPDATE gc_meta SET configured = true, model = $1, dim = $2, trained = $3",
                &[&e.model, &dim, &e.trained],
            )
            .await
            .map_err(|e| db(&loc, e))?;
        } else {
            tx.execute("UPDATE gc_meta SET configured = true", &[])
                .await
                .map_err(|e| db(&loc, e))?;
        }
        tx.commit().await.map_err(|e| db(&loc, e))?;
        Ok(Meta {
            schema_version: meta.schema_version,
            configured: true,
            embedding,
        })
    })
}

impl Store for PgStore {
    fn embedding(&self) -> Option<&EmbeddingInfo> {
        self.embedding.as_ref()
    }

    fn writer(&self) -> Result<Box<dyn StoreWriter>> {
        Ok(Box::new(PgWriter::new(
            self.inner.clone(),
            self.embedding.clone(),
        )?))
    }

    fn reader(&self) -> Result<Arc<dyn StoreReader>> {
        let pool = self.inner.pool.clone();
        let loc = self.inner.location.clone();
        let generation: i64 = self.inner.block(async move {
            let client = Inner::pooled(&pool, &loc).await?;
            Ok(client
                .query_one("SELECT generation FROM gc_meta WHERE id = 1", &[])
                .await
                .map_err(|e| db(&loc, e))?
                .get(0))
        })?;
        let mut cached = self
            .inner
            .cached
            .lock()
            .map_err(|_| self.inner.unavailable("a reader panicked"))?;
        cached.retain(|(g, at, _)| *g == generation && at.elapsed() < READER_MAX_AGE);
        // A snapshot no search is using, else a new one (up to READERS), else take turns.
        if let Some((_, _, r)) = cached.iter().find(|(_, _, r)| Arc::strong_count(r) == 1) {
            return Ok(r.clone());
        }
        if cached.len() < READERS {
            let reader = Arc::new(PgReader::open(self.inner.clone(), self.embedding.clone())?);
            cached.push((
                reader.generation(),
                std::time::Instant::now(),
                reader.clone(),
            ));
            return Ok(reader);
        }
        let i = self
            .inner
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % cached.len();
        Ok(cached[i].2.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_redacted() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("PostgreSQL://u@h/db"));
        assert!(!is_postgres_url("./postgres"));
        assert_eq!(
            redact("postgres://gnn:s3cret@db:5432/gnn"),
            "postgres://gnn:***@db:5432/gnn"
        );
        assert_eq!(redact("postgres://gnn@db/gnn"), "postgres://gnn@db/gnn");
    }
}
