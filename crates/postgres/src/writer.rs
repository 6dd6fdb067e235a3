//! The writer: one connection, one transaction per commit, per-repository advisory locks.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use gnn_coder_index::tokenizer::analyze;
use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, FileWrite, RepoInfo, Result, StoreError, StoreWriter, UnitKey,
};
use pgvector::Vector;
use tokio_postgres::Client;

use crate::{Inner, db, schema};

/// Units per `INSERT … SELECT FROM unnest(…)` statement, and postings per statement.
const UNIT_CHUNK: usize = 2_000;
const POSTING_CHUNK: usize = 50_000;

/// The lexical fields in BM25 order: name, symbol, doc, code, path (the `field` column).
pub(crate) const FIELDS: usize = 5;

/// The writer of a [`crate::PgStore`].
pub struct PgWriter {
    inner: Arc<Inner>,
    embedding: Option<EmbeddingInfo>,
    client: Arc<Client>,
    in_tx: bool,
    /// Repositories whose advisory lock this writer's session holds.
    locked: HashSet<String>,
    /// Repositories written since the last commit (their field statistics are recomputed).
    touched: BTreeSet<String>,
}

impl PgWriter {
    pub(crate) fn new(inner: Arc<Inner>, embedding: Option<EmbeddingInfo>) -> Result<PgWriter> {
        let config = inner.config.clone();
        let tls = inner.tls.clone();
        let loc = inner.location.clone();
        let client = inner.block(Inner::connect(config, tls, loc))?;
        Ok(PgWriter {
            inner,
            embedding,
            client: Arc::new(client),
            in_tx: false,
            locked: HashSet::new(),
            touched: BTreeSet::new(),
        })
    }

    fn loc(&self) -> String {
        self.inner.location.clone()
    }

    /// Takes `repo`'s lock (once per writer) and opens the transaction (once per commit).
    fn prepare(&mut self, repo: &str) -> Result<()> {
        if !self.locked.contains(repo) {
            let client = self.client.clone();
            let loc = self.loc();
            let key = format!("gnn-coder:repository:{repo}");
            let got: bool = self.inner.block(async move {
                Ok(client
                    .query_one(
                        "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                        &[&key],
                    )
                    .await
                    .map_err(|e| db(&loc, e))?
                    .get(0))
            })?;
            if !got {
                return Err(StoreError::RepositoryLocked {
                    location: self.loc(),
                    repository: repo.to_string(),
                });
            }
            self.locked.insert(repo.to_string());
        }
        if !self.in_tx {
            let client = self.client.clone();
            let loc = self.loc();
            self.inner.block(async move {
                client
                    .batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map_err(|e| db(&loc, e))
            })?;
            self.in_tx = true;
        }
        self.touched.insert(repo.to_string());
        Ok(())
    }

    fn vector_dim(&self) -> Option<usize> {
        self.embedding.as_ref().map(|e| e.dim)
    }
}

impl Drop for PgWriter {
    /// Rolls back what was not committed and releases the repositories' locks now: closing the
    /// connection would do both, but the server notices a closed connection a little later,
    /// and the next writer (often at once, in the same process) must find the locks free.
    fn drop(&mut self) {
        if !self.in_tx && self.locked.is_empty() {
            return;
        }
        let client = self.client.clone();
        let _ = self.inner.block(async move {
            let _ = client.batch_execute("ROLLBACK").await;
            let _ = client
                .batch_execute("SELECT pg_advisory_unlock_all()")
                .await;
            Ok(())
        });
    }
}

/// The columns of `gc_units` rows, one vector per column (for `unnest`).
#[derive(Default)]
struct UnitRows {
    id: Vec<i64>,
    path: Vec<String>,
    ord: Vec<i32>,
    language: Vec<String>,
    kind: Vec<String>,
    name: Vec<String>,
    symbol: Vec<String>,
    start_line: Vec<i64>,
    end_line: Vec<i64>,
    def_line: Vec<i64>,
    start_byte: Vec<i64>,
    end_byte: Vec<i64>,
    doc: Vec<Option<String>>,
    code: Vec<String>,
    key: Vec<Vec<u8>>,
    lens: [Vec<i32>; FIELDS],
    vector: Vec<Option<Vector>>,
}

