//! [`EmbeddedStore`]: the store traits over one tantivy index and the vector rows.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, FileEntry, FileWrite, Filters, LexicalQuery, RepoInfo,
    Result, Store, StoreError, StoreReader, StoreStats, StoreWriter, StoredUnit, UnitId, UnitKey,
    UnitRecord, VectorQuery,
};
use tantivy::collector::{Count, DocSetCollector, TopDocs};
use tantivy::columnar::StrColumn;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::ann::AnnState;
use crate::lock::WriterLock;
use crate::manifest::{MANIFEST_FILE, Manifest, sync_dir};
use crate::rows::{RowReader, RowWriter};
use crate::tokenizer::{CODE_TOKENIZER, analyze, code_analyzer};

const LEXICAL_DIR: &str = "lexical";
/// Memory given to tantivy's writer (split across its threads).
const WRITER_MEMORY: usize = 128 << 20;

const DOC_UNIT: &str = "unit";
const DOC_FILE: &str = "file";
const DOC_REPO: &str = "repo";

fn tantivy_err(dir: &Path) -> impl Fn(tantivy::TantivyError) -> StoreError + '_ {
    move |e| match e {
        tantivy::TantivyError::LockFailure(..) => StoreError::Locked {
            path: dir.to_path_buf(),
            pid: "?".into(),
        },
        tantivy::TantivyError::IoError(io) => StoreError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        other => StoreError::Backend {
            message: other.to_string(),
        },
    }
}

/// Fields of the tantivy schema. One index holds three document types: units (searchable),
/// files (path and content hash, for refreshes) and repositories (their record as JSON), so a
/// single tantivy commit covers all of them.
#[derive(Clone, Copy)]
struct Fields {
    doc_type: Field,
    /// `f\0REPO\0PATH` on unit and file documents, `r\0REPO` on repository documents: the term
    /// that replaces or deletes them.
    key: Field,
    repo: Field,
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
    /// The unit's vector row.
    row: Field,
    file_hash: Field,
    file_units: Field,
    file_bytes: Field,
    repo_json: Field,
}

const FIELD_NAMES: [&str; 21] = [
    "doc_type",
    "key",
    "repo",
    "path",
    "path_text",
    "language",
    "kind",
    "name",
    "symbol",
    "doc",
    "code",
    "start_line",
    "end_line",
    "def_line",
    "start_byte",
    "end_byte",
    "row",
    "file_hash",
    "file_units",
    "file_bytes",
    "repo_json",
];

impl Fields {
    fn schema() -> Schema {
        let mut b = Schema::builder();
        let text = || {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(CODE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs);
            TextOptions::default().set_indexing_options(indexing)
        };
        b.add_text_field("doc_type", STRING);
        b.add_text_field("key", STRING);
        b.add_text_field("repo", STRING | STORED | FAST);
        b.add_text_field("path", STRING | STORED | FAST);
        b.add_text_field("path_text", text());
        b.add_text_field("language", STRING | STORED | FAST);
        b.add_text_field("kind", STRING | STORED | FAST);
        b.add_text_field("name", text().set_stored());
        b.add_text_field("symbol", text().set_stored());
        b.add_text_field("doc", text().set_stored());
        b.add_text_field("code", text().set_stored());
        for f in [
            "start_line",
            "end_line",
            "def_line",
            "start_byte",
            "end_byte",
        ] {
            b.add_u64_field(f, STORED);
        }
        b.add_u64_field("row", INDEXED | STORED | FAST);
        b.add_text_field("file_hash", STORED);
        b.add_u64_field("file_units", STORED);
        b.add_u64_field("file_bytes", STORED);
        b.add_text_field("repo_json", STORED);
        b.build()
    }

    fn from_schema(schema: &Schema, dir: &Path) -> Result<Fields> {
        let mut got = Vec::with_capacity(FIELD_NAMES.len());
        for name in FIELD_NAMES {
            got.push(schema.get_field(name).map_err(|_| StoreError::Damaged {
                path: dir.to_path_buf(),
                reason: format!("the lexical index lacks the field {name:?}"),
            })?);
        }
        let f = |i: usize| got[i];
        Ok(Fields {
            doc_type: f(0),
            key: f(1),
            repo: f(2),
            path: f(3),
            path_text: f(4),
            language: f(5),
            kind: f(6),
            name: f(7),
            symbol: f(8),
            doc: f(9),
            code: f(10),
            start_line: f(11),
            end_line: f(12),
            def_line: f(13),
            start_byte: f(14),
            end_byte: f(15),
            row: f(16),
            file_hash: f(17),
            file_units: f(18),
            file_bytes: f(19),
            repo_json: f(20),
        })
    }
}

fn file_key(repo: &str, path: &str) -> String {
    format!("f\0{repo}\0{path}")
}

fn repo_key(repo: &str) -> String {
    format!("r\0{repo}")
}

