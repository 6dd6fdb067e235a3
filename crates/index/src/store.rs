//! [`EmbeddedStore`]: the store traits over one tantivy index and the vector rows.
//!
//! The store is the entry point: it opens or creates an index directory (creation builds a
//! complete empty index beside it and renames it into place), hands out the one writer
//! ([`EmbeddedWriter`], [`crate::writer`]) and reader snapshots ([`Snapshot`],
//! [`crate::snapshot`]). A snapshot is reused while nothing was committed, and the approximate
//! index is loaded once per file, so taking a reader per request is cheap.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use gnn_coder_store::{EmbeddingInfo, Result, Store, StoreError, StoreReader, StoreWriter};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher};

use crate::ann::{AnnSlot, LazyAnn};
use crate::error::{backend, guard, poisoned, tantivy_err};
use crate::integrity::{CHECKSUMS_FILE, Checksums, damaged};
use crate::lock::WriterLock;
use crate::manifest::{MANIFEST_FILE, Manifest, sync_dir};
use crate::rows::{
    CachedRows, RowFormat, RowReader, RowWriter, RowsVerified, VECTORS_DIR, VectorCodes,
};
use crate::schema::Fields;
use crate::snapshot::Snapshot;
use crate::tokenizer::{CODE_TOKENIZER, code_analyzer};
use crate::writer::EmbeddedWriter;

pub(crate) const LEXICAL_DIR: &str = "lexical";
/// Memory given to tantivy's writer (split across its threads).
const WRITER_MEMORY: usize = 128 << 20;

/// An index directory on the local disk (see the crate docs for its layout).
pub struct EmbeddedStore {
    dir: PathBuf,
    manifest: Manifest,
    index: Index,
    fields: Fields,
    reader: IndexReader,
    /// The last snapshot handed out, reused while nothing was committed.
    cached: Mutex<Option<Arc<Snapshot>>>,
    /// Per-segment columns, kept across snapshots: a commit builds those of its new segments
    /// only ([`crate::filter::SegCols`]).
    seg_cache: Arc<crate::filter::SegColsCache>,
    /// What the last writer of this process knew of the row files ([`crate::rows::CachedRows`]).
    writer_cache: Arc<Mutex<Option<CachedRows>>>,
    /// The approximate index, loaded once per file.
    ann: AnnSlot,
    /// Threads for tantivy's writer.
    threads: usize,
    /// Rows from which the approximate index is built, and filtered candidates above which a
    /// search uses it ([`EmbeddedStore::set_ann_min_rows`]).
    ann_min_rows: u32,
    /// What this process has verified already ([`crate::integrity`]).
    verified: Mutex<Verified>,
    /// A writer dropped while its merge runs, kept until the merge ends ([`crate::merge`]).
    parking: Arc<crate::merge::Parking>,
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // A merge still running ends before the store does (a command-line run included).
        self.finish_merges();
    }
}

