//! Building and searching the tantivy index of code units.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use globset::{Glob, GlobMatcher};
use gnn_coder_syntax::{CodeUnit, UnitKind};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};

use crate::manifest::{self, BuildStats, Manifest};
use crate::tokenizer::{CODE_TOKENIZER, analyze, code_analyzer};
use crate::vectors::{self, EmbeddingInfo, UnitTable, Vectors};
use crate::{IndexError, Result};

fn poisoned() -> IndexError {
    IndexError::Io {
        path: PathBuf::new(),
        source: std::io::Error::other("an indexing thread panicked"),
    }
}

const LEXICAL_DIR: &str = "lexical";
const LOCK_FILE: &str = ".build.lock";
/// Memory given to tantivy's writer, split across its threads.
const WRITER_MEMORY: usize = 256 * 1024 * 1024;

/// Fields of the tantivy schema.
#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    path: Field,
    path_text: Field,
    language: Field,
    kind: Field,
    name: Field,
    symbol: Field,
    doc: Field,
    code: Field,
    start_line: Field,
    end_line: Field,
    def_line: Field,
    start_byte: Field,
    end_byte: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let text = |stored: bool| {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(CODE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs);
            let opts = TextOptions::default().set_indexing_options(indexing);
            if stored { opts.set_stored() } else { opts }
        };
        let fields = Fields {
            id: b.add_u64_field("id", INDEXED | STORED | FAST),
            path: b.add_text_field("path", STRING | STORED),
            path_text: b.add_text_field("path_text", text(false)),
            language: b.add_text_field("language", STRING | STORED),
            kind: b.add_text_field("kind", STRING | STORED),
            name: b.add_text_field("name", text(true)),
            symbol: b.add_text_field("symbol", text(true)),
            doc: b.add_text_field("doc", text(true)),
            code: b.add_text_field("code", text(true)),
            start_line: b.add_u64_field("start_line", STORED),
            end_line: b.add_u64_field("end_line", STORED),
            def_line: b.add_u64_field("def_line", STORED),
            start_byte: b.add_u64_field("start_byte", STORED),
            end_byte: b.add_u64_field("end_byte", STORED),
        };
        (b.build(), fields)
    }

    fn from_index(index: &Index) -> Result<Fields> {
        let schema = index.schema();
        let get = |name: &str| {
            schema.get_field(name).map_err(|_| IndexError::BadManifest {
                path: PathBuf::from(LEXICAL_DIR),
                reason: format!("the lexical index lacks the field {name:?}"),
            })
        };
        Ok(Fields {
            id: get("id")?,
            path: get("path")?,
            path_text: get("path_text")?,
            language: get("language")?,
            kind: get("kind")?,
            name: get("name")?,
            symbol: get("symbol")?,
            doc: get("doc")?,
            code: get("code")?,
            start_line: get("start_line")?,
            end_line: get("end_line")?,
            def_line: get("def_line")?,
            start_byte: get("start_byte")?,
            end_byte: get("end_byte")?,
        })
    }
}

/// Writes a new index generation. Create with [`IndexBuilder::create`], feed units with
/// [`IndexBuilder::add`] (from any number of threads), then [`IndexBuilder::finish`]. Dropping
/// the builder without finishing leaves the previous index live and untouched.
pub struct IndexBuilder {
    dir: PathBuf,
    generation: String,
    generation_dir: PathBuf,
    writer: IndexWriter,
    fields: Fields,
    /// Per-unit metadata; its length is the next id.
    table: Mutex<UnitTable>,
    embedding: Option<EmbeddingInfo>,
    _lock: fs::File,
}

