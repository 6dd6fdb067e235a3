//! The reader: one `REPEATABLE READ` snapshot on a pooled connection; BM25 in SQL; the vector
//! leg through pgvector.

use std::collections::HashMap;
use std::sync::Arc;

use gnn_coder_index::tokenizer::query_terms;
use gnn_coder_store::{
    EmbeddingInfo, FileEntry, Filters, LexicalQuery, RepoInfo, Result, StoreError, StoreReader,
    StoreStats, StoredUnit, UnitId, UnitRecord, VectorQuery,
};
use pgvector::Vector;
use tokio_postgres::types::ToSql;

use crate::{Inner, db, schema};

/// tantivy's BM25 constants, so both stores rank alike.
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// A snapshot of one commit of a [`crate::PgStore`].
pub struct PgReader {
    inner: Arc<Inner>,
    embedding: Option<EmbeddingInfo>,
    client: Arc<deadpool_postgres::Object>,
    generation: i64,
    has_ann: bool,
}

type Params = Vec<Arc<dyn ToSql + Sync + Send>>;

/// SQL conditions for the filters that are columns, with their parameters appended to
/// `params`; `unit` is the alias of the table with the unit's columns.
fn conditions(filters: &Filters, params: &mut Params, unit: &str, repo: &str, id: &str) -> String {
    let mut sql = String::new();
    let mut add = |sql: &mut String, cond: String, p: Arc<dyn ToSql + Sync + Send>| {
        params.push(p);
        sql.push_str(&format!(
            " AND {}",
            cond.replace('?', &format!("${}", params.len()))
        ));
    };
    if !filters.repositories.is_empty() {
        add(
            &mut sql,
            format!("{repo} = ANY(?::text[])"),
            Arc::new(filters.repositories.clone()),
        );
    }
    if !filters.languages.is_empty() {
        add(
            &mut sql,
            format!("{unit}.language = ANY(?::text[])"),
            Arc::new(filters.languages.clone()),
        );
    }
    if !filters.kinds.is_empty() {
        add(
            &mut sql,
            format!("{unit}.kind = ANY(?::text[])"),
            Arc::new(filters.kinds.clone()),
        );
    }
    if !filters.exclude_units.is_empty() {
        let ids: Vec<i64> = filters.exclude_units.iter().map(|u| u.0 as i64).collect();
        add(&mut sql, format!("{id} <> ALL(?::int8[])"), Arc::new(ids));
    }
    sql
}

fn refs(params: &Params) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

const UNIT_COLUMNS: &str = "repo, id, path, language, kind, name, symbol, start_line, end_line, \
                            def_line, start_byte, end_byte, doc, code";

fn unit_of(row: &tokio_postgres::Row) -> StoredUnit {
    let u = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
    StoredUnit {
        id: UnitId(row.get::<_, i64>(1) as u64),
        repository: row.get(0),
        record: UnitRecord {
            path: row.get(2),
            language: row.get(3),
            kind: row.get(4),
            name: row.get(5),
            symbol: row.get(6),
            start_line: u(7),
            end_line: u(8),
            def_line: u(9),
            start_byte: u(10),
            end_byte: u(11),
            doc: row.get(12),
            code: row.get(13),
        },
    }
}