/// An index directory on the local disk (see the crate docs for its layout).
pub struct EmbeddedStore {
    dir: PathBuf,
    manifest: Manifest,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// The last snapshot handed out, reused while nothing was committed.
    cached: Mutex<Option<Arc<Snapshot>>>,
    /// The approximate index, loaded once per file.
    ann: Mutex<Option<Arc<AnnState>>>,
    /// Threads for tantivy's writer.
    threads: usize,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens the index at `dir`.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        let manifest = Manifest::load(dir)?;
        let lexical = dir.join(LEXICAL_DIR);
        if !lexical.is_dir() {
            return Err(StoreError::Damaged {
                path: dir.to_path_buf(),
                reason: format!("its {LEXICAL_DIR}/ directory is missing"),
            });
        }
        let index = Index::open_in_dir(&lexical).map_err(|e| StoreError::Damaged {
            path: dir.to_path_buf(),
            reason: format!("the lexical index cannot be opened: {e}"),
        })?;
        index.tokenizers().register(CODE_TOKENIZER, code_analyzer());
        let fields = Fields::from_schema(&index.schema(), dir)?;
        let reader = open_reader(&index, dir)?;
        Ok(EmbeddedStore {
            dir: dir.to_path_buf(),
            manifest,
            index,
            fields,
            reader,
            cached: Mutex::new(None),
            ann: Mutex::new(None),
            threads: 1,
        })
    }

    /// Opens the index at `dir`, creating an empty one holding vectors of `embedding` (or none)
    /// when `dir` is missing or an empty directory. A non-empty directory that is not an index
    /// is refused and left untouched. The caller compares [`Store::embedding`] of an existing
    /// index with the model it means to write with.
    pub fn open_or_create(dir: &Path, embedding: Option<EmbeddingInfo>) -> Result<EmbeddedStore> {
        if dir.join(MANIFEST_FILE).exists() {
            return EmbeddedStore::open(dir);
        }
        if dir.exists() {
            let mut entries = fs::read_dir(dir).map_err(StoreError::io(dir))?;
            if entries.next().is_some() {
                return Err(StoreError::NotAnIndex {
                    path: dir.to_path_buf(),
                });
            }
        }
        create(dir, embedding)?;
        EmbeddedStore::open(dir)
    }

    /// Deletes the index at `dir` (refusing a directory that is not an index, or one a writer
    /// holds).
    pub fn remove(dir: &Path) -> Result<()> {
        if !dir.exists() {
            return Ok(());
        }
        if !dir.join(MANIFEST_FILE).exists() {
            return Err(StoreError::NotAnIndex {
                path: dir.to_path_buf(),
            });
        }
        let lock = WriterLock::acquire(dir)?;
        // Remove everything but the lock first, then the rest.
        for entry in fs::read_dir(dir).map_err(StoreError::io(dir))?.flatten() {
            if entry.file_name() == crate::lock::LOCK_FILE {
                continue;
            }
            let p = entry.path();
            let r = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
            r.map_err(StoreError::io(&p))?;
        }
        drop(lock);
        fs::remove_dir_all(dir).map_err(StoreError::io(dir))
    }

    /// Threads tantivy's writer may use (default 1).
    pub fn set_writer_threads(&mut self, threads: usize) {
        self.threads = threads.clamp(1, 8);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The concrete snapshot type (the trait's [`Store::reader`] returns it as a trait object).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        // Another process may have committed: reload, retrying while its garbage collection
        // races the read of the new segment list.
        let mut last = None;
        for _ in 0..5 {
            match self.reader.reload() {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        if let Some(e) = last {
            return Err(tantivy_err(&self.dir)(e));
        }
        let searcher = self.reader.searcher();
        let mut cached = self.cached.lock().map_err(|_| poisoned())?;
        if let Some(s) = cached.as_ref()
            && s.searcher.generation().generation_id() == searcher.generation().generation_id()
        {
            return Ok(s.clone());
        }
        let rows = match &self.manifest.embedding {
            Some(e) => Some(Arc::new(RowReader::open(&self.dir, e.dim)?)),
            None => None,
        };
        let ann = match &rows {
            Some(rows) => self.ann_state(rows.count())?,
            None => None,
        };
        let snapshot = Arc::new(Snapshot {
            dir: self.dir.clone(),
            searcher,
            fields: self.fields,
            embedding: self.manifest.embedding.clone(),
            rows,
            ann,
            row_map: OnceLock::new(),
            seg_cols: OnceLock::new(),
        });
        *cached = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// The newest approximate index usable with `rows` rows on disk.
    fn ann_state(&self, rows: u32) -> Result<Option<Arc<AnnState>>> {
        let mut slot = self.ann.lock().map_err(|_| poisoned())?;
        let newest = crate::ann::newest(&self.dir, rows);
        match (&*slot, newest) {
            (Some(s), Some((covered, _))) if s.covered == covered => return Ok(Some(s.clone())),
            (_, None) => return Ok(None),
            _ => {}
        }
        let Some((_, path)) = crate::ann::newest(&self.dir, rows) else {
            return Ok(None);
        };
        match AnnState::load(&path) {
            Ok(state) => {
                let state = Arc::new(state);
                *slot = Some(state.clone());
                Ok(Some(state))
            }
            // A damaged approximate index is only a slower search: scan exactly.
            Err(_) => Ok(None),
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Backend {
        message: "a thread panicked while holding the index".into(),
    }
}

fn open_reader(index: &Index, dir: &Path) -> Result<IndexReader> {
    index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(tantivy_err(dir))
}

/// Builds a new empty index beside `dir` and renames it into place, so a crash leaves either
/// nothing or a complete empty index.
fn create(dir: &Path, embedding: Option<EmbeddingInfo>) -> Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| StoreError::InvalidArgument {
            message: format!("{} is not a usable index directory name", dir.display()),
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(StoreError::io(&parent))?;
    let tmp = parent.join(format!(".{name}.creating-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let build = || -> Result<()> {
        fs::create_dir_all(tmp.join(LEXICAL_DIR)).map_err(StoreError::io(&tmp))?;
        // The index ignores itself, as virtualenvs and pytest caches do.
        fs::write(tmp.join(".gitignore"), "# created by gnn-coder\n*\n")
            .map_err(StoreError::io(&tmp))?;
        let settings = tantivy::IndexSettings {
            docstore_compression: tantivy::store::Compressor::Zstd(
                tantivy::store::ZstdCompressor::default(),
            ),
            docstore_blocksize: 32 * 1024,
            ..tantivy::IndexSettings::default()
        };
        Index::builder()
            .schema(Fields::schema())
            .settings(settings)
            .create_in_dir(tmp.join(LEXICAL_DIR))
            .map_err(tantivy_err(&tmp))?;
        if let Some(e) = &embedding {
            RowWriter::open(&tmp, e.dim)?;
        }
        Manifest::new(embedding.clone()).store(&tmp)?;
        Ok(())
    };
    if let Err(e) = build() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        // An empty directory the user made: replaced (rename fails if it is no longer empty).
        let _ = fs::remove_dir(dir);
    }
    if let Err(e) = fs::rename(&tmp, dir) {
        let _ = fs::remove_dir_all(&tmp);
        // Someone else created it meanwhile: use theirs.
        if dir.join(MANIFEST_FILE).exists() {
            return Ok(());
        }
        return Err(StoreError::io(dir)(e));
    }
    sync_dir(&parent);
    Ok(())
}

impl Store for EmbeddedStore {
    fn embedding(&self) -> Option<&EmbeddingInfo> {
        self.manifest.embedding.as_ref()
    }

    fn writer(&self) -> Result<Box<dyn StoreWriter>> {
        Ok(Box::new(self.embedded_writer()?))
    }

    fn reader(&self) -> Result<Arc<dyn StoreReader>> {
        Ok(self.snapshot()?)
    }
}

impl EmbeddedStore {
    /// The concrete writer.
    pub fn embedded_writer(&self) -> Result<EmbeddedWriter> {
        let lock = WriterLock::acquire(&self.dir)?;
        let threads = self.threads;
        let writer: IndexWriter = self
            .index
            .writer_with_num_threads(threads, WRITER_MEMORY.max(threads * (20 << 20)))
            .map_err(tantivy_err(&self.dir))?;
        // A writer killed mid-commit leaves files no commit names (a delete bitset, a segment);
        // their names would collide with the ones this writer is about to write.
        writer
            .garbage_collect_files()
            .wait()
            .map_err(tantivy_err(&self.dir))?;
        let rows = match &self.manifest.embedding {
            Some(e) => Some(RowWriter::open(&self.dir, e.dim)?),
            None => None,
        };
        Ok(EmbeddedWriter {
            dir: self.dir.clone(),
            fields: self.fields,
            dim: self.manifest.embedding.as_ref().map(|e| e.dim),
            writer: Some(writer),
            rows,
            _lock: lock,
        })
    }
}

/// The writer of an [`EmbeddedStore`]; holds `writer.lock` until dropped. Dropping it without
/// [`StoreWriter::commit`] discards what it wrote. It owns what it needs (no borrow of the
/// store), so a long-lived front end can keep one and share it between jobs.
pub struct EmbeddedWriter {
    dir: PathBuf,
    fields: Fields,
    /// Vector dimension; `None` for a lexical-only index.
    dim: Option<usize>,
    writer: Option<IndexWriter>,
    rows: Option<RowWriter>,
    _lock: WriterLock,
}

impl EmbeddedWriter {
    fn w(&self) -> Result<&IndexWriter> {
        self.writer.as_ref().ok_or_else(|| StoreError::Backend {
            message: "the index writer failed earlier".into(),
        })
    }

    fn add(&self, doc: TantivyDocument) -> Result<()> {
        self.w()?
            .add_document(doc)
            .map(|_| ())
            .map_err(tantivy_err(&self.dir))
    }
}

fn check_repo_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.contains('\0') {
        return Err(StoreError::InvalidArgument {
            message: format!("bad repository name {name:?}"),
        });
    }
    Ok(())
}

impl StoreWriter for EmbeddedWriter {
    fn upsert_files(&mut self, repository: &str, files: Vec<FileWrite>) -> Result<()> {
        check_repo_name(repository)?;
        let f = self.fields;
        for file in files {
            let key = file_key(repository, &file.file.path);
            self.w()?.delete_term(Term::from_field_text(f.key, &key));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.doc_type, DOC_FILE);
            doc.add_text(f.key, &key);
            doc.add_text(f.repo, repository);
            doc.add_text(f.path, &file.file.path);
            doc.add_text(f.file_hash, &file.file.hash);
            doc.add_u64(f.file_units, file.units.len() as u64);
            doc.add_u64(f.file_bytes, file.file.bytes);
            self.add(doc)?;
            for unit in file.units {
                let row = match self.rows.as_mut() {
                    None => None,
                    Some(rows) => Some(match (&unit.vector, rows.lookup(&unit.key)) {
                        (_, Some(row)) => row,
                        (Some(v), None) => rows.insert(unit.key, v)?,
                        (None, None) => {
                            return Err(StoreError::InvalidArgument {
                                message: format!(
                                    "unit {} of {} has no vector and none is cached",
                                    unit.record.symbol, unit.record.path
                                ),
                            });
                        }
                    }),
                };
                let r = &unit.record;
                let mut doc = TantivyDocument::default();
                doc.add_text(f.doc_type, DOC_UNIT);
                doc.add_text(f.key, &key);
                doc.add_text(f.repo, repository);
                doc.add_text(f.path, &r.path);
                doc.add_text(f.path_text, &r.path);
                doc.add_text(f.language, &r.language);
                doc.add_text(f.kind, &r.kind);
                doc.add_text(f.name, &r.name);
                doc.add_text(f.symbol, &r.symbol);
                if let Some(d) = &r.doc {
                    doc.add_text(f.doc, d);
                }
                doc.add_text(f.code, &r.code);
                doc.add_u64(f.start_line, r.start_line);
                doc.add_u64(f.end_line, r.end_line);
                doc.add_u64(f.def_line, r.def_line);
                doc.add_u64(f.start_byte, r.start_byte);
                doc.add_u64(f.end_byte, r.end_byte);
                if let Some(row) = row {
                    doc.add_u64(f.row, u64::from(row));
                }
                self.add(doc)?;
            }
        }
        Ok(())
    }

    fn delete_files(&mut self, repository: &str, paths: &[String]) -> Result<()> {
        let f = self.fields;
        for p in paths {
            self.w()?
                .delete_term(Term::from_field_text(f.key, &file_key(repository, p)));
        }
        Ok(())
    }

    fn put_repository(&mut self, info: &RepoInfo) -> Result<()> {
        check_repo_name(&info.name)?;
        let f = self.fields;
        let key = repo_key(&info.name);
        self.w()?.delete_term(Term::from_field_text(f.key, &key));
        let mut doc = TantivyDocument::default();
        doc.add_text(f.doc_type, DOC_REPO);
        doc.add_text(f.key, &key);
        doc.add_text(f.repo, &info.name);
        let json = serde_json::to_string(info).map_err(|e| StoreError::Backend {
            message: e.to_string(),
        })?;
        doc.add_text(f.repo_json, &json);
        self.add(doc)
    }

    fn delete_repository(&mut self, name: &str) -> Result<()> {
        let f = self.fields;
        self.w()?.delete_term(Term::from_field_text(f.repo, name));
        Ok(())
    }

    fn known_keys(&self, keys: &[UnitKey]) -> Result<Vec<bool>> {
        // Answered from the key map: a unit written with `vector: None` reuses the row (see
        // `upsert_files`), so nothing is read back.
        Ok(keys
            .iter()
            .map(|k| self.rows.as_ref().is_some_and(|r| r.lookup(k).is_some()))
            .collect())
    }

    fn commit(&mut self, cancel: &CancellationToken) -> Result<()> {
        cancel.check()?;
        // Rows first: a committed document must never name a row that is not on disk.
        if let Some(rows) = self.rows.as_mut() {
            rows.sync()?;
        }
        let dir = self.dir.clone();
        let writer = self.writer.as_mut().ok_or_else(|| StoreError::Backend {
            message: "the index writer failed earlier".into(),
        })?;
        if let Err(e) = writer.commit() {
            // tantivy's writer is unusable after a failed commit.
            self.writer = None;
            return Err(tantivy_err(&dir)(e));
        }
        Ok(())
    }

    fn maintain(&mut self, cancel: &CancellationToken) -> Result<()> {
        self.maintain_ann(cancel).map(|_| ())
    }
}

impl EmbeddedWriter {
    /// Rebuilds the approximate nearest-neighbour index over all durable rows when enough rows
    /// are not covered yet (see [`crate::ann`]). Returns whether it built one.
    pub fn maintain_ann(&mut self, cancel: &CancellationToken) -> Result<bool> {
        let Some(rows) = self.rows.as_ref() else {
            return Ok(false);
        };
        let durable = rows.durable_rows();
        let covered = crate::ann::newest(&self.dir, durable).map_or(0, |(c, _)| c);
        if !crate::ann::needs_rebuild(covered, durable) {
            return Ok(false);
        }
        let Some(dim) = self.dim else {
            return Ok(false);
        };
        let reader = RowReader::open(&self.dir, dim)?;
        crate::ann::build_and_save(&self.dir, &reader, durable, cancel)?;
        Ok(true)
    }
}

/// A reader snapshot of an [`EmbeddedStore`].
pub struct Snapshot {
    dir: PathBuf,
    searcher: Searcher,
    fields: Fields,
    embedding: Option<EmbeddingInfo>,
    rows: Option<Arc<RowReader>>,
    ann: Option<Arc<AnnState>>,
    /// Row -> units naming it (built on first use by the approximate search).
    row_map: OnceLock<HashMap<u32, Vec<UnitId>>>,
    /// Per-segment columns (built on first use by the vector leg or a filter).
    seg_cols: OnceLock<std::result::Result<Vec<SegCols>, String>>,
}

fn unit_id(addr: DocAddress) -> UnitId {
    UnitId((u64::from(addr.segment_ord) << 32) | u64::from(addr.doc_id))
}

fn address(id: UnitId) -> DocAddress {
    DocAddress::new((id.0 >> 32) as u32, id.0 as u32)
}

/// One segment's per-document columns the vector leg and the filters read, materialized once
/// per snapshot (plain arrays are several times faster to scan than bit-packed columns).
/// `NONE` marks a document without the value (file and repository documents, no vector).
struct SegCols {
    row: Vec<u32>,
    language: Vec<u32>,
    kind: Vec<u32>,
    repo: Vec<u32>,
    path: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl SegCols {
    fn build(seg: &tantivy::SegmentReader) -> Result<SegCols> {
        let n = seg.max_doc() as usize;
        let ff = seg.fast_fields();
        let row_col = ff.u64("row").map_err(backend)?;
        let row = (0..n as u32)
            .map(|d| {
                row_col
                    .first(d)
                    .map_or(NONE, |r| r.min(u64::from(NONE - 1)) as u32)
            })
            .collect();
        let ords = |field: &str| -> Result<Vec<u32>> {
            Ok(match ff.str(field).map_err(backend)? {
                Some(col) => (0..n as u32)
                    .map(|d| {
                        col.ords()
                            .first(d)
                            .map_or(NONE, |o| o.min(u64::from(NONE - 1)) as u32)
                    })
                    .collect(),
                None => vec![NONE; n],
            })
        };
        Ok(SegCols {
            row,
            language: ords("language")?,
            kind: ords("kind")?,
            repo: ords("repo")?,
            path: ords("path")?,
        })
    }

    fn field(&self, i: usize) -> &[u32] {
        match i {
            0 => &self.language,
            1 => &self.kind,
            _ => &self.repo,
        }
    }
}

/// The filters of a request, resolved against one segment's dictionaries.
struct SegmentFilter<'a> {
    cols: &'a SegCols,
    /// For language (0), kind (1), repository (2): allowed term ordinals.
    exact: Vec<(usize, Vec<bool>)>,
    /// Some filter admits no value present in this segment.
    none: bool,
    /// Path column, globs, and per path ordinal 0 = not checked yet, 1 = matches, 2 = not.
    path: Option<(
        StrColumn,
        &'a globset::GlobSet,
        Vec<std::sync::atomic::AtomicU8>,
    )>,
    exclude: &'a HashSet<UnitId>,
    segment_ord: u32,
    alive: Option<&'a tantivy::fastfield::AliveBitSet>,
}

impl<'a> SegmentFilter<'a> {
    fn new(
        seg: &'a tantivy::SegmentReader,
        cols: &'a SegCols,
        segment_ord: u32,
        filters: &Filters,
        globs: Option<&'a globset::GlobSet>,
        exclude: &'a HashSet<UnitId>,
    ) -> Result<SegmentFilter<'a>> {
        let ff = seg.fast_fields();
        let mut exact = Vec::new();
        let mut none = false;
        for (i, (field, wanted)) in [
            ("language", &filters.languages),
            ("kind", &filters.kinds),
            ("repo", &filters.repositories),
        ]
        .into_iter()
        .enumerate()
        {
            if wanted.is_empty() {
                continue;
            }
            let Some(col) = ff.str(field).map_err(backend)? else {
                none = true;
                continue;
            };
            let mut allowed = vec![false; col.num_terms()];
            let mut any = false;
            for w in wanted {
                if let Some(ord) = col
                    .dictionary()
                    .term_ord(w.as_bytes())
                    .map_err(io_backend)?
                    && let Some(slot) = allowed.get_mut(ord as usize)
                {
                    *slot = true;
                    any = true;
                }
            }
            if !any {
                none = true;
            }
            exact.push((i, allowed));
        }
        let path = match globs {
            Some(g) => match ff.str("path").map_err(backend)? {
                Some(col) => {
                    let n = col.num_terms();
                    Some((
                        col,
                        g,
                        (0..n)
                            .map(|_| std::sync::atomic::AtomicU8::new(0))
                            .collect(),
                    ))
                }
                None => {
                    none = true;
                    None
                }
            },
            None => None,
        };
        Ok(SegmentFilter {
            cols,
            exact,
            none,
            path,
            exclude,
            segment_ord,
            alive: seg.alive_bitset(),
        })
    }

    fn accepts(&self, doc: u32) -> bool {
        if self.none || self.alive.is_some_and(|a| !a.is_alive(doc)) {
            return false;
        }
        for (i, allowed) in &self.exact {
            let ord = self
                .cols
                .field(*i)
                .get(doc as usize)
                .copied()
                .unwrap_or(NONE);
            if !allowed.get(ord as usize).copied().unwrap_or(false) {
                return false;
            }
        }
        if let Some((col, globs, cache)) = &self.path {
            let ord = self.cols.path.get(doc as usize).copied().unwrap_or(NONE);
            if ord == NONE {
                return false;
            }
            let ord = u64::from(ord);
            let Some(slot) = cache.get(ord as usize) else {
                return false;
            };
            let mut state = slot.load(std::sync::atomic::Ordering::Relaxed);
            if state == 0 {
                let mut s = String::new();
                let ok = col.ord_to_str(ord, &mut s).unwrap_or(false) && globs.is_match(&s);
                state = if ok { 1 } else { 2 };
                slot.store(state, std::sync::atomic::Ordering::Relaxed);
            }
            if state != 1 {
                return false;
            }
        }
        !self
            .exclude
            .contains(&unit_id(DocAddress::new(self.segment_ord, doc)))
    }
}

fn backend(e: tantivy::TantivyError) -> StoreError {
    StoreError::Backend {
        message: e.to_string(),
    }
}

fn io_backend(e: std::io::Error) -> StoreError {
    StoreError::Backend {
        message: e.to_string(),
    }
}

/// Top-k by score (ties: lower id first).
struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<(OrdF32, std::cmp::Reverse<UnitId>)>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct OrdF32(f32);
impl Eq for OrdF32 {}
impl PartialOrd for OrdF32 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdF32 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    fn push(&mut self, id: UnitId, score: f32) {
        if self.k == 0 || !score.is_finite() {
            return;
        }
        let item = std::cmp::Reverse((OrdF32(score), std::cmp::Reverse(id)));
        if self.heap.len() < self.k {
            self.heap.push(item);
        } else if let Some(min) = self.heap.peek()
            && item < *min
        {
            self.heap.pop();
            self.heap.push(item);
        }
    }

    fn into_sorted(self) -> Vec<(UnitId, f32)> {
        let mut v: Vec<(UnitId, f32)> = self
            .heap
            .into_iter()
            .map(|std::cmp::Reverse((s, std::cmp::Reverse(id)))| (id, s.0))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// Filtered candidates above which the approximate index is used (below it an exact scan of
/// the candidates is as fast and exact).
const EXACT_SCAN_MAX: u64 = 20_000;

/// [`EXACT_SCAN_MAX`], or `$GNN_CODER_ANN_MIN_ROWS` (see `ann.rs`).
fn exact_scan_max() -> u64 {
    std::env::var("GNN_CODER_ANN_MIN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(EXACT_SCAN_MAX)
}

impl Snapshot {
    fn seg_cols(&self) -> Result<&[SegCols]> {
        self.seg_cols
            .get_or_init(|| {
                self.searcher
                    .segment_readers()
                    .iter()
                    .map(SegCols::build)
                    .collect::<Result<Vec<_>>>()
                    .map_err(|e| e.to_string())
            })
            .as_deref()
            .map_err(|e| StoreError::Backend { message: e.clone() })
    }

    fn term(&self, field: Field, value: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, value),
            IndexRecordOption::Basic,
        ))
    }

    fn docs_of(&self, query: &dyn Query) -> Result<Vec<DocAddress>> {
        let mut docs: Vec<DocAddress> = self
            .searcher
            .search(query, &DocSetCollector)
            .map_err(backend)?
            .into_iter()
            .collect();
        docs.sort();
        Ok(docs)
    }

    fn stored(&self, addr: DocAddress) -> Result<TantivyDocument> {
        self.searcher.doc(addr).map_err(backend)
    }

    fn str_of(doc: &TantivyDocument, field: Field) -> String {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn u64_of(doc: &TantivyDocument, field: Field) -> u64 {
        doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0)
    }

    fn unit_from(&self, id: UnitId, doc: &TantivyDocument) -> StoredUnit {
        let f = &self.fields;
        let d = Self::str_of(doc, f.doc);
        StoredUnit {
            id,
            repository: Self::str_of(doc, f.repo),
            record: UnitRecord {
                path: Self::str_of(doc, f.path),
                language: Self::str_of(doc, f.language),
                kind: Self::str_of(doc, f.kind),
                name: Self::str_of(doc, f.name),
                symbol: Self::str_of(doc, f.symbol),
                start_line: Self::u64_of(doc, f.start_line),
                end_line: Self::u64_of(doc, f.end_line),
                def_line: Self::u64_of(doc, f.def_line),
                start_byte: Self::u64_of(doc, f.start_byte),
                end_byte: Self::u64_of(doc, f.end_byte),
                doc: (!d.is_empty()).then_some(d),
                code: Self::str_of(doc, f.code),
            },
        }
    }

    fn is_live_unit(&self, addr: DocAddress) -> bool {
        let Some(seg) = self
            .searcher
            .segment_readers()
            .get(addr.segment_ord as usize)
        else {
            return false;
        };
        if addr.doc_id >= seg.max_doc()
            || seg.alive_bitset().is_some_and(|a| !a.is_alive(addr.doc_id))
        {
            return false;
        }
        // Only unit documents have a kind.
        seg.fast_fields()
            .str("kind")
            .ok()
            .flatten()
            .is_some_and(|c| c.ords().first(addr.doc_id).is_some())
    }

    fn lexical_query(&self, q: &LexicalQuery) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let b = &q.boosts;
        let mut seen = HashSet::new();
        let terms: Vec<String> = analyze(&q.text)
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
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, Box::new(BooleanQuery::new(should))),
            (
                Occur::Must,
                Box::new(BoostQuery::new(self.term(f.doc_type, DOC_UNIT), 0.0)),
            ),
        ];
        for (field, values) in [
            (f.language, &q.filters.languages),
            (f.kind, &q.filters.kinds),
            (f.repo, &q.filters.repositories),
        ] {
            if let Some(filter) = self.exact_any(field, values) {
                clauses.push((Occur::Must, filter));
            }
        }
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// Documents whose exact `field` is one of `values` (none: no filter), scoring nothing.
    fn exact_any(&self, field: Field, values: &[String]) -> Option<Box<dyn Query>> {
        if values.is_empty() {
            return None;
        }
        let any: Vec<(Occur, Box<dyn Query>)> = values
            .iter()
            .map(|v| (Occur::Should, self.term(field, v)))
            .collect();
        Some(Box::new(BoostQuery::new(
            Box::new(BooleanQuery::new(any)),
            0.0,
        )))
    }

    fn check_vector(&self, v: &[f32]) -> Result<&RowReader> {
        let (Some(info), Some(rows)) = (&self.embedding, &self.rows) else {
            return Err(StoreError::NoVectors {
                path: self.dir.clone(),
            });
        };
        if v.len() != info.dim {
            return Err(StoreError::DimensionMismatch {
                path: self.dir.clone(),
                index: info.dim,
                query: v.len(),
            });
        }
        Ok(rows)
    }

    /// Exact scan: scores every unit passing the filters (rows at or above `from_row` only).
    fn exact_scan(
        &self,
        rows: &RowReader,
        q: &VectorQuery,
        globs: Option<&globset::GlobSet>,
        exclude: &HashSet<UnitId>,
        from_row: u32,
        top: &mut TopK,
    ) -> Result<u64> {
        let mut candidates = 0u64;
        // Units that share a text share a row: score each row once.
        let mut scores: Vec<f32> = vec![f32::NAN; rows.count() as usize];
        let cols = self.seg_cols()?;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let filter = SegmentFilter::new(seg, c, ord as u32, &q.filters, globs, exclude)?;
            if filter.none {
                continue;
            }
            for (doc, &row) in c.row.iter().enumerate() {
                let doc = doc as u32;
                if row == NONE || row < from_row || !filter.accepts(doc) {
                    continue;
                }
                candidates += 1;
                let Some(slot) = scores.get_mut(row as usize) else {
                    continue;
                };
                if slot.is_nan() {
                    *slot = rows.dot(row, &q.vector).unwrap_or(f32::NEG_INFINITY);
                }
                top.push(unit_id(DocAddress::new(ord as u32, doc)), *slot);
            }
        }
        Ok(candidates)
    }

    /// Units with a vector passing the filters, and all units with a vector (counted without
    /// scoring).
    fn candidate_counts(
        &self,
        q: &VectorQuery,
        globs: Option<&globset::GlobSet>,
        exclude: &HashSet<UnitId>,
    ) -> Result<(u64, u64)> {
        let (mut passing, mut total) = (0, 0);
        let cols = self.seg_cols()?;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let filter = SegmentFilter::new(seg, c, ord as u32, &q.filters, globs, exclude)?;
            let alive = seg.alive_bitset();
            for (doc, &row) in c.row.iter().enumerate() {
                let doc = doc as u32;
                if row == NONE || alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                total += 1;
                if filter.accepts(doc) {
                    passing += 1;
                }
            }
        }
        Ok((passing, total))
    }

    fn row_map(&self) -> Result<&HashMap<u32, Vec<UnitId>>> {
        if let Some(m) = self.row_map.get() {
            return Ok(m);
        }
        let mut map: HashMap<u32, Vec<UnitId>> = HashMap::new();
        let cols = self.seg_cols()?;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let alive = seg.alive_bitset();
            for (doc, &row) in c.row.iter().enumerate() {
                let doc = doc as u32;
                if row == NONE || alive.is_some_and(|a| !a.is_alive(doc)) {
                    continue;
                }
                map.entry(row)
                    .or_default()
                    .push(unit_id(DocAddress::new(ord as u32, doc)));
            }
        }
        Ok(self.row_map.get_or_init(|| map))
    }
}