impl IndexBuilder {
    /// Starts a build into `dir` (created if missing). `threads` is the number of indexing
    /// threads tantivy may use (at least 1).
    pub fn create(dir: &Path, threads: usize) -> Result<IndexBuilder> {
        fs::create_dir_all(dir).map_err(IndexError::io(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        // Refuse to build into a foreign directory before creating anything in it.
        let lock_existed = lock_path.exists();
        if !lock_existed {
            let has_manifest = dir.join(crate::MANIFEST_FILE).exists();
            let empty = fs::read_dir(dir)
                .map_err(IndexError::io(dir))?
                .next()
                .is_none();
            if !has_manifest && !empty {
                return Err(IndexError::NotAnIndex {
                    path: dir.to_path_buf(),
                });
            }
        }
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(IndexError::io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(IndexError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::other(
                        "another gnn-coder process is building this index",
                    ),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(IndexError::io(&lock_path)(e)),
        }
        let (generation, generation_dir) = manifest::new_generation(dir)?;
        let lexical = generation_dir.join(LEXICAL_DIR);
        fs::create_dir_all(&lexical).map_err(IndexError::io(&lexical))?;
        let (schema, fields) = Fields::schema();
        let index = Index::create_in_dir(&lexical, schema)?;
        index.tokenizers().register(CODE_TOKENIZER, code_analyzer());
        let threads = threads.clamp(1, 8);
        let writer =
            index.writer_with_num_threads(threads, WRITER_MEMORY.max((threads * 20) << 20))?;
        Ok(IndexBuilder {
            dir: dir.to_path_buf(),
            generation,
            generation_dir,
            writer,
            fields,
            table: Mutex::new(UnitTable::default()),
            embedding: None,
            _lock: lock,
        })
    }

    /// Adds one unit and returns its id (dense, from 0, in the order of the calls).
    pub fn add(&self, unit: &CodeUnit) -> Result<u64> {
        let f = &self.fields;
        let id = self.table.lock().map_err(|_| poisoned())?.push(
            &unit.language,
            unit.kind.as_str(),
            &unit.path,
        );
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.id, id);
        doc.add_text(f.path, &unit.path);
        doc.add_text(f.path_text, &unit.path);
        doc.add_text(f.language, &unit.language);
        doc.add_text(f.kind, unit.kind.as_str());
        doc.add_text(f.name, &unit.name);
        doc.add_text(f.symbol, &unit.symbol);
        if let Some(d) = &unit.doc {
            doc.add_text(f.doc, d);
        }
        doc.add_text(f.code, &unit.code);
        doc.add_u64(f.start_line, unit.start_line as u64);
        doc.add_u64(f.end_line, unit.end_line as u64);
        doc.add_u64(f.def_line, unit.def_line as u64);
        doc.add_u64(f.start_byte, unit.start_byte as u64);
        doc.add_u64(f.end_byte, unit.end_byte as u64);
        self.writer.add_document(doc)?;
        Ok(id)
    }

    /// Number of units added so far.
    pub fn len(&self) -> u64 {
        self.table.lock().map_or(0, |t| t.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores one vector per unit (`rows[id]`), all of `info.dim` dimensions, for semantic
    /// search. Call after the last [`IndexBuilder::add`] and before [`IndexBuilder::finish`].
    pub fn set_vectors(&mut self, info: EmbeddingInfo, rows: &[Vec<f32>]) -> Result<()> {
        let units = self.len() as usize;
        if rows.len() != units {
            return Err(IndexError::Io {
                path: self.generation_dir.clone(),
                source: std::io::Error::other(format!("{} vectors for {units} units", rows.len())),
            });
        }
        vectors::write_vectors(&self.generation_dir, info.dim, rows)?;
        self.embedding = Some(info);
        Ok(())
    }

    /// Commits the generation, makes it live, and removes the previous one.
    pub fn finish(mut self, root: &Path, mut stats: BuildStats) -> Result<Manifest> {
        self.writer.commit()?;
        self.writer.wait_merging_threads()?;
        let table = self.table.into_inner().map_err(|_| poisoned())?;
        table.store(&self.generation_dir)?;
        stats.units = table.len() as u64;
        let root = root
            .canonicalize()
            .unwrap_or_else(|_| root.to_path_buf())
            .to_string_lossy()
            .into_owned();
        let mut manifest = Manifest::new(self.generation.clone(), root, stats);
        manifest.embedding = self.embedding.take();
        manifest.store(&self.dir)?;
        manifest::remove_stale_generations(&self.dir, &self.generation);
        Ok(manifest)
    }

    /// Where this build writes (for messages).
    pub fn generation_dir(&self) -> &Path {
        &self.generation_dir
    }
}

/// Which kinds of units a search returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KindFilter {
    /// Functions and methods (the default: code search answers with callables).
    #[default]
    Callables,
    /// Every kind of unit.
    All,
    /// Exactly these kinds.
    Only(Vec<UnitKind>),
}

/// Per-field BM25 weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldBoosts {
    pub name: f32,
    pub symbol: f32,
    pub doc: f32,
    pub code: f32,
    pub path: f32,
}

impl Default for FieldBoosts {
    fn default() -> Self {
        // Chosen on the dev benchmark (docs/benchmarks in README.md): the name and the qualified
        // symbol matter as much as the whole body; the path adds a little. Bigger name boosts hurt.
        FieldBoosts {
            name: 1.0,
            symbol: 1.0,
            doc: 1.5,
            code: 1.0,
            path: 0.6,
        }
    }
}

/// A search: the query text, how many hits, and filters.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub text: String,
    pub top_k: usize,
    /// Language names (as the syntax crate registers them); empty = all.
    pub languages: Vec<String>,
    /// Glob over the root-relative path (`src/**/*.rs`), if any.
    pub path_glob: Option<String>,
    pub kinds: KindFilter,
    pub boosts: FieldBoosts,
}

impl SearchRequest {
    pub fn new(text: impl Into<String>, top_k: usize) -> SearchRequest {
        SearchRequest {
            text: text.into(),
            top_k,
            languages: Vec::new(),
            path_glob: None,
            kinds: KindFilter::default(),
            boosts: FieldBoosts::default(),
        }
    }
}

/// One search result: a unit and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: u64,
    pub score: f32,
    pub path: String,
    pub language: String,
    pub kind: String,
    pub name: String,
    pub symbol: String,
    pub start_line: u64,
    pub end_line: u64,
    pub def_line: u64,
    pub start_byte: u64,
    pub end_byte: u64,
    pub doc: Option<String>,
    pub code: String,
}

