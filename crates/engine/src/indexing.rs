//! Indexing and refreshing one repository (see the crate docs for the data flow).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use globset::{Glob, GlobSetBuilder};
use gnn_coder_model::UnitInput;
use gnn_coder_store::{
    CancellationToken, EmbeddingInfo, FileEntry, FileWrite, RepoInfo, UnitKey, UnitRecord,
    UnitWrite,
};
use gnn_coder_syntax::{
    Language, ParsedFile, RepoRoot, SkipReason, WalkHooks, WalkOptions, WalkSummary, encode_path,
    encode_rel_path, walk_repo_with, walk_root_with,
};
use serde::Serialize;
use sha2::Digest;

use crate::writer::WriterLease;
use crate::{Engine, EngineError, LoadedModel, Result};

/// What to index and how.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    pub root: PathBuf,
    /// Repository name (default: the root directory's name).
    pub name: Option<String>,
    /// Files larger than this are skipped.
    pub max_file_size: u64,
    /// Only these languages (empty: all).
    pub languages: Vec<String>,
    /// Globs of paths to skip.
    pub exclude: Vec<String>,
    pub respect_ignore_files: bool,
    /// Commit after this many changed files (and at the end).
    pub commit_every: usize,
}

impl IndexOptions {
    pub fn new(root: impl Into<PathBuf>) -> IndexOptions {
        IndexOptions {
            root: root.into(),
            name: None,
            max_file_size: 1 << 20,
            languages: Vec::new(),
            exclude: Vec::new(),
            respect_ignore_files: true,
            commit_every: 1000,
        }
    }

    /// With a repository name.
    pub fn named(mut self, name: impl Into<String>) -> IndexOptions {
        self.name = Some(name.into());
        self
    }

    /// Checks every option without writing anything, so a front end can refuse a bad request
    /// before it opens (or creates) an index: the root exists ([`EngineError::NotFound`]
    /// otherwise) and is a directory, resolved once to its canonical path and held open there
    /// ([`RepoRoot`]: the run reads every file through that handle, so nothing done to the
    /// path afterwards can make it read elsewhere); the repository
    /// name (given, or the root directory's name) is 1 to 200 printable characters; the
    /// languages are known; the exclude globs compile;
    /// `commit_every` and `max_file_size` are at least 1. Messages are those of
    /// [`Engine::index_repository`], which runs this on unchecked options.
    pub fn validate(&self) -> Result<ValidIndexOptions> {
        let root = resolve_root(&self.root)?;
        let name = match &self.name {
            Some(n) => n.clone(),
            None => root
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".to_string()),
        };
        check_repo_name(&name)?;
        for lang in &self.languages {
            Language::by_name(lang)
                .map_err(|_| EngineError::InvalidArgument(format!("unknown language {lang:?}")))?;
        }
        check_excludes(&self.exclude)?;
        if self.commit_every == 0 {
            return Err(EngineError::InvalidArgument(
                "commit_every must be at least 1".into(),
            ));
        }
        if self.max_file_size == 0 {
            return Err(EngineError::InvalidArgument(
                "max_file_size must be at least 1 byte".into(),
            ));
        }
        Ok(ValidIndexOptions {
            root_str: encode_path(root.path()).into_owned(),
            root,
            name,
            options: self.clone(),
        })
    }
}

/// An index root that exists and is a directory, resolved once to its canonical path and
/// opened there without following links.
fn resolve_root(root: &Path) -> Result<RepoRoot> {
    if !root.is_dir() {
        return Err(if root.exists() {
            EngineError::InvalidArgument(format!("{} is not a directory", root.display()))
        } else {
            EngineError::NotFound(format!(
                "{} is not a directory (it does not exist)",
                root.display()
            ))
        });
    }
    RepoRoot::resolve(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::NotFound(format!(
            "{} is not a directory (it does not exist): {e}",
            root.display()
        )),
        _ => EngineError::InvalidArgument(format!("cannot open {}: {e}", root.display())),
    })
}