#[derive(Default)]
struct PostingRows {
    term: Vec<String>,
    field: Vec<i16>,
    id: Vec<i64>,
    tf: Vec<i32>,
    len: Vec<i32>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The analysed terms of one field: (term, frequency) and the field's length in tokens.
fn field_terms(text: &str) -> (Vec<(String, i32)>, i32) {
    let tokens = analyze(text);
    let len = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
    let mut tf: HashMap<String, i32> = HashMap::new();
    for t in tokens {
        *tf.entry(t).or_default() += 1;
    }
    let mut terms: Vec<(String, i32)> = tf.into_iter().collect();
    terms.sort();
    (terms, len)
}

async fn delete_paths(client: &Client, loc: &str, repo: &str, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    // The units' ids first (by the file index), then postings and units by id: a join on the
    // repository alone would walk every posting the transaction wrote so far for it.
    let ids: Vec<i64> = client
        .query(
            "SELECT id FROM gc_units WHERE repo = $1 AND path = ANY($2)",
            &[&repo, &paths],
        )
        .await
        .map_err(|e| db(loc, e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "DELETE FROM gc_postings WHERE repo = $1 AND id = ANY($2)",
            &[&repo, &ids],
        )
        .await
        .map_err(|e| db(loc, e))?;
    client
        .execute(
            "DELETE FROM gc_units WHERE repo = $1 AND id = ANY($2)",
            &[&repo, &ids],
        )
        .await
        .map_err(|e| db(loc, e))?;
    Ok(())
}

impl StoreWriter for PgWriter {
    fn upsert_files(&mut self, repository: &str, files: Vec<FileWrite>) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        self.prepare(repository)?;
        // The last write of a path wins, as in the embedded store.
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            last.insert(f.file.path.clone(), i);
        }
        let files: Vec<FileWrite> = files
            .into_iter()
            .enumerate()
            .filter(|(i, f)| last.get(&f.file.path) == Some(i))
            .map(|(_, f)| f)
            .collect();
        let dim = self.vector_dim();
        // Every unit of a store with vectors needs one: given, or cached under its key.
        let mut missing: Vec<Vec<u8>> = Vec::new();
        let mut fresh: HashMap<Vec<u8>, Vector> = HashMap::new();
        for f in &files {
            for u in &f.units {
                match (&u.vector, dim) {
                    (Some(v), Some(d)) => {
                        if v.len() != d {
                            return Err(StoreError::InvalidArgument {
                                message: format!(
                                    "a vector of {} has {} dimensions, the index {d}",
                                    f.file.path,
                                    v.len()
                                ),
                            });
                        }
                        fresh
                            .entry(u.key.0.to_vec())
                            .or_insert_with(|| Vector::from(v.clone()));
                    }
                    (None, Some(_)) => missing.push(u.key.0.to_vec()),
                    _ => {}
                }
            }
        }
        missing.retain(|k| !fresh.contains_key(k));
        missing.sort();
        missing.dedup();

        let count: usize = files.iter().map(|f| f.units.len()).sum();
        let client = self.client.clone();
        let loc = self.loc();
        let repo = repository.to_string();
        // The analysis runs here, on the caller's thread; the database work on the runtime.
        let mut units = UnitRows::default();
        let mut postings = PostingRows::default();
        let mut file_rows: (Vec<String>, Vec<String>, Vec<i32>, Vec<i64>) = Default::default();
        let mut unit_texts = Vec::with_capacity(count);
        for f in &files {
            file_rows.0.push(f.file.path.clone());
            file_rows.1.push(f.file.hash.clone());
            file_rows
                .2
                .push(i32::try_from(f.file.units).unwrap_or(i32::MAX));
            file_rows.3.push(i64_of(f.file.bytes));
            for (ord, u) in f.units.iter().enumerate() {
                let r = &u.record;
                let fields = [
                    field_terms(&r.name),
                    field_terms(&r.symbol),
                    field_terms(r.doc.as_deref().unwrap_or("")),
                    field_terms(&r.code),
                    field_terms(&r.path),
                ];
                unit_texts.push(fields);
                units.path.push(r.path.clone());
                units.ord.push(i32::try_from(ord).unwrap_or(i32::MAX));
                units.language.push(r.language.clone());
                units.kind.push(r.kind.clone());
                units.name.push(r.name.clone());
                units.symbol.push(r.symbol.clone());
                units.start_line.push(i64_of(r.start_line));
                units.end_line.push(i64_of(r.end_line));
                units.def_line.push(i64_of(r.def_line));
                units.start_byte.push(i64_of(r.start_byte));
                units.end_byte.push(i64_of(r.end_byte));
                units.doc.push(r.doc.clone());
                units.code.push(r.code.clone());
                units.key.push(u.key.0.to_vec());
            }
        }
        let has_vectors = dim.is_some();
        let paths = file_rows.0.clone();
        let fresh_keys: Vec<Vec<u8>> = fresh.keys().cloned().collect();
        let fresh_vectors: Vec<Vector> = fresh_keys.iter().map(|k| fresh[k].clone()).collect();
        self.inner.block(async move {
            let c = client.as_ref();
            delete_paths(c, &loc, &repo, &paths).await?;
            // Vectors: the cache first (new ones in), then every unit's own.
            let mut cached: HashMap<Vec<u8>, Vector> = HashMap::new();
            if has_vectors {
                if !missing.is_empty() {
                    for row in c
                        .query(
                            "SELECT key, embedding FROM gc_vectors WHERE key = ANY($1)",
                            &[&missing],
                        )
                        .await
                        .map_err(|e| db(&loc, e))?
                    {
                        cached.insert(row.get(0), row.get(1));
                    }
                    if let Some(k) = missing.iter().find(|k| !cached.contains_key(*k)) {
                        return Err(StoreError::InvalidArgument {
                            message: format!(
                                "a unit without a vector has a key the index does not know ({})",
                                hex(k)
                            ),
                        });
                    }
                }
                for (keys, vectors) in fresh_keys
                    .chunks(UNIT_CHUNK)
                    .zip(fresh_vectors.chunks(UNIT_CHUNK))
                {
                    let keys: &[Vec<u8>] = keys;
                    c.execute(
                        "INSERT INTO gc_vectors (key, embedding)
                         SELECT * FROM unnest($1::bytea[], $2::vector[])
                         ON CONFLICT (key) DO NOTHING",
                        &[&keys, &vectors],
                    )
                    .await
                    .map_err(|e| db(&loc, e))?;
                }
                for (k, v) in fresh_keys.into_iter().zip(fresh_vectors) {
                    cached.insert(k, v);
                }
                // Every unit takes the vector of its key: given in this batch (for it or for
                // another unit of the same text), or cached.
                for (key, path) in units.key.iter().zip(&units.path) {
                    let v =
                        cached
                            .get(key)
                            .cloned()
                            .ok_or_else(|| StoreError::InvalidArgument {
                                message: format!(
                                    "a unit of {path} has no vector and its key is not cached"
                                ),
                            })?;
                    units.vector.push(Some(v));
                }
            }
            // Row ids from the sequence (the postings name them).
            if count > 0 {
                let n = i64::try_from(count).unwrap_or(i64::MAX);
                let rows = c
                    .query(
                        "SELECT nextval('gc_unit_ids') FROM generate_series(1, $1::int8)",
                        &[&n],
                    )
                    .await
                    .map_err(|e| db(&loc, e))?;
                units.id = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
            }
            for (i, fields) in unit_texts.into_iter().enumerate() {
                for (f, (terms, len)) in fields.into_iter().enumerate() {
                    units.lens[f].push(len);
                    for (term, tf) in terms {
                        postings.term.push(term);
                        postings.field.push(f as i16);
                        postings.id.push(units.id[i]);
                        postings.tf.push(tf);
                        postings.len.push(len);
                    }
                }
            }
            insert_units(c, &loc, &repo, &units, has_vectors).await?;
            for start in (0..postings.id.len()).step_by(POSTING_CHUNK) {
                let end = (start + POSTING_CHUNK).min(postings.id.len());
                c.execute(
                    "INSERT INTO gc_postings (repo, term, field, id, tf, len)
                     SELECT $1, * FROM unnest($2::text[], $3::int2[], $4::int8[], $5::int4[],
                                              $6::int4[])",
                    &[
                        &repo,
                        &&postings.term[start..end],
                        &&postings.field[start..end],
                        &&postings.id[start..end],
                        &&postings.tf[start..end],
                        &&postings.len[start..end],
                    ],
                )
                .await
                .map_err(|e| db(&loc, e))?;
            }
            c.execute(
                "INSERT INTO gc_files (repo, path, hash, units, bytes)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int4[], $5::int8[])
                 ON CONFLICT (repo, path) DO UPDATE
                 SET hash = excluded.hash, units = excluded.units, bytes = excluded.bytes",
                &[
                    &repo,
                    &file_rows.0,
                    &file_rows.1,
                    &file_rows.2,
                    &file_rows.3,
                ],
            )
            .await
            .map_err(|e| db(&loc, e))?;
            Ok(())
        })
    }

