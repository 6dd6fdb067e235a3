//! The schema and its versioned migrations.
//!
//! Every table but the two one-row bookkeeping tables carries the repository name `repo` in its
//! primary key, so Citus can distribute them by repository and colocate them (a repository's
//! units, postings, files and statistics live on one shard, and every join is on `repo`). The
//! embedding cache `gc_vectors` is shared by all repositories and keyed by the unit key alone;
//! it is never joined, so Citus distributes it by `key` (deploy/citus/setup.sh).
//!
//! | table | key | what |
//! |---|---|---|
//! | `gc_meta` | one row | schema version, model, dimension, commit generation |
//! | `gc_migrations` | version | which migrations ran, when |
//! | `gc_repositories` | repo | the repository's record (JSON) |
//! | `gc_files` | repo, path | content hash, units, bytes |
//! | `gc_units` | repo, id | the unit's record, key, field lengths, vector (`vector(dim)`) |
//! | `gc_postings` | term, field, repo, id | term frequency and field length (BM25) |
//! | `gc_field_stats` | repo | units and tokens per field (BM25's averages) |
//! | `gc_vectors` | key | the embedding cache: one vector per distinct unit text |
//!
//! The vector columns are typed with the model's dimension, so they are added when a store is
//! first given its model ([`configure_vectors`]), not by a migration.

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

/// Migrations in order: version `i + 1` is `MIGRATIONS[i]`.
pub const MIGRATIONS: &[&str] = &[V1];

/// A constant advisory-lock key serializing migrations (and the model's set-up) across
/// processes.
pub const MIGRATION_LOCK: i64 = 0x676e_6e63_6f64_6572; // "gnncoder"

const V1: &str = r#"
CREATE TABLE gc_meta (
    id int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    configured boolean NOT NULL DEFAULT false,
    model text,
    dim int,
    trained boolean,
    generation bigint NOT NULL DEFAULT 0
);
INSERT INTO gc_meta (id, schema_version) VALUES (1, 1);
CREATE TABLE gc_repositories (
    repo text PRIMARY KEY,
    info text NOT NULL
);
CREATE TABLE gc_files (
    repo text NOT NULL,
    path text NOT NULL,
    hash text NOT NULL,
    units int NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (repo, path)
);
CREATE SEQUENCE gc_unit_ids;
CREATE TABLE gc_units (
    repo text NOT NULL,
    id bigint NOT NULL,
    path text NOT NULL,
    ord int NOT NULL,
    language text NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    symbol text NOT NULL,
    start_line bigint NOT NULL,
    end_line bigint NOT NULL,
    def_line bigint NOT NULL,
    start_byte bigint NOT NULL,
    end_byte bigint NOT NULL,
    doc text,
    code text NOT NULL,
    key bytea NOT NULL,
    len_name int NOT NULL,
    len_symbol int NOT NULL,
    len_doc int NOT NULL,
    len_code int NOT NULL,
    len_path int NOT NULL,
    PRIMARY KEY (repo, id)
);
CREATE INDEX gc_units_file ON gc_units (repo, path, ord);
CREATE INDEX gc_units_id ON gc_units (id);
CREATE TABLE gc_postings (
    term text NOT NULL,
    field smallint NOT NULL,
    repo text NOT NULL,
    id bigint NOT NULL,
    tf int NOT NULL,
    len int NOT NULL,
    -- tf and len in the key's index: a query's postings are read by index-only scans (a
    -- term's rows lie scattered over the heap, one unit's terms together).
    PRIMARY KEY (term, field, repo, id) INCLUDE (tf, len)
);
CREATE INDEX gc_postings_unit ON gc_postings (repo, id);
CREATE TABLE gc_field_stats (
    repo text PRIMARY KEY,
    docs bigint NOT NULL,
    tokens_name bigint NOT NULL,
    tokens_symbol bigint NOT NULL,
    tokens_doc bigint NOT NULL,
    tokens_code bigint NOT NULL,
    tokens_path bigint NOT NULL
);
"#;

/// The statements that give a store its model: pgvector (a lexical-only store does without
/// it), typed vector columns on the units and the embedding cache. The approximate (HNSW) index is built later, by `maintain`, once the
/// vectors are in (building it over loaded rows is faster than growing it row by row).
pub fn configure_vectors(dim: usize) -> String {
    format!(
        "CREATE EXTENSION IF NOT EXISTS vector;
         ALTER TABLE gc_units ADD COLUMN embedding vector({dim});
         CREATE TABLE gc_vectors (key bytea PRIMARY KEY, embedding vector({dim}) NOT NULL);"
    )
}

/// The approximate index over the units' vectors (inner product).
pub const HNSW_INDEX: &str = "gc_units_hnsw";

/// Whether the approximate index has been built.
pub(crate) async fn hnsw_exists(
    client: &tokio_postgres::Client,
    location: &str,
) -> gnn_coder_store::Result<bool> {
    Ok(client
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&HNSW_INDEX])
        .await
        .map_err(|e| crate::db(location, e))?
        .get(0))
}

/// Built without `CONCURRENTLY`: a concurrent build waits for every open snapshot, and readers
/// hold theirs (so it would wait for ever); a plain build blocks writers for its duration only,
/// never readers.
pub fn create_hnsw() -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS {HNSW_INDEX} ON gc_units \
         USING hnsw (embedding vector_ip_ops) WITH (m = 16, ef_construction = 64)"
    )
}

/// The tables of a store, for sizes and for `remove`.
pub const TABLES: &[&str] = &[
    "gc_meta",
    "gc_migrations",
    "gc_repositories",
    "gc_files",
    "gc_units",
    "gc_postings",
    "gc_field_stats",
    "gc_vectors",
];