/// Refuses the first exclude glob that does not compile, by name. (The walk compiles them
/// into its own matcher, together with the glob that keeps an index inside the root out.)
fn check_excludes(globs: &[String]) -> Result<()> {
    let mut set = GlobSetBuilder::new();
    for glob in globs {
        set.add(Glob::new(glob).map_err(|e| {
            EngineError::InvalidArgument(format!("bad exclude glob {glob:?}: {}", e.kind()))
        })?);
    }
    set.build()
        .map(|_| ())
        .map_err(|e| EngineError::InvalidArgument(format!("bad exclude globs: {e}")))
}

/// [`IndexOptions`] that passed [`IndexOptions::validate`] (the only way to make one), so an
/// index run never checks or resolves them again: the root is held open ([`RepoRoot`]).
#[derive(Debug, Clone)]
pub struct ValidIndexOptions {
    options: IndexOptions,
    root: RepoRoot,
    root_str: String,
    name: String,
}

impl ValidIndexOptions {
    /// The options as given.
    pub fn options(&self) -> &IndexOptions {
        &self.options
    }

    /// The root, canonical: the path its handle was opened from (the repository record holds
    /// its exact text). A policy check of the root must check this path, not resolve the
    /// given one again.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The held root every file of the run is read through.
    pub fn repo_root(&self) -> &RepoRoot {
        &self.root
    }

    /// The repository name: the one given, or the root directory's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What [`Engine::index_repository`] takes: [`IndexOptions`], validated there (once), or
/// [`ValidIndexOptions`] a front end validated before opening the index.
pub trait IndexInput {
    /// The validated options.
    fn validated(&self) -> Result<Cow<'_, ValidIndexOptions>>;
}

impl IndexInput for IndexOptions {
    fn validated(&self) -> Result<Cow<'_, ValidIndexOptions>> {
        self.validate().map(Cow::Owned)
    }
}

impl IndexInput for ValidIndexOptions {
    fn validated(&self) -> Result<Cow<'_, ValidIndexOptions>> {
        Ok(Cow::Borrowed(self))
    }
}

/// Counters of a run in progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndexProgress {
    /// Files selected for reading (known once discovery is done).
    pub files_total: u64,
    /// Files read so far (parsed, unchanged or skipped).
    pub files_done: u64,
    /// Files found unchanged (not parsed).
    pub files_unchanged: u64,
    /// Units parsed from changed files so far.
    pub units: u64,
    /// Units written to the index so far.
    pub units_written: u64,
    /// Embeddings computed / taken from the cache so far.
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    pub bytes: u64,
}

/// What a run reports while it works.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IndexEvent {
    Progress(IndexProgress),
    /// A file was not indexed (binary, too large, parse failure, ...).
    Skipped {
        path: String,
        reason: String,
        detail: Option<String>,
    },
    /// Everything written so far is committed (searchable, and kept if the run dies).
    Committed {
        files: u64,
    },
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IndexSummary {
    pub repository: String,
    pub root: String,
    pub head: Option<String>,
    /// Files and units of the repository after the run.
    pub files: u64,
    pub units: u64,
    pub files_added: u64,
    pub files_changed: u64,
    pub files_removed: u64,
    pub files_unchanged: u64,
    /// Units written (of added and changed files) and removed (of changed and removed files).
    pub units_written: u64,
    pub units_removed: u64,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    /// Source bytes of the repository's indexed files, and of those parsed in this run.
    pub bytes: u64,
    pub bytes_parsed: u64,
    pub files_with_syntax_errors: u64,
    /// Skipped files by reason.
    pub skipped: BTreeMap<String, u64>,
    pub seconds: f64,
    pub embed_seconds: f64,
    /// The model of the vectors; `None` for a lexical-only index.
    pub embedding: Option<EmbeddingInfo>,
}

/// Units per embedding batch and per worker chunk: large enough for good length bucketing,
/// small enough for lively progress.
pub const CHUNK_UNITS: usize = 256;

/// Files per write batch at most (fewer when `commit_every` asks for an earlier commit).
const BATCH_FILES: usize = 256;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The content hash recorded per file.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes)[..16])
}