    fn delete_files(&mut self, repository: &str, paths: &[String]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        self.prepare(repository)?;
        let client = self.client.clone();
        let loc = self.loc();
        let repo = repository.to_string();
        let paths = paths.to_vec();
        self.inner.block(async move {
            delete_paths(&client, &loc, &repo, &paths).await?;
            client
                .execute(
                    "DELETE FROM gc_files WHERE repo = $1 AND path = ANY($2)",
                    &[&repo, &paths],
                )
                .await
                .map_err(|e| db(&loc, e))?;
            Ok(())
        })
    }

    fn put_repository(&mut self, info: &RepoInfo) -> Result<()> {
        self.prepare(&info.name)?;
        let json = serde_json::to_string(info).map_err(|e| StoreError::Backend {
            message: format!("cannot encode the repository record: {e}"),
        })?;
        let client = self.client.clone();
        let loc = self.loc();
        let repo = info.name.clone();
        self.inner.block(async move {
            client
                .execute(
                    "INSERT INTO gc_repositories (repo, info) VALUES ($1, $2)
                     ON CONFLICT (repo) DO UPDATE SET info = excluded.info",
                    &[&repo, &json],
                )
                .await
                .map_err(|e| db(&loc, e))?;
            Ok(())
        })
    }

    fn delete_repository(&mut self, name: &str) -> Result<()> {
        self.prepare(name)?;
        let client = self.client.clone();
        let loc = self.loc();
        let repo = name.to_string();
        self.inner.block(async move {
            for sql in [
                "DELETE FROM gc_postings WHERE repo = $1",
                "DELETE FROM gc_units WHERE repo = $1",
                "DELETE FROM gc_files WHERE repo = $1",
                "DELETE FROM gc_field_stats WHERE repo = $1",
                "DELETE FROM gc_repositories WHERE repo = $1",
            ] {
                client
                    .execute(sql, &[&repo])
                    .await
                    .map_err(|e| db(&loc, e))?;
            }
            Ok(())
        })
    }