/// Files and blocks whose checksums this process has verified (they never change).
#[derive(Default)]
struct Verified {
    /// tantivy files, relative to `lexical/`.
    lexical: HashSet<PathBuf>,
    /// Of the rows file.
    rows: RowsVerified,
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
        let index = guard(dir, None, "opening the lexical index", || {
            Index::open_in_dir(&lexical).map_err(|e| StoreError::Damaged {
                path: lexical.clone(),
                reason: format!("the lexical index cannot be opened: {e}"),
            })
        })?;
        index.tokenizers().register(CODE_TOKENIZER, code_analyzer());
        let fields = Fields::from_schema(&index.schema(), dir)?;
        // Every segment file is checked before tantivy parses it.
        let mut verified = Verified::default();
        verify_lexical(&index, dir, &mut verified.lexical)?;
        let reader = guard(dir, Some(&index), "opening the lexical index", || {
            open_reader(&index, dir)
        })?;
        Ok(EmbeddedStore {
            dir: dir.to_path_buf(),
            manifest,
            index,
            fields,
            reader,
            cached: Mutex::new(None),
            seg_cache: Arc::default(),
            writer_cache: Arc::default(),
            ann: AnnSlot::default(),
            threads: 1,
            ann_min_rows: crate::ann::min_rows_from_env(),
            verified: Mutex::new(verified),
            parking: Default::default(),
        })
    }

    /// Opens the index at `dir`, creating an empty one holding vectors of `embedding` (or none)
    /// when `dir` is missing or an empty directory. A non-empty directory that is not an index
    /// is refused and left untouched. The caller compares [`Store::embedding`] of an existing
    /// index with the model it means to write with.
    pub fn open_or_create(dir: &Path, embedding: Option<EmbeddingInfo>) -> Result<EmbeddedStore> {
        EmbeddedStore::open_or_create_with(dir, embedding, VectorCodes::default())
    }

    /// [`EmbeddedStore::open_or_create`], a new index coding its vectors with `codes` (an
    /// existing one keeps its own: [`Manifest::vector_codes`]).
    pub fn open_or_create_with(
        dir: &Path,
        embedding: Option<EmbeddingInfo>,
        codes: VectorCodes,
    ) -> Result<EmbeddedStore> {
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
        create(dir, embedding, codes)?;
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

    /// Rows from which the writer builds the approximate index, and filtered candidates above
    /// which a search uses it instead of an exact scan. Defaults to 20,000, or to
    /// `$GNN_CODER_ANN_MIN_ROWS` as it was when the store was opened (benchmarks measure the
    /// approximate index on smaller corpora with it); queries never read the environment.
    /// Snapshots taken before the call keep the value they were taken with.
    pub fn set_ann_min_rows(&mut self, rows: u32) {
        self.ann_min_rows = rows;
        if let Ok(cached) = self.cached.get_mut() {
            *cached = None;
        }
    }

    /// The current [`EmbeddedStore::set_ann_min_rows`] value.
    pub fn ann_min_rows(&self) -> u32 {
        self.ann_min_rows
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The concrete snapshot type (the trait's [`Store::reader`] returns it as a trait object).
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        // Nothing committed since the cached snapshot (tantivy replaces meta.json atomically at
        // every commit, of any process) and no newer approximate index: hand it out again. A
        // reload opens every segment anew, so doing it per query cost more than the query.
        // The bytes are read before the reload, so a commit racing it only makes the next call
        // reload once more.
        let meta = fs::read(self.dir.join(LEXICAL_DIR).join("meta.json")).ok();
        {
            let cached = self.cached.lock().map_err(|_| poisoned())?;
            if let (Some(s), Some(meta)) = (cached.as_ref(), &meta)
                && s.meta.as_deref() == Some(meta.as_slice())
                && self.ann_unchanged(s)
            {
                return Ok(s.clone());
            }
        }
        // Another process may have committed: reload, retrying while its garbage collection
        // races the read of the new segment list.
        {
            let mut verified = self.verified.lock().map_err(|_| poisoned())?;
            verify_lexical(&self.index, &self.dir, &mut verified.lexical)?;
        }
        let mut last = None;
        for _ in 0..5 {
            match guard(
                &self.dir,
                Some(&self.index),
                "reloading the lexical index",
                || Ok(self.reader.reload()),
            )? {
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
            && self.ann_unchanged(s)
        {
            return Ok(s.clone());
        }
        let rows = match self.manifest.row_format() {
            Some(format) => Some(Arc::new(self.open_rows(format, &searcher)?)),
            None => None,
        };
        let ann = LazyAnn::new(
            &self.dir,
            rows.as_ref().map(|r| r.count()),
            self.ann.clone(),
        );
        let snapshot = Arc::new(Snapshot {
            dir: self.dir.clone(),
            searcher,
            fields: self.fields,
            embedding: self.manifest.embedding.clone(),
            rows,
            ann,
            row_map: OnceLock::new(),
            candidate_counts: Default::default(),
            seg_cols: OnceLock::new(),
            seg_cache: self.seg_cache.clone(),
            exact_scan_max: u64::from(self.ann_min_rows),
            meta,
        });
        *cached = Some(snapshot.clone());
        Ok(snapshot)
    }

    /// The vector rows, verified against the last commit's checksums, and holding every row the
    /// snapshot's documents name.
    fn open_rows(&self, format: RowFormat, searcher: &Searcher) -> Result<RowReader> {
        let sums = Checksums::load(&self.dir)?;
        check_dim(&self.dir, sums.as_ref(), format.dim)?;
        let rows = {
            let mut verified = self.verified.lock().map_err(|_| poisoned())?;
            RowReader::open(&self.dir, format, sums.as_ref(), &mut verified.rows)?
        };
        let named = guard(
            &self.dir,
            Some(&self.index),
            "reading the row column",
            || max_named_row(&self.dir, searcher),
        )?;
        if named > rows.count() {
            return Err(damaged(
                &self.dir.join(VECTORS_DIR).join(format.file_name()),
                format!(
                    "it holds {} rows but the index names row {}",
                    rows.count(),
                    named - 1
                ),
            ));
        }
        Ok(rows)
    }

    /// Whether the approximate index `s` was taken with is still the newest one.
    fn ann_unchanged(&self, s: &Snapshot) -> bool {
        let Some(rows) = &s.rows else {
            return true;
        };
        crate::ann::newest(&self.dir, rows.count()).map(|(covered, _)| covered)
            == s.ann.file_covers()
    }
}

/// Verifies the footer checksum of every file of the committed segments not verified yet.
fn verify_lexical(index: &Index, dir: &Path, done: &mut HashSet<PathBuf>) -> Result<()> {
    let lexical = dir.join(LEXICAL_DIR);
    let metas = guard(dir, None, "reading the lexical index's meta.json", || {
        index.load_metas().map_err(|e| {
            damaged(
                &lexical.join("meta.json"),
                format!("it cannot be read: {e}"),
            )
        })
    })?;
    let mut files: Vec<PathBuf> = metas.list_segment_files().into_iter().collect();
    files.sort();
    for rel in files {
        if done.contains(&rel) {
            continue;
        }
        let path = lexical.join(&rel);
        // Components a segment does not have are listed too.
        if !path.exists() {
            continue;
        }
        match guard(dir, None, "verifying a checksum", || {
            Ok(index.directory().validate_checksum(&rel))
        })? {
            Ok(true) => {
                done.insert(rel);
            }
            Ok(false) => {
                return Err(damaged(&path, "it does not match its checksum"));
            }
            Err(tantivy::directory::error::OpenReadError::FileDoesNotExist(_)) => {}
            Err(e) => return Err(damaged(&path, e.to_string())),
        }
    }
    Ok(())
}

/// One past the highest vector row the documents of `searcher` name (0 when none).
pub(crate) fn max_named_row(dir: &Path, searcher: &Searcher) -> Result<u32> {
    let mut named = 0u64;
    for seg in searcher.segment_readers() {
        let col = seg.fast_fields().u64("row").map_err(backend)?;
        if col.values.num_vals() > 0 {
            named = named.max(col.max_value().saturating_add(1));
        }
    }
    u32::try_from(named).map_err(|_| StoreError::Damaged {
        path: dir.join(LEXICAL_DIR),
        reason: format!("a document names vector row {}", named - 1),
    })
}

/// The checksums record and the manifest agree on the vectors' dimension.
fn check_dim(dir: &Path, sums: Option<&Checksums>, dim: usize) -> Result<()> {
    match sums {
        Some(s) if s.dim != Some(dim) && !(s.dim.is_none() && s.rows == 0) => Err(damaged(
            &dir.join(CHECKSUMS_FILE),
            format!("it records dimension {:?}, the manifest {dim}", s.dim),
        )),
        _ => Ok(()),
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
fn create(dir: &Path, embedding: Option<EmbeddingInfo>, codes: VectorCodes) -> Result<()> {
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
            RowWriter::open(&tmp, RowFormat::new(e.dim, codes), None, 0)?;
        }
        Manifest::new(embedding.clone(), codes).store(&tmp)?;
        Checksums::new(&tmp, embedding.as_ref().map(|e| e.dim))?.store(&tmp)?;
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

    /// The key map of the vector rows (a million keys: about 150 ms), left where the first
    /// writer takes it ([`CachedRows::read`]).
    fn prepare_writes(&self) -> Result<()> {
        if self.manifest.embedding.is_none()
            || self.writer_cache.lock().map_err(|_| poisoned())?.is_some()
        {
            return Ok(());
        }
        let Some(sums) = Checksums::load(&self.dir)? else {
            return Ok(());
        };
        let cached = CachedRows::read(&self.dir, &sums)?;
        let mut slot = self.writer_cache.lock().map_err(|_| poisoned())?;
        if slot.is_none() {
            *slot = Some(cached);
        }
        Ok(())
    }
}

impl EmbeddedStore {
    /// Waits for the merge of a writer of this store that was dropped while merging, and
    /// releases that writer's lock. Commits never wait for their merges ([`crate::merge`]);
    /// this is for callers that need the merged state, and for dropping the store.
    pub fn finish_merges(&self) {
        self.parking.finish();
    }

    /// The concrete writer.
    pub fn embedded_writer(&self) -> Result<EmbeddedWriter> {
        // The writer merges segments: every one it may read is verified first.
        {
            let mut verified = self.verified.lock().map_err(|_| poisoned())?;
            verify_lexical(&self.index, &self.dir, &mut verified.lexical)?;
        }
        // A writer of this store still merging is taken back, lock and merge included.
        let (writer, lock, merge) = match self.parking.take() {
            Some(p) => (p.writer, p.lock, Some(p.merge)),
            None => {
                let lock = WriterLock::acquire(&self.dir)?;
                (self.open_index_writer()?, lock, None)
            }
        };
        let sums = Checksums::load(&self.dir)?;
        let format = self.manifest.row_format();
        let dim = format.map(|f| f.dim);
        let rows = match format {
            Some(format) => {
                check_dim(&self.dir, sums.as_ref(), format.dim)?;
                // The last commit's segments (the store's snapshot, reused when current: a
                // reader of its own opened every segment again for each writer).
                let snapshot = self.snapshot()?;
                let named = guard(
                    &self.dir,
                    Some(&self.index),
                    "reading the row column",
                    || max_named_row(&self.dir, &snapshot.searcher),
                )?;
                let cached = self.writer_cache.lock().map_err(|_| poisoned())?.take();
                let mut verified = self.verified.lock().map_err(|_| poisoned())?;
                Some(RowWriter::open_with(
                    &self.dir,
                    format,
                    sums.as_ref(),
                    named,
                    cached,
                    &mut verified.rows,
                )?)
            }
            None => None,
        };
        let base = match &sums {
            Some(s) => s.clone(),
            None => Checksums::new(&self.dir, dim)?,
        };
        Ok(EmbeddedWriter {
            sums_base: base,
            sums_written: sums,
            ann_checked: None,
            cache: self.writer_cache.clone(),
            dir: self.dir.clone(),
            fields: self.fields,
            rows_format: format,
            writer: Some(writer),
            rows,
            ann_min_rows: self.ann_min_rows,
            merge,
            parking: self.parking.clone(),
            lock: Some(lock),
        })
    }

    /// tantivy's writer for a new [`EmbeddedWriter`] (the caller holds the lock).
    fn open_index_writer(&self) -> Result<IndexWriter> {
        let threads = self.threads;
        guard(&self.dir, Some(&self.index), "opening the writer", || {
            let writer: IndexWriter = self
                .index
                .writer_with_num_threads(threads, WRITER_MEMORY.max(threads * (20 << 20)))
                .map_err(tantivy_err(&self.dir))?;
            // Merges are the writer's own, chosen at commit and run in the background
            // ([`crate::merge`]): tantivy's policy merged behind writers that were dropped
            // (one per update) before their merges ended, and segments piled up.
            writer.set_merge_policy(Box::new(tantivy::indexer::NoMergePolicy));
            // A writer killed mid-commit leaves files no commit names (a delete bitset, a
            // segment); their names would collide with the ones this writer is about to write.
            writer
                .garbage_collect_files()
                .wait()
                .map_err(tantivy_err(&self.dir))?;
            Ok(writer)
        })
    }
}