/// The embedding key of a unit: model identity, language and text.
pub(crate) fn unit_key(model: &str, language: &str, code: &str) -> UnitKey {
    let mut h = sha2::Sha256::new();
    h.update(model.as_bytes());
    h.update([0]);
    h.update(language.as_bytes());
    h.update([0]);
    h.update(code.as_bytes());
    let d = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&d[..16]);
    UnitKey(key)
}

/// The stored record of a parsed unit, as an index run writes it.
pub fn unit_record(unit: &gnn_coder_syntax::CodeUnit) -> UnitRecord {
    UnitRecord {
        path: unit.path.clone(),
        language: unit.language.clone(),
        kind: unit.kind.as_str().to_string(),
        name: unit.name.clone(),
        symbol: unit.symbol.clone(),
        start_line: unit.start_line as u64,
        end_line: unit.end_line as u64,
        def_line: unit.def_line as u64,
        start_byte: unit.start_byte as u64,
        end_byte: unit.end_byte as u64,
        doc: unit.doc.clone(),
        code: unit.code.clone(),
    }
}

/// Checks a repository name: printable, not empty, at most 200 bytes.
pub(crate) fn check_repo_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(EngineError::InvalidArgument(format!(
            "bad repository name {name:?} (1 to 200 printable characters)"
        )));
    }
    Ok(())
}

/// `inner` relative to `root`, `/`-separated, when it lies inside it.
fn relative_inside(root: &Path, inner: &Path) -> Option<String> {
    let parent = inner.parent()?.canonicalize().ok()?;
    let inner = parent.join(inner.file_name()?);
    let rel = encode_rel_path(inner.strip_prefix(root).ok()?);
    (!rel.is_empty()).then_some(rel)
}

/// Embeds code units `(code, graph, language)` as an index run does: chunks of
/// [`CHUNK_UNITS`], one worker per core, each running the model on one thread (no
/// synchronization inside a batch); rows come back in input order. `progress` gets the number
/// of units of each finished model batch (a few dozen units), and `cancel` is checked there
/// too: a cancel stops every worker before its next model batch, so a cancelled run embeds
/// at most one batch per worker after it, and returns [`EngineError::Cancelled`].
pub fn embed_units(
    embedder: &gnn_coder_model::Embedder,
    units: &[(&str, Option<&gnn_coder_syntax::AstGraph>, &str)],
    cancel: &CancellationToken,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Vec<Vec<f32>>> {
    let chunks: Vec<_> = units.chunks(CHUNK_UNITS).collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Vec<Vec<f32>>>>> = Mutex::new(vec![None; chunks.len()]);
    let failure: Mutex<Option<EngineError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if cancel.is_cancelled() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(i) else { break };
                    let inputs: Vec<UnitInput> = chunk
                        .iter()
                        .map(|(code, graph, lang)| UnitInput::new(code, *graph, lang))
                        .collect();
                    let after_batch = |n: usize| {
                        progress(n);
                        !cancel.is_cancelled()
                    };
                    match embedder.embed_units_until(&inputs, 1, &after_batch) {
                        Ok(rows) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(rows);
                            }
                        }
                        // Cancelled between two model batches: `cancel.check` below says so.
                        Err(gnn_coder_model::ModelError::Stopped) => break,
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e.into());
                            }
                            next.store(chunks.len(), Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    cancel.check()?;
    let results = results
        .into_inner()
        .map_err(|_| EngineError::Internal("an embedding worker panicked".into()))?;
    let mut rows = Vec::with_capacity(units.len());
    for chunk in results {
        rows.extend(
            chunk
                .ok_or_else(|| EngineError::Internal("an embedding worker stopped early".into()))?,
        );
    }
    if rows.len() != units.len() {
        return Err(EngineError::Internal(
            "the model returned the wrong number of vectors".into(),
        ));
    }
    Ok(rows)
}