impl StoreReader for Snapshot {
    fn repositories(&self) -> Result<Vec<RepoInfo>> {
        let docs = self.docs_of(self.term(self.fields.doc_type, DOC_REPO).as_ref())?;
        let mut out = Vec::with_capacity(docs.len());
        for addr in docs {
            let doc = self.stored(addr)?;
            let json = Self::str_of(&doc, self.fields.repo_json);
            let info: RepoInfo = serde_json::from_str(&json).map_err(|e| StoreError::Damaged {
                path: self.dir.clone(),
                reason: format!("a repository record is not valid: {e}"),
            })?;
            out.push(info);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn files(&self, repository: &str) -> Result<Vec<FileEntry>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_FILE)),
            (Occur::Must, self.term(f.repo, repository)),
        ]);
        let mut out = Vec::new();
        for addr in self.docs_of(&q)? {
            let doc = self.stored(addr)?;
            out.push(FileEntry {
                path: Self::str_of(&doc, f.path),
                hash: Self::str_of(&doc, f.file_hash),
                units: Self::u64_of(&doc, f.file_units) as u32,
                bytes: Self::u64_of(&doc, f.file_bytes),
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn file(&self, repository: &str, path: &str) -> Result<Option<FileEntry>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_FILE)),
            (Occur::Must, self.term(f.key, &file_key(repository, path))),
        ]);
        let Some(addr) = self.docs_of(&q)?.into_iter().next() else {
            return Ok(None);
        };
        let doc = self.stored(addr)?;
        Ok(Some(FileEntry {
            path: Self::str_of(&doc, f.path),
            hash: Self::str_of(&doc, f.file_hash),
            units: Self::u64_of(&doc, f.file_units) as u32,
            bytes: Self::u64_of(&doc, f.file_bytes),
        }))
    }

    fn lexical(&self, q: &LexicalQuery) -> Result<Vec<(UnitId, f32)>> {
        let globs = q.filters.path_globs.set();
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let Some(query) = self.lexical_query(q) else {
            return Ok(Vec::new());
        };
        let num_docs = usize::try_from(self.searcher.num_docs()).unwrap_or(usize::MAX);
        let want = q.limit.min(num_docs);
        if want == 0 {
            return Ok(Vec::new());
        }
        let exclude: HashSet<UnitId> = q.filters.exclude_units.iter().copied().collect();
        let post_filter = globs.is_some() || !exclude.is_empty();
        // Path globs and exclusions filter ranked hits, so fetch more until enough pass (or
        // none are left): still before the top-k cut.
        let mut limit = if post_filter {
            want.saturating_mul(20).max(200)
        } else {
            want
        }
        .min(num_docs);
        let segments = self.searcher.segment_readers();
        loop {
            let top = self
                .searcher
                .search(query.as_ref(), &TopDocs::with_limit(limit).order_by_score())
                .map_err(backend)?;
            let exhausted = top.len() < limit || limit >= num_docs;
            let mut filters: HashMap<u32, SegmentFilter<'_>> = HashMap::new();
            let mut hits = Vec::with_capacity(want);
            for (score, addr) in top {
                if post_filter {
                    let filter = match filters.entry(addr.segment_ord) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(e) => {
                            let (Some(seg), Some(c)) = (
                                segments.get(addr.segment_ord as usize),
                                self.seg_cols()?.get(addr.segment_ord as usize),
                            ) else {
                                continue;
                            };
                            e.insert(SegmentFilter::new(
                                seg,
                                c,
                                addr.segment_ord,
                                &q.filters,
                                globs,
                                &exclude,
                            )?)
                        }
                    };
                    if !filter.accepts(addr.doc_id) {
                        continue;
                    }
                }
                hits.push((unit_id(addr), score));
                if hits.len() == want {
                    break;
                }
            }
            if hits.len() == want || exhausted {
                return Ok(hits);
            }
            limit = limit.saturating_mul(4).min(num_docs);
        }
    }

    fn vector(&self, q: &VectorQuery) -> Result<Vec<(UnitId, f32)>> {
        let rows = self.check_vector(&q.vector)?;
        let globs = q.filters.path_globs.set();
        let exclude: HashSet<UnitId> = q.filters.exclude_units.iter().copied().collect();
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        let mut top = TopK::new(q.limit);
        let (passing, total) = match (&self.ann, q.exact) {
            (Some(_), false) => self.candidate_counts(q, globs, &exclude)?,
            _ => (0, 0),
        };
        match (&self.ann, passing > exact_scan_max()) {
            (Some(ann), true) => {
                // A filter that keeps a fraction of the graph needs a proportionally wider
                // walk for the same recall (measured in gnn-coder-ann's docs).
                let ef = (crate::ann::EF_SEARCH as u64 * total / passing.max(1))
                    .clamp(crate::ann::EF_SEARCH as u64, 1024) as usize;
                let map = self.row_map()?;
                let segments = self.searcher.segment_readers();
                let cols = self.seg_cols()?;
                let filters: Vec<SegmentFilter<'_>> = segments
                    .iter()
                    .zip(cols)
                    .enumerate()
                    .map(|(ord, (seg, c))| {
                        SegmentFilter::new(seg, c, ord as u32, &q.filters, globs, &exclude)
                    })
                    .collect::<Result<_>>()?;
                let passes = |id: &UnitId| {
                    let a = address(*id);
                    filters
                        .get(a.segment_ord as usize)
                        .is_some_and(|f| f.accepts(a.doc_id))
                };
                let keep = |row: u32| map.get(&row).is_some_and(|ids| ids.iter().any(passes));
                for (row, _) in ann.search(&q.vector, q.limit, ef.max(q.limit), &keep) {
                    let Some(score) = rows.dot(row, &q.vector) else {
                        continue;
                    };
                    for id in map.get(&row).into_iter().flatten().filter(|id| passes(id)) {
                        top.push(*id, score);
                    }
                }
                // Rows appended since the approximate index was built are scanned exactly.
                self.exact_scan(rows, q, globs, &exclude, ann.covered, &mut top)?;
            }
            _ => {
                self.exact_scan(rows, q, globs, &exclude, 0, &mut top)?;
            }
        }
        Ok(top.into_sorted())
    }

    fn units(&self, ids: &[UnitId]) -> Result<Vec<StoredUnit>> {
        let mut out = Vec::with_capacity(ids.len());
        let segments = self.searcher.segment_readers();
        for &id in ids {
            let addr = address(id);
            let Some(seg) = segments.get(addr.segment_ord as usize) else {
                continue;
            };
            if addr.doc_id >= seg.max_doc()
                || seg.alive_bitset().is_some_and(|a| !a.is_alive(addr.doc_id))
            {
                continue;
            }
            let doc = self.stored(addr)?;
            // Only unit documents have a kind.
            if doc.get_first(self.fields.kind).is_none() {
                continue;
            }
            out.push(self.unit_from(id, &doc));
        }
        Ok(out)
    }

    fn units_of_file(&self, repository: &str, path: &str) -> Result<Vec<StoredUnit>> {
        let f = &self.fields;
        let q = BooleanQuery::new(vec![
            (Occur::Must, self.term(f.doc_type, DOC_UNIT)),
            (Occur::Must, self.term(f.key, &file_key(repository, path))),
        ]);
        let mut out = Vec::new();
        for addr in self.docs_of(&q)? {
            let doc = self.stored(addr)?;
            out.push(self.unit_from(unit_id(addr), &doc));
        }
        out.sort_by_key(|u| (u.record.start_byte, std::cmp::Reverse(u.record.end_byte)));
        Ok(out)
    }

    fn unit_vector(&self, id: UnitId) -> Result<Option<Vec<f32>>> {
        let Some(rows) = &self.rows else {
            return Err(StoreError::NoVectors {
                path: self.dir.clone(),
            });
        };
        let addr = address(id);
        if !self.is_live_unit(addr) {
            return Ok(None);
        }
        let seg = self.searcher.segment_reader(addr.segment_ord);
        let col = seg.fast_fields().u64("row").map_err(backend)?;
        Ok(col.first(addr.doc_id).and_then(|r| rows.vector(r as u32)))
    }

    fn vector_scores(&self, ids: &[UnitId], query: &[f32]) -> Result<Vec<Option<f32>>> {
        let rows = self.check_vector(query)?;
        let mut columns: HashMap<u32, tantivy::columnar::Column<u64>> = HashMap::new();
        let segments = self.searcher.segment_readers();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let a = address(*id);
            let Some(seg) = segments.get(a.segment_ord as usize) else {
                out.push(None);
                continue;
            };
            if a.doc_id >= seg.max_doc()
                || seg.alive_bitset().is_some_and(|b| !b.is_alive(a.doc_id))
            {
                out.push(None);
                continue;
            }
            let col = match columns.entry(a.segment_ord) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(seg.fast_fields().u64("row").map_err(backend)?)
                }
            };
            out.push(col.first(a.doc_id).and_then(|r| rows.dot(r as u32, query)));
        }
        Ok(out)
    }

    fn stats(&self) -> Result<StoreStats> {
        let f = &self.fields;
        let count = |t: &str| -> Result<u64> {
            self.searcher
                .search(self.term(f.doc_type, t).as_ref(), &Count)
                .map(|n| n as u64)
                .map_err(backend)
        };
        Ok(StoreStats {
            repositories: count(DOC_REPO)?,
            files: count(DOC_FILE)?,
            units: count(DOC_UNIT)?,
            vectors: self.rows.as_ref().map_or(0, |r| u64::from(r.count())),
            ann_vectors: self.ann.as_ref().map_or(0, |a| u64::from(a.covered)),
            bytes_on_disk: dir_bytes(&self.dir),
        })
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