impl PgReader {
    pub(crate) fn open(inner: Arc<Inner>, embedding: Option<EmbeddingInfo>) -> Result<PgReader> {
        let pool = inner.pool.clone();
        let loc = inner.location.clone();
        let (client, generation, has_ann) = inner.block(async move {
            let client = Inner::pooled(&pool, &loc).await?;
            client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| db(&loc, e))?;
            let generation: i64 = client
                .query_one("SELECT generation FROM gc_meta WHERE id = 1", &[])
                .await
                .map_err(|e| db(&loc, e))?
                .get(0);
            let has_ann = schema::hnsw_exists(&client, &loc).await?;
            Ok((client, generation, has_ann))
        })?;
        Ok(PgReader {
            inner,
            embedding,
            client: Arc::new(client),
            generation,
            has_ann,
        })
    }

    /// The commit generation this snapshot sees.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Runs one query in the snapshot (a cached prepared statement) and returns its rows.
    fn rows(&self, sql: String, params: Params) -> Result<Vec<tokio_postgres::Row>> {
        let client = self.client.clone();
        let loc = self.inner.location.clone();
        self.inner.block(async move {
            let stmt = client.prepare_cached(&sql).await.map_err(|e| db(&loc, e))?;
            client
                .query(&stmt, &refs(&params))
                .await
                .map_err(|e| db(&loc, e))
        })
    }

    fn vectors_or_fail(&self, dim: usize) -> Result<()> {
        let Some(e) = &self.embedding else {
            return Err(StoreError::NoVectors {
                path: self.inner.location.clone().into(),
            });
        };
        if e.dim != dim {
            return Err(StoreError::DimensionMismatch {
                path: self.inner.location.clone().into(),
                index: e.dim,
                query: dim,
            });
        }
        Ok(())
    }

    /// Ranked `(id, path, score)` rows from `query(limit)`, path globs applied on the rows,
    /// fetching deeper until `want` pass or the rows run out.
    fn ranked_with_globs(
        &self,
        filters: &Filters,
        want: usize,
        query: impl Fn(i64) -> Result<Vec<tokio_postgres::Row>>,
    ) -> Result<Vec<(UnitId, f32)>> {
        let globs = filters.path_globs.set();
        let mut limit = if globs.is_some() {
            want.saturating_mul(20).max(200)
        } else {
            want
        };
        loop {
            let rows = query(i64::try_from(limit).unwrap_or(i64::MAX))?;
            let exhausted = rows.len() < limit;
            let mut hits = Vec::with_capacity(want);
            for row in &rows {
                let path: &str = row.get(1);
                if globs.is_some_and(|g| !g.is_match(path)) {
                    continue;
                }
                hits.push((UnitId(row.get::<_, i64>(0) as u64), row.get::<_, f32>(2)));
                if hits.len() == want {
                    break;
                }
            }
            if hits.len() == want || exhausted {
                return Ok(hits);
            }
            limit = limit.saturating_mul(4);
        }
    }
}

impl StoreReader for PgReader {
    fn repositories(&self) -> Result<Vec<RepoInfo>> {
        let rows = self.rows(
            "SELECT r.repo, r.info, coalesce(f.files, 0), coalesce(u.units, 0),
                    coalesce(f.bytes, 0)
             FROM gc_repositories r
             LEFT JOIN (SELECT repo, count(*)::int8 AS files, sum(bytes)::int8 AS bytes
                        FROM gc_files GROUP BY repo) f ON f.repo = r.repo
             LEFT JOIN (SELECT repo, count(*)::int8 AS units FROM gc_units GROUP BY repo) u
                        ON u.repo = r.repo
             ORDER BY r.repo"
                .to_string(),
            Vec::new(),
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            let json: String = row.get(1);
            let mut info: RepoInfo =
                serde_json::from_str(&json).map_err(|e| StoreError::Damaged {
                    path: self.inner.location.clone().into(),
                    reason: format!("the record of repository {name:?} does not parse: {e}"),
                })?;
            info.name = name;
            info.files = u64::try_from(row.get::<_, i64>(2)).unwrap_or(0);
            info.units = u64::try_from(row.get::<_, i64>(3)).unwrap_or(0);
            info.bytes = u64::try_from(row.get::<_, i64>(4)).unwrap_or(0);
            out.push(info);
        }
        Ok(out)
    }

    fn files(&self, repository: &str) -> Result<Vec<FileEntry>> {
        let rows = self.rows(
            "SELECT path, hash, units, bytes FROM gc_files WHERE repo = $1 ORDER BY path"
                .to_string(),
            vec![Arc::new(repository.to_string())],
        )?;
        Ok(rows.iter().map(file_of).collect())
    }

    fn file(&self, repository: &str, path: &str) -> Result<Option<FileEntry>> {
        let rows = self.rows(
            "SELECT path, hash, units, bytes FROM gc_files WHERE repo = $1 AND path = $2"
                .to_string(),
            vec![Arc::new(repository.to_string()), Arc::new(path.to_string())],
        )?;
        Ok(rows.first().map(file_of))
    }