/// The walk an index run makes for `options`.
fn walk_options(options: &IndexOptions, threads: usize) -> WalkOptions {
    WalkOptions {
        max_file_size: options.max_file_size,
        respect_ignore_files: options.respect_ignore_files,
        languages: options.languages.clone(),
        exclude_globs: options.exclude.clone(),
        threads,
        ..WalkOptions::default()
    }
}

/// Every unit `index_repository` would index under `options.root` (with its AST graph when
/// `graphs`), sorted by path and position, without writing anything: for evaluation tools that
/// must see exactly the product's candidates.
pub fn collect_units(
    options: &IndexOptions,
    graphs: bool,
    threads: usize,
) -> Result<
    Vec<(
        gnn_coder_syntax::CodeUnit,
        Option<gnn_coder_syntax::AstGraph>,
    )>,
> {
    let mut walk = walk_options(options, crate::threads(threads));
    walk.extract.graphs = graphs;
    let found = Mutex::new(Vec::new());
    walk_repo_with(&options.root, &walk, &WalkHooks::default(), &|file| {
        let mut g = file.graphs.into_iter();
        let units: Vec<_> = file.units.into_iter().map(|u| (u, g.next())).collect();
        if let Ok(mut f) = found.lock() {
            f.extend(units);
        }
    })?;
    let mut units = found
        .into_inner()
        .map_err(|_| EngineError::Internal("a walker thread panicked".into()))?;
    units.sort_by(|a, b| (&a.0.path, a.0.start_byte).cmp(&(&b.0.path, b.0.start_byte)));
    Ok(units)
}

/// Shared counters of a run.
#[derive(Default)]
pub(crate) struct Counters {
    files_total: AtomicU64,
    files_done: AtomicU64,
    files_unchanged: AtomicU64,
    units: AtomicU64,
    units_written: AtomicU64,
    embeddings_computed: AtomicU64,
    embeddings_reused: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> IndexProgress {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IndexProgress {
            files_total: g(&self.files_total),
            files_done: g(&self.files_done),
            files_unchanged: g(&self.files_unchanged),
            units: g(&self.units),
            units_written: g(&self.units_written),
            embeddings_computed: g(&self.embeddings_computed),
            embeddings_reused: g(&self.embeddings_reused),
            bytes: g(&self.bytes),
        }
    }
}

/// A unit as [`embed_units`] takes it: code, AST graph, language.
type EmbedInput<'a> = (&'a str, Option<&'a gnn_coder_syntax::AstGraph>, &'a str);

/// State of the batch loop.
pub(crate) struct Batcher<'a> {
    pub(crate) writer: &'a WriterLease<'a>,
    pub(crate) repository: String,
    pub(crate) model: Option<&'a LoadedModel>,
    pub(crate) model_id: String,
    pub(crate) counters: &'a Counters,
    pub(crate) on_event: &'a (dyn Fn(&IndexEvent) + Sync),
    pub(crate) cancel: &'a CancellationToken,
    pub(crate) commit_every: usize,
    pub(crate) since_commit: usize,
    /// Paths written, with their unit counts.
    pub(crate) written: HashMap<String, u64>,
    pub(crate) embed_seconds: f64,
    pub(crate) syntax_errors: u64,
}