    fn known_keys(&self, keys: &[UnitKey]) -> Result<Vec<bool>> {
        if self.embedding.is_none() || keys.is_empty() {
            return Ok(vec![false; keys.len()]);
        }
        let client = self.client.clone();
        let loc = self.loc();
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
        let ask = wanted.clone();
        let found: HashSet<Vec<u8>> = self.inner.block(async move {
            let mut found = HashSet::new();
            for chunk in ask.chunks(10_000) {
                for row in client
                    .query("SELECT key FROM gc_vectors WHERE key = ANY($1)", &[&chunk])
                    .await
                    .map_err(|e| db(&loc, e))?
                {
                    found.insert(row.get::<_, Vec<u8>>(0));
                }
            }
            Ok(found)
        })?;
        Ok(wanted.iter().map(|k| found.contains(k)).collect())
    }

    fn commit(&mut self, cancel: &CancellationToken) -> Result<()> {
        if !self.in_tx {
            return Ok(());
        }
        cancel.check()?;
        let client = self.client.clone();
        let loc = self.loc();
        let touched: Vec<String> = std::mem::take(&mut self.touched).into_iter().collect();
        self.inner.block(async move {
            client
                .execute(
                    "DELETE FROM gc_field_stats WHERE repo = ANY($1)",
                    &[&touched],
                )
                .await
                .map_err(|e| db(&loc, e))?;
            client
                .execute(
                    "INSERT INTO gc_field_stats
                     SELECT repo, count(*), coalesce(sum(len_name), 0), coalesce(sum(len_symbol), 0),
                            coalesce(sum(len_doc), 0), coalesce(sum(len_code), 0),
                            coalesce(sum(len_path), 0)
                     FROM gc_units WHERE repo = ANY($1) GROUP BY repo",
                    &[&touched],
                )
                .await
                .map_err(|e| db(&loc, e))?;
            client
                .batch_execute("UPDATE gc_meta SET generation = generation + 1 WHERE id = 1; COMMIT")
                .await
                .map_err(|e| db(&loc, e))
        })?;
        self.in_tx = false;
        self.inner.forget_reader();
        Ok(())
    }