/// An opened index, ready to search. Cheap to share between threads.
pub struct SearchIndex {
    dir: PathBuf,
    manifest: Manifest,
    reader: IndexReader,
    fields: Fields,
    /// Unit table and vectors, loaded on the first semantic search.
    semantic: OnceLock<std::result::Result<Semantic, String>>,
}

struct Semantic {
    table: UnitTable,
    vectors: Vectors,
}

/// How many candidates each side contributes to hybrid fusion.
const FUSION_CANDIDATES: usize = 100;

impl KindFilter {
    /// The kind names this filter admits; empty = all.
    fn names(&self) -> Vec<String> {
        match self {
            KindFilter::All => Vec::new(),
            KindFilter::Callables => vec!["function".into(), "method".into()],
            KindFilter::Only(kinds) => kinds.iter().map(|k| k.as_str().to_string()).collect(),
        }
    }
}

impl SearchIndex {
    /// Opens the live generation of the index at `dir`.
    pub fn open(dir: &Path) -> Result<SearchIndex> {
        let manifest = Manifest::load(dir)?;
        let lexical = manifest.generation_dir(dir).join(LEXICAL_DIR);
        if !lexical.is_dir() {
            return Err(IndexError::BadManifest {
                path: dir.join(crate::MANIFEST_FILE),
                reason: format!("its generation {} is missing", manifest.generation),
            });
        }
        let index = Index::open_in_dir(&lexical)?;
        index.tokenizers().register(CODE_TOKENIZER, code_analyzer());
        let fields = Fields::from_index(&index)?;
        let reader = index.reader()?;
        Ok(SearchIndex {
            dir: dir.to_path_buf(),
            manifest,
            reader,
            fields,
            semantic: OnceLock::new(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of units in the index.
    pub fn num_units(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// BM25 search. An empty or all-punctuation query returns no hits.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>> {
        let glob = match &req.path_glob {
            Some(g) => Some(compile_glob(g)?),
            None => None,
        };
        if req.top_k == 0 {
            return Ok(Vec::new());
        }
        let Some(query) = self.build_query(req) else {
            return Ok(Vec::new());
        };
        let searcher = self.reader.searcher();
        // There are never more hits than units; tantivy sizes its buffers by the limit, so a huge
        // `top_k` must not reach it.
        let num_docs = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
        let top_k = req.top_k.min(num_docs);
        if top_k == 0 {
            return Ok(Vec::new());
        }
        // A path glob filters ranked hits, so fetch more until enough pass (or none are left).
        let mut limit = if glob.is_some() {
            top_k.saturating_mul(20).max(200)
        } else {
            top_k
        }
        .min(num_docs);
        loop {
            let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
            let exhausted = top.len() < limit || limit >= num_docs;
            let mut hits = Vec::with_capacity(top_k);
            for (score, addr) in top {
                let doc: TantivyDocument = searcher.doc(addr)?;
                let hit = self.hit_from_doc(&doc, score);
                if glob.as_ref().is_none_or(|g| g.is_match(&hit.path)) {
                    hits.push(hit);
                    if hits.len() == top_k {
                        break;
                    }
                }
            }
            if hits.len() == top_k || exhausted {
                return Ok(hits);
            }
            limit = limit.saturating_mul(4).min(num_docs);
        }
    }

    /// The model whose vectors this index holds, if any.
    pub fn embedding(&self) -> Option<&EmbeddingInfo> {
        self.manifest.embedding.as_ref()
    }

    fn semantic(&self) -> Result<&Semantic> {
        let info = self.embedding().ok_or_else(|| IndexError::NoVectors {
            path: self.dir.clone(),
        })?;
        let gen_dir = self.manifest.generation_dir(&self.dir);
        let loaded = self.semantic.get_or_init(|| {
            let table = UnitTable::load(&gen_dir).map_err(|e| e.to_string())?;
            let vectors =
                Vectors::load(&gen_dir, info.dim, table.len()).map_err(|e| e.to_string())?;
            Ok(Semantic { table, vectors })
        });
        loaded.as_ref().map_err(|reason| IndexError::BadManifest {
            path: gen_dir,
            reason: reason.clone(),
        })
    }

    /// Ranks units by the dot product of their vector with `query` (an L2-normalized vector
    /// from the same model as the index's). Filters apply as in [`SearchIndex::search`].
    pub fn search_semantic(&self, req: &SearchRequest, query: &[f32]) -> Result<Vec<Hit>> {
        let dense = self.dense_candidates(req, query, req.top_k)?;
        self.hits_for(dense.into_iter().map(|(id, s)| (id as u64, s)))
    }

    /// Fuses lexical and semantic ranking: each side's top candidates are pooled, their scores
    /// min-max scaled per query (a unit missing from the lexical list scores 0 there), and
    /// ranked by `dense_weight * dense + (1 - dense_weight) * lexical`.
    pub fn search_hybrid(
        &self,
        req: &SearchRequest,
        query: &[f32],
        dense_weight: f32,
    ) -> Result<Vec<Hit>> {
        if req.top_k == 0 {
            return Ok(Vec::new());
        }
        let pool = req.top_k.max(FUSION_CANDIDATES);
        let semantic = self.semantic()?;
        check_dim(semantic, query, &self.dir)?;
        let dense_all = semantic.vectors.scores(query);
        let lexical = self.search(&SearchRequest {
            top_k: pool,
            ..req.clone()
        })?;
        let dense = self.dense_candidates_from(semantic, &dense_all, req, pool)?;
        let mut ids: Vec<usize> = dense.iter().map(|&(id, _)| id).collect();
        let lex: std::collections::HashMap<usize, f32> =
            lexical.iter().map(|h| (h.id as usize, h.score)).collect();
        ids.extend(lex.keys().filter(|id| !dense.iter().any(|(d, _)| d == *id)));
        let (dmin, dmax) = min_max(ids.iter().filter_map(|&id| dense_all.get(id).copied()));
        let (lmin, lmax) = min_max(lex.values().copied());
        let scale = |x: f32, lo: f32, hi: f32| if hi > lo { (x - lo) / (hi - lo) } else { 1.0 };
        let w = dense_weight.clamp(0.0, 1.0);
        let mut fused: Vec<(usize, f32)> = ids
            .into_iter()
            .map(|id| {
                let d = dense_all.get(id).map_or(0.0, |&x| scale(x, dmin, dmax));
                let l = lex.get(&id).map_or(0.0, |&x| scale(x, lmin, lmax));
                (id, w * d + (1.0 - w) * l)
            })
            .collect();
        fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        fused.truncate(req.top_k);
        self.hits_for(fused.into_iter().map(|(id, s)| (id as u64, s)))
    }

    fn dense_candidates(
        &self,
        req: &SearchRequest,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<(usize, f32)>> {
        let semantic = self.semantic()?;
        check_dim(semantic, query, &self.dir)?;
        let scores = semantic.vectors.scores(query);
        self.dense_candidates_from(semantic, &scores, req, k)
    }

    fn dense_candidates_from(
        &self,
        semantic: &Semantic,
        scores: &[f32],
        req: &SearchRequest,
        k: usize,
    ) -> Result<Vec<(usize, f32)>> {
        let glob = match &req.path_glob {
            Some(g) => Some(compile_glob(g)?),
            None => None,
        };
        let keep = semantic
            .table
            .filter(&req.languages, &req.kinds.names(), glob.as_ref());
        Ok(vectors::top_k(scores, k.min(scores.len()), keep))
    }

    /// Hits for `(id, score)` pairs, in the given order.
    fn hits_for(&self, ranked: impl Iterator<Item = (u64, f32)>) -> Result<Vec<Hit>> {
        let ranked: Vec<(u64, f32)> = ranked.collect();
        let ids: Vec<u64> = ranked.iter().map(|&(id, _)| id).collect();
        let scores: std::collections::HashMap<u64, f32> = ranked.into_iter().collect();
        let mut hits = self.units_by_id(&ids)?;
        for hit in &mut hits {
            hit.score = scores.get(&hit.id).copied().unwrap_or(0.0);
        }
        Ok(hits)
    }

    /// Looks units up by id (ids that do not exist are skipped).
    pub fn units_by_id(&self, ids: &[u64]) -> Result<Vec<Hit>> {
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let q = TermQuery::new(
                Term::from_field_u64(self.fields.id, id),
                IndexRecordOption::Basic,
            );
            if let Some((_, addr)) = searcher
                .search(&q, &TopDocs::with_limit(1).order_by_score())?
                .into_iter()
                .next()
            {
                let doc: TantivyDocument = searcher.doc(addr)?;
                out.push(self.hit_from_doc(&doc, 0.0));
            }
        }
        Ok(out)
    }

    fn build_query(&self, req: &SearchRequest) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let b = &req.boosts;
        let mut seen = HashSet::new();
        let terms: Vec<String> = analyze(&req.text)
            .into_iter()
            .filter(|t| seen.insert(t.clone()))
            .collect();
        if terms.is_empty() {
            return None;
        }
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for t in &terms {
            for (field, boost) in [
                (f.name, b.name),
                (f.symbol, b.symbol),
                (f.doc, b.doc),
                (f.code, b.code),
                (f.path_text, b.path),
            ] {
                if boost <= 0.0 {
                    continue;
                }
                let tq = TermQuery::new(
                    Term::from_field_text(field, t),
                    IndexRecordOption::WithFreqs,
                );
                should.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(tq), boost)),
                ));
            }
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        if let Some(filter) = exact_any(f.language, &req.languages) {
            clauses.push((Occur::Must, filter));
        }
        let kinds = req.kinds.names();
        if let Some(filter) = exact_any(f.kind, &kinds) {
            clauses.push((Occur::Must, filter));
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    fn hit_from_doc(&self, doc: &TantivyDocument, score: f32) -> Hit {
        let f = &self.fields;
        let s = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        let n = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
        let doc_text = s(f.doc);
        Hit {
            id: n(f.id),
            score,
            path: s(f.path),
            language: s(f.language),
            kind: s(f.kind),
            name: s(f.name),
            symbol: s(f.symbol),
            start_line: n(f.start_line),
            end_line: n(f.end_line),
            def_line: n(f.def_line),
            start_byte: n(f.start_byte),
            end_byte: n(f.end_byte),
            doc: (!doc_text.is_empty()).then_some(doc_text),
            code: s(f.code),
        }
    }
}

/// A filter matching documents whose exact `field` value is one of `values` (none: no filter).
fn exact_any(field: Field, values: &[String]) -> Option<Box<dyn Query>> {
    if values.is_empty() {
        return None;
    }
    let any: Vec<(Occur, Box<dyn Query>)> = values
        .iter()
        .map(|v| {
            let q: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(field, v),
                IndexRecordOption::Basic,
            ));
            (Occur::Should, q)
        })
        .collect();
    // Filters must not change the BM25 score.
    Some(Box::new(BoostQuery::new(
        Box::new(BooleanQuery::new(any)),
        0.0,
    )))
}

fn compile_glob(glob: &str) -> Result<GlobMatcher> {
    Glob::new(glob)
        .map(|g| g.compile_matcher())
        .map_err(|e| IndexError::BadGlob {
            glob: glob.to_string(),
            reason: e.kind().to_string(),
        })
}

fn check_dim(semantic: &Semantic, query: &[f32], dir: &Path) -> Result<()> {
    if query.len() == semantic.vectors.dim {
        Ok(())
    } else {
        Err(IndexError::DimensionMismatch {
            path: dir.to_path_buf(),
            index: semantic.vectors.dim,
            query: query.len(),
        })
    }
}

fn min_max(values: impl Iterator<Item = f32>) -> (f32, f32) {
    values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    })
}