impl Batcher<'_> {
    /// Gathers the parsed files of a walk into batches and writes each with [`Batcher::flush`].
    /// It owns the receiver, so a failure drops it and unblocks the walk's pending sends.
    fn consume(&mut self, rx: mpsc::Receiver<ParsedFile>) -> Result<()> {
        // Several chunks per worker per batch, so one slow chunk does not idle the other cores.
        let batch_units = CHUNK_UNITS * crate::threads(0) * 4;
        let mut batch = Vec::new();
        let mut units = 0;
        for file in rx.iter() {
            self.cancel.check()?;
            units += file.units.len();
            batch.push(file);
            // A batch ends at its size bounds, or where the requested commit cadence falls:
            // `commit_every` below one batch is honoured, not rounded up to a batch.
            let commit_due = self.since_commit + batch.len() >= self.commit_every;
            if units >= batch_units || batch.len() >= BATCH_FILES || commit_due {
                self.flush(&mut batch)?;
                units = 0;
            }
        }
        self.flush(&mut batch)
    }

    /// Writes one batch of parsed files, each with the content hash it carries: vectors for
    /// its units (cached, or embedded), the files upserted whole, a commit when
    /// `commit_every` files have been written since the last one.
    pub(crate) fn flush(&mut self, batch: &mut Vec<ParsedFile>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.cancel.check()?;
        let files = std::mem::take(batch);
        let keys: Vec<Vec<UnitKey>> = files
            .iter()
            .map(|f| {
                f.units
                    .iter()
                    .map(|u| unit_key(&self.model_id, &u.language, &u.code))
                    .collect()
            })
            .collect();
        let mut vectors = self.vectors(&files, &keys)?;
        self.cancel.check()?;
        let writes = self.file_writes(files, keys, &mut vectors);
        let nfiles = writes.len();
        // A key embedded once in this batch serves its duplicates through the store's cache.
        let repository = &self.repository;
        self.writer.with(|w| w.upsert_files(repository, writes))?;
        self.since_commit += nfiles;
        if self.since_commit >= self.commit_every {
            self.commit()?;
        }
        (self.on_event)(&IndexEvent::Progress(self.counters.snapshot()));
        Ok(())
    }

    /// The vectors a batch needs that the store does not hold, each key embedded once (none
    /// for a lexical-only index).
    fn vectors(
        &mut self,
        files: &[ParsedFile],
        keys: &[Vec<UnitKey>],
    ) -> Result<HashMap<UnitKey, Vec<f32>>> {
        let Some(model) = self.model else {
            return Ok(HashMap::new());
        };
        let flat: Vec<UnitKey> = keys.iter().flatten().copied().collect();
        let known = self.writer.with(|w| w.known_keys(&flat))?;
        let mut misses: Vec<(UnitKey, EmbedInput<'_>)> = Vec::new();
        let mut seen: HashSet<UnitKey> = HashSet::new();
        let units = files.iter().flat_map(|f| {
            f.units
                .iter()
                .enumerate()
                .map(move |(u, unit)| (f, u, unit))
        });
        for (i, (f, u, unit)) in units.enumerate() {
            let key = flat[i];
            if !known[i] && seen.insert(key) {
                let graph = f.graphs.get(u);
                misses.push((key, (unit.code.as_str(), graph, unit.language.as_str())));
            }
        }
        let reused = flat.len() - misses.len();
        self.counters
            .embeddings_reused
            .fetch_add(reused as u64, Ordering::Relaxed);
        if misses.is_empty() {
            return Ok(HashMap::new());
        }
        let started = Instant::now();
        let inputs: Vec<_> = misses.iter().map(|(_, x)| *x).collect();
        let (counters, on_event) = (self.counters, self.on_event);
        let rows = embed_units(&model.embedder, &inputs, self.cancel, &|n| {
            counters
                .embeddings_computed
                .fetch_add(n as u64, Ordering::Relaxed);
            on_event(&IndexEvent::Progress(counters.snapshot()));
        })?;
        self.embed_seconds += started.elapsed().as_secs_f64();
        Ok(misses.into_iter().map(|(k, _)| k).zip(rows).collect())
    }

    /// The store writes of a batch, vectors taken from `vectors`; counts the units written,
    /// the files with syntax errors and the paths written.
    fn file_writes(
        &mut self,
        files: Vec<ParsedFile>,
        keys: Vec<Vec<UnitKey>>,
        vectors: &mut HashMap<UnitKey, Vec<f32>>,
    ) -> Vec<FileWrite> {
        let mut writes = Vec::with_capacity(files.len());
        for (f, keys) in files.into_iter().zip(keys) {
            let units: Vec<UnitWrite> = f
                .units
                .iter()
                .zip(keys)
                .map(|(u, key)| UnitWrite {
                    record: unit_record(u),
                    key,
                    vector: vectors.remove(&key),
                })
                .collect();
            if f.has_syntax_errors {
                self.syntax_errors += 1;
            }
            self.written.insert(f.path.clone(), units.len() as u64);
            self.counters
                .units_written
                .fetch_add(units.len() as u64, Ordering::Relaxed);
            writes.push(FileWrite {
                file: FileEntry {
                    path: f.path,
                    hash: f.content_hash,
                    units: units.len() as u32,
                    bytes: f.bytes as u64,
                },
                units,
            });
        }
        writes
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        let cancel = self.cancel;
        self.writer.with(|w| w.commit(cancel))?;
        self.since_commit = 0;
        (self.on_event)(&IndexEvent::Committed {
            files: self.written.len() as u64,
        });
        Ok(())
    }
}