    fn maintain(&mut self, cancel: &CancellationToken) -> Result<()> {
        if self.in_tx {
            return Ok(());
        }
        cancel.check()?;
        let vectors = self.embedding.is_some();
        // A snapshot this process holds would keep VACUUM from marking the new rows visible.
        self.inner.forget_reader();
        let client = self.client.clone();
        let loc = self.loc();
        self.inner.block(async move {
            // Fresh statistics for the planner, and the visibility map that lets the lexical
            // leg read postings from the index alone (VACUUM runs outside a transaction).
            client
                .batch_execute("VACUUM (ANALYZE) gc_postings, gc_units, gc_field_stats")
                .await
                .map_err(|e| db(&loc, e))?;
            let exists = schema::hnsw_exists(&client, &loc).await?;
            if exists || !vectors {
                return Ok(());
            }
            // The graph is built in memory when it fits (a million 384-d vectors need ~2 GB).
            client
                .batch_execute("SET maintenance_work_mem = '1GB'")
                .await
                .map_err(|e| db(&loc, e))?;
            client
                .batch_execute(&schema::create_hnsw())
                .await
                .map_err(|e| db(&loc, e))
        })
    }
}

async fn insert_units(
    c: &Client,
    loc: &str,
    repo: &str,
    u: &UnitRows,
    has_vectors: bool,
) -> Result<()> {
    let n = u.id.len();
    for start in (0..n).step_by(UNIT_CHUNK) {
        let end = (start + UNIT_CHUNK).min(n);
        let r = start..end;
        let sql = format!(
            "INSERT INTO gc_units (repo, id, path, ord, language, kind, name, symbol, start_line,
                 end_line, def_line, start_byte, end_byte, doc, code, key, len_name, len_symbol,
                 len_doc, len_code, len_path{})
             SELECT $1, * FROM unnest($2::int8[], $3::text[], $4::int4[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[],
                 $13::int8[], $14::text[], $15::text[], $16::bytea[], $17::int4[], $18::int4[],
                 $19::int4[], $20::int4[], $21::int4[]{})",
            if has_vectors { ", embedding" } else { "" },
            if has_vectors { ", $22::vector[]" } else { "" },
        );
        let id = &u.id[r.clone()];
        let path = &u.path[r.clone()];
        let ord = &u.ord[r.clone()];
        let language = &u.language[r.clone()];
        let kind = &u.kind[r.clone()];
        let name = &u.name[r.clone()];
        let symbol = &u.symbol[r.clone()];
        let start_line = &u.start_line[r.clone()];
        let end_line = &u.end_line[r.clone()];
        let def_line = &u.def_line[r.clone()];
        let start_byte = &u.start_byte[r.clone()];
        let end_byte = &u.end_byte[r.clone()];
        let doc = &u.doc[r.clone()];
        let code = &u.code[r.clone()];
        let key = &u.key[r.clone()];
        let l0 = &u.lens[0][r.clone()];
        let l1 = &u.lens[1][r.clone()];
        let l2 = &u.lens[2][r.clone()];
        let l3 = &u.lens[3][r.clone()];
        let l4 = &u.lens[4][r.clone()];
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![
            &repo,
            &id,
            &path,
            &ord,
            &language,
            &kind,
            &name,
            &symbol,
            &start_line,
            &end_line,
            &def_line,
            &start_byte,
            &end_byte,
            &doc,
            &code,
            &key,
            &l0,
            &l1,
            &l2,
            &l3,
            &l4,
        ];
        let vectors;
        if has_vectors {
            vectors = &u.vector[r.clone()];
            params.push(&vectors);
        }
        c.execute(sql.as_str(), &params)
            .await
            .map_err(|e| db(loc, e))?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