    fn lexical(&self, q: &LexicalQuery) -> Result<Vec<(UnitId, f32)>> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let terms = query_terms(&q.text);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let b = &q.boosts;
        let boosts = [b.name, b.symbol, b.doc, b.code, b.path];
        // The statistics of this snapshot: units, tokens per field, each term's frequency.
        let stats = self.rows(
            "SELECT coalesce(sum(docs), 0)::float8, coalesce(sum(tokens_name), 0)::float8,
                    coalesce(sum(tokens_symbol), 0)::float8, coalesce(sum(tokens_doc), 0)::float8,
                    coalesce(sum(tokens_code), 0)::float8, coalesce(sum(tokens_path), 0)::float8
             FROM gc_field_stats"
                .to_string(),
            Vec::new(),
        )?;
        let Some(stats) = stats.first() else {
            return Ok(Vec::new());
        };
        let n: f64 = stats.get(0);
        if n <= 0.0 {
            return Ok(Vec::new());
        }
        let df_rows = self.rows(
            "SELECT term, field, count(*)::float8 FROM gc_postings WHERE term = ANY($1)
             GROUP BY term, field"
                .to_string(),
            vec![Arc::new(terms.clone())],
        )?;
        let mut df: HashMap<(String, i16), f64> = HashMap::new();
        for row in &df_rows {
            df.insert((row.get(0), row.get(1)), row.get(2));
        }
        let (mut w_term, mut w_field, mut w_weight, mut w_avg) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for t in &terms {
            for (f, boost) in boosts.iter().enumerate() {
                let boost = f64::from(*boost);
                let Some(&d) = df.get(&(t.clone(), f as i16)) else {
                    continue;
                };
                let tokens: f64 = stats.get(f + 1);
                if boost <= 0.0 || tokens <= 0.0 {
                    continue;
                }
                let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                w_term.push(t.clone());
                w_field.push(f as i16);
                w_weight.push(boost * idf * (K1 + 1.0));
                w_avg.push(tokens / n);
            }
        }
        if w_term.is_empty() {
            return Ok(Vec::new());
        }
        let need_unit = !q.filters.languages.is_empty()
            || !q.filters.kinds.is_empty()
            || !q.filters.path_globs.is_empty();
        let mut params: Params = vec![
            Arc::new(w_term),
            Arc::new(w_field),
            Arc::new(w_weight),
            Arc::new(w_avg),
        ];
        let cond = conditions(&q.filters, &mut params, "u", "p.repo", "p.id");
        let (join, path) = if need_unit {
            (
                "JOIN gc_units u ON u.repo = p.repo AND u.id = p.id",
                "u.path",
            )
        } else {
            ("", "''::text")
        };
        let limit_param = params.len() + 1;
        let sql = format!(
            "SELECT p.id, {path} AS path,
                    sum(w.weight * p.tf / (p.tf + {K1} * (1 - {B} + {B} * p.len / w.avg)))::float4
                      AS score
             FROM unnest($1::text[], $2::int2[], $3::float8[], $4::float8[])
                  AS w(term, field, weight, avg)
             JOIN gc_postings p ON p.term = w.term AND p.field = w.field
             {join}
             WHERE true {cond}
             GROUP BY p.repo, p.id{group}
             ORDER BY score DESC, p.id
             LIMIT ${limit_param}",
            group = if need_unit { ", u.path" } else { "" },
        );
        self.ranked_with_globs(&q.filters, q.limit, |limit| {
            let mut p = params.clone();
            p.push(Arc::new(limit));
            self.rows(sql.clone(), p)
        })
    }

    fn vector(&self, q: &VectorQuery) -> Result<Vec<(UnitId, f32)>> {
        self.vectors_or_fail(q.vector.len())?;
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut params: Params = vec![Arc::new(Vector::from(q.vector.clone()))];
        let cond = conditions(&q.filters, &mut params, "gc_units", "repo", "id");
        let limit_param = params.len() + 1;
        let sql = if q.exact || !self.has_ann {
            format!(
                "SELECT id, path, (-(embedding <#> $1))::float4 AS score FROM gc_units
                 WHERE embedding IS NOT NULL {cond}
                 ORDER BY score DESC, id LIMIT ${limit_param}"
            )
        } else {
            // Through the HNSW index (iterative scans keep filling the top-k under filters,
            // in relaxed order: the outer query puts it back in order).
            format!(
                "SELECT id, path, score FROM (
                     SELECT id, path, (-(embedding <#> $1))::float4 AS score FROM gc_units
                     WHERE embedding IS NOT NULL {cond}
                     ORDER BY embedding <#> $1 LIMIT ${limit_param}) t
                 ORDER BY score DESC, id"
            )
        };
        self.ranked_with_globs(&q.filters, q.limit, |limit| {
            let mut p = params.clone();
            p.push(Arc::new(limit));
            self.rows(sql.clone(), p)
        })
    }

    fn units(&self, ids: &[UnitId]) -> Result<Vec<StoredUnit>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let want: Vec<i64> = ids.iter().map(|i| i.0 as i64).collect();
        let rows = self.rows(
            format!("SELECT {UNIT_COLUMNS} FROM gc_units WHERE id = ANY($1)"),
            vec![Arc::new(want)],
        )?;
        let by_id: HashMap<u64, StoredUnit> = rows
            .iter()
            .map(|r| {
                let u = unit_of(r);
                (u.id.0, u)
            })
            .collect();
        Ok(ids
            .iter()
            .filter_map(|i| by_id.get(&i.0).cloned())
            .collect())
    }

    fn units_of_file(&self, repository: &str, path: &str) -> Result<Vec<StoredUnit>> {
        let rows = self.rows(
            format!(
                "SELECT {UNIT_COLUMNS} FROM gc_units WHERE repo = $1 AND path = $2 ORDER BY start_byte, ord"
            ),
            vec![Arc::new(repository.to_string()), Arc::new(path.to_string())],
        )?;
        Ok(rows.iter().map(unit_of).collect())
    }

    fn unit_vector(&self, id: UnitId) -> Result<Option<Vec<f32>>> {
        if self.embedding.is_none() {
            return Ok(None);
        }
        let rows = self.rows(
            "SELECT embedding FROM gc_units WHERE id = $1 AND embedding IS NOT NULL".to_string(),
            vec![Arc::new(id.0 as i64)],
        )?;
        Ok(rows.first().map(|r| r.get::<_, Vector>(0).to_vec()))
    }

    fn vector_scores(&self, ids: &[UnitId], query: &[f32]) -> Result<Vec<Option<f32>>> {
        self.vectors_or_fail(query.len())?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let want: Vec<i64> = ids.iter().map(|i| i.0 as i64).collect();
        let rows = self.rows(
            "SELECT id, (-(embedding <#> $2))::float4 FROM gc_units
             WHERE id = ANY($1) AND embedding IS NOT NULL"
                .to_string(),
            vec![Arc::new(want), Arc::new(Vector::from(query.to_vec()))],
        )?;
        let by_id: HashMap<i64, f32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(ids
            .iter()
            .map(|i| by_id.get(&(i.0 as i64)).copied())
            .collect())
    }

    fn stats(&self) -> Result<StoreStats> {
        let count = |sql: &str| -> Result<u64> {
            let rows = self.rows(sql.to_string(), Vec::new())?;
            Ok(rows
                .first()
                .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
        };
        let units = count("SELECT count(*) FROM gc_units")?;
        let with_vectors = self.embedding.is_some();
        let tables: Vec<String> = schema::TABLES.iter().map(|t| t.to_string()).collect();
        let bytes = self.rows(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8 FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relname = ANY($1) AND c.relkind = 'r' AND n.nspname = current_schema()"
                .to_string(),
            vec![Arc::new(tables)],
        )?;
        Ok(StoreStats {
            repositories: count("SELECT count(*) FROM gc_repositories")?,
            files: count("SELECT count(*) FROM gc_files")?,
            units,
            vectors: if with_vectors {
                count("SELECT count(*) FROM gc_vectors")?
            } else {
                0
            },
            ann_vectors: if with_vectors && self.has_ann {
                count("SELECT count(*) FROM gc_units WHERE embedding IS NOT NULL")?
            } else {
                0
            },
            bytes_on_disk: bytes
                .first()
                .map_or(0, |r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)),
        })
    }
}

fn file_of(row: &tokio_postgres::Row) -> FileEntry {
    FileEntry {
        path: row.get(0),
        hash: row.get(1),
        units: u32::try_from(row.get::<_, i32>(2)).unwrap_or(0),
        bytes: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
    }
}