/// The repository's state before a run.
struct Previous {
    /// Its record (`None`: not indexed yet).
    repo: Option<RepoInfo>,
    /// Its files by path.
    files: HashMap<String, FileEntry>,
}

/// What the walk and the writes of a run came to.
struct Walked {
    /// Files whose hash matched the previous state (not parsed).
    unchanged: HashSet<String>,
    /// Files written, with their unit counts.
    written: HashMap<String, u64>,
    /// Files indexed before and neither unchanged nor written now (deleted from the index).
    removed: Vec<String>,
    bytes_parsed: u64,
    /// Skipped files by reason.
    skipped: BTreeMap<String, u64>,
}

/// Walks and parses the root on the walk's thread pool while this thread batches, embeds and
/// writes what comes out of it ([`Batcher::consume`]). Files whose content hash matches `old`
/// are not parsed and come back as unchanged; the others carry their hash through the channel.
/// A failed write stops the walk; a cancel stops both.
fn walk_and_write(
    root: &RepoRoot,
    walk: &WalkOptions,
    old: &HashMap<String, FileEntry>,
    batcher: &mut Batcher<'_>,
) -> Result<(WalkSummary, HashSet<String>)> {
    let (counters, on_event, cancel) = (batcher.counters, batcher.on_event, batcher.cancel);
    let unchanged: Mutex<HashSet<String>> = Mutex::new(HashSet::new());
    let stop = cancel.child_token();
    let progress = |p: gnn_coder_syntax::Progress| {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&counters.files_total, p.files_total as u64);
        set(&counters.files_done, p.files_done as u64);
        set(&counters.bytes, p.bytes_done);
        set(&counters.units, p.units_done as u64);
        on_event(&IndexEvent::Progress(counters.snapshot()));
    };
    let parse_file = |rel: &str, bytes: &[u8]| {
        let hash = content_hash(bytes);
        if old.get(rel).is_none_or(|e| e.hash != hash) {
            return Some(hash);
        }
        counters.files_unchanged.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut u) = unchanged.lock() {
            u.insert(rel.to_string());
        }
        None
    };
    let cancelled = || stop.is_cancelled();
    let hooks = WalkHooks {
        progress: &progress,
        parse_file: &parse_file,
        cancelled: &cancelled,
    };
    let (walked, consumed) = std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<ParsedFile>(64);
        let walker = scope.spawn(|| {
            let tx = tx;
            walk_root_with(root, walk, &hooks, &|f| {
                let _ = tx.send(f);
            })
        });
        let consumed = batcher.consume(rx);
        if consumed.is_err() {
            stop.cancel();
        }
        let walked = walker
            .join()
            .map_err(|_| EngineError::Internal("the walker panicked".into()));
        (walked, consumed)
    });
    consumed?;
    let walked = walked??;
    cancel.check()?;
    if walked.cancelled {
        return Err(EngineError::Cancelled);
    }
    let unchanged = unchanged
        .into_inner()
        .map_err(|_| EngineError::Internal("a walker thread panicked".into()))?;
    Ok((walked, unchanged))
}

/// Reports the walk's skipped files (except excluded directories) as events; their counts by
/// reason.
fn report_skips(
    walked: &WalkSummary,
    on_event: &(dyn Fn(&IndexEvent) + Sync),
) -> BTreeMap<String, u64> {
    let mut skipped = BTreeMap::new();
    for (reason, n) in &walked.skip_counts {
        if *reason != SkipReason::ExcludedDir {
            skipped.insert(reason.as_str().to_string(), *n as u64);
        }
    }
    for s in &walked.skipped {
        if s.reason == SkipReason::ExcludedDir {
            continue;
        }
        on_event(&IndexEvent::Skipped {
            path: s.path.clone(),
            reason: s.reason.as_str().to_string(),
            detail: s.detail.clone(),
        });
    }
    skipped
}

/// The summary of a run: the repository's files, units and bytes after it (unchanged files
/// as they were, written files as written) and what changed; `seconds` is left to the caller.
fn summarize(
    options: &ValidIndexOptions,
    old: &HashMap<String, FileEntry>,
    walked: &Walked,
    batcher: &Batcher<'_>,
) -> IndexSummary {
    let mut summary = IndexSummary {
        repository: options.name.clone(),
        root: options.root_str.clone(),
        ..IndexSummary::default()
    };
    let mut units_total = 0;
    let mut bytes_total = walked.bytes_parsed;
    for e in walked.unchanged.iter().filter_map(|p| old.get(p)) {
        units_total += u64::from(e.units);
        bytes_total += e.bytes;
    }
    for (p, n) in &walked.written {
        units_total += n;
        match old.get(p) {
            Some(e) => {
                summary.files_changed += 1;
                summary.units_removed += u64::from(e.units);
            }
            None => summary.files_added += 1,
        }
    }
    for e in walked.removed.iter().filter_map(|p| old.get(p)) {
        summary.units_removed += u64::from(e.units);
    }
    let c = batcher.counters.snapshot();
    summary.files = (walked.unchanged.len() + walked.written.len()) as u64;
    summary.units = units_total;
    summary.files_removed = walked.removed.len() as u64;
    summary.files_unchanged = walked.unchanged.len() as u64;
    summary.units_written = c.units_written;
    summary.embeddings_computed = c.embeddings_computed;
    summary.embeddings_reused = c.embeddings_reused;
    summary.bytes_parsed = walked.bytes_parsed;
    summary.bytes = bytes_total;
    summary.files_with_syntax_errors = batcher.syntax_errors;
    summary.skipped = walked.skipped.clone();
    summary.embed_seconds = batcher.embed_seconds;
    summary
}

impl Engine {
    /// Indexes or refreshes one repository: unchanged files are not parsed, removed files'
    /// units are deleted, unchanged unit texts keep their vectors. `options` are
    /// [`IndexOptions`] (validated here, once) or [`ValidIndexOptions`]. `on_event` is called
    /// from worker threads. Cancelling leaves the last commit (the run commits every
    /// [`IndexOptions::commit_every`] changed files) and returns [`EngineError::Cancelled`].
    ///
    /// The stages: validate → the previous state (`previous_state`) → list a new repository
    /// at once → walk + parse, and batch, embed, write (`walk_and_write`) → delete files gone
    /// (`delete_gone`) → summary (`summarize`) → repository record, commit, maintenance
    /// (`finish_run`).
    pub fn index_repository<O: IndexInput + ?Sized>(
        &self,
        options: &O,
        on_event: &(dyn Fn(&IndexEvent) + Sync),
        cancel: &CancellationToken,
    ) -> Result<IndexSummary> {
        let started = Instant::now();
        let options = options.validated()?;
        let _claim = self.claim_repository(&options.name)?;
        let (model, model_id) = self.write_model()?;
        let previous = self.previous_state(&options)?;
        let writer = self.lease_writer()?;
        let head = crate::git::head_commit(options.root());
        if previous.repo.is_none() {
            // Listed at once, so a run that dies early still shows in `repos`.
            writer.with(|w| {
                w.put_repository(&RepoInfo {
                    name: options.name.clone(),
                    root: options.root_str.clone(),
                    head: None,
                    ..RepoInfo::default()
                })
            })?;
        }
        let walk = self.run_walk_options(&options, model.as_deref());
        let counters = Counters::default();
        let mut batcher = Batcher {
            writer: &writer,
            repository: options.name.clone(),
            model: model.as_deref(),
            model_id,
            counters: &counters,
            on_event,
            cancel,
            commit_every: options.options.commit_every,
            since_commit: 0,
            written: HashMap::new(),
            embed_seconds: 0.0,
            syntax_errors: 0,
        };
        let (walk_summary, unchanged) =
            walk_and_write(&options.root, &walk, &previous.files, &mut batcher)?;
        let skipped = report_skips(&walk_summary, on_event);
        let written = std::mem::take(&mut batcher.written);
        let removed = self.delete_gone(
            &writer,
            &options.name,
            &previous.files,
            &unchanged,
            &written,
        )?;
        let walked = Walked {
            unchanged,
            written,
            removed,
            bytes_parsed: walk_summary.bytes_parsed,
            skipped,
        };
        let mut summary = summarize(&options, &previous.files, &walked, &batcher);
        summary.head = head;
        self.finish_run(&mut batcher, &mut summary)?;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }

    /// The repository's record and files before a run; a name already indexed from another
    /// root is refused.
    fn previous_state(&self, options: &ValidIndexOptions) -> Result<Previous> {
        let reader = self.store.reader()?;
        let repo = reader
            .repositories()?
            .into_iter()
            .find(|r| r.name == options.name);
        if let Some(p) = &repo
            && p.root != options.root_str
        {
            return Err(EngineError::InvalidArgument(format!(
                "a repository named {:?} is already indexed from {}; give this one another name",
                options.name, p.root
            )));
        }
        let files = reader
            .files(&options.name)?
            .into_iter()
            .map(|f| (f.path.clone(), f))
            .collect();
        Ok(Previous { repo, files })
    }

    /// The walk of a run: the options' filters, never the index itself (when it lives inside
    /// the root), AST graphs when the model uses them.
    fn run_walk_options(
        &self,
        options: &ValidIndexOptions,
        model: Option<&LoadedModel>,
    ) -> WalkOptions {
        let mut walk = walk_options(&options.options, crate::threads(self.options.threads));
        if let Some(rel) = relative_inside(options.root(), &self.dir) {
            walk.exclude_globs
                .push(format!("{}/**", globset::escape(&rel)));
        }
        walk.extract.graphs = model.is_some_and(|m| m.embedder.graphs_enabled());
        walk
    }

    /// Deletes the files indexed before that the walk neither found unchanged nor wrote (gone,
    /// or no longer indexable); returns their paths.
    fn delete_gone(
        &self,
        writer: &WriterLease<'_>,
        repository: &str,
        old: &HashMap<String, FileEntry>,
        unchanged: &HashSet<String>,
        written: &HashMap<String, u64>,
    ) -> Result<Vec<String>> {
        let removed: Vec<String> = old
            .keys()
            .filter(|p| !unchanged.contains(*p) && !written.contains_key(*p))
            .cloned()
            .collect();
        writer.with(|w| w.delete_files(repository, &removed))?;
        Ok(removed)
    }

    /// Ends a run: the repository record (counts, head, skips), the last commit, then
    /// maintenance of the approximate index (not part of the data: a cancel there keeps the
    /// commit). Sets the summary's embedding.
    fn finish_run(&self, batcher: &mut Batcher<'_>, summary: &mut IndexSummary) -> Result<()> {
        summary.embedding = self.store.embedding().cloned();
        let info = RepoInfo {
            name: summary.repository.clone(),
            root: summary.root.clone(),
            head: summary.head.clone(),
            indexed_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            files: summary.files,
            units: summary.units,
            bytes: summary.bytes,
            skipped: summary.skipped.clone(),
        };
        let writer = batcher.writer;
        writer.with(|w| w.put_repository(&info))?;
        batcher.commit()?;
        let cancel = batcher.cancel;
        match writer.with(|w| w.maintain(cancel)) {
            Ok(()) | Err(EngineError::Store(gnn_coder_store::StoreError::Cancelled)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
