//! Repository walking: file discovery with the `ignore` crate, filtering, parallel extraction.
//!
//! Discovery lists *names* (by path, with the `ignore` crate); every file is then read through
//! the walk's held [`RepoRoot`], relative to the root directory's handle, following no
//! symbolic link (see [`crate::root`]): a directory swapped for a link during the walk cannot
//! make the walk read outside the root. Symbolic links are never followed. Paths are reported
//! in their exact text form ([`crate::relpath`]), so names that are not UTF-8 stay distinct.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;

use crate::error::{Result, SyntaxError};
use crate::extract::{ExtractOptions, ParsedFile, extract_file};
use crate::language::Language;
use crate::relpath::{decode_rel_path, encode_os, encode_rel_path};
use crate::root::{ReadError, RepoRoot};

/// Directory names skipped by default: dependency caches, vendored code, build output.
/// (Python virtualenvs of any name are recognised by their `pyvenv.cfg`, see
/// [`WalkOptions::skip_virtualenvs`].)
pub const DEFAULT_EXCLUDED_DIRS: &[&str] = &[
    "node_modules",
    "bower_components",
    "jspm_packages",
    "vendor",
    "third_party",
    "third-party",
    "target",
    "dist",
    "build",
    "out",
    "__pycache__",
    ".venv",
    "venv",
    "site-packages",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".gradle",
    ".next",
    ".nuxt",
    "Pods",
    "DerivedData",
];

/// Options of [`walk_repo`].
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Files larger than this are skipped ([`SkipReason::TooLarge`]). Default 1 MiB.
    pub max_file_size: u64,
    /// Files whose average line length exceeds this are considered minified. Default 500.
    pub max_avg_line_len: usize,
    /// Respect `.gitignore`, `.ignore`, `.git/info/exclude` and the global gitignore. Default true.
    pub respect_ignore_files: bool,
    /// Skip hidden files and directories (`.git`, `.cache`, ...). Default true.
    pub skip_hidden: bool,
    /// Directory names never descended into. Default [`DEFAULT_EXCLUDED_DIRS`].
    pub excluded_dirs: Vec<String>,
    /// Skip Python virtualenvs of any name (directories containing `pyvenv.cfg`). Default true.
    pub skip_virtualenvs: bool,
    /// Extra glob patterns (matched against the `/`-separated relative path) to skip.
    pub exclude_globs: Vec<String>,
    /// Only these languages (registered names); empty = all.
    pub languages: Vec<String>,
    /// Skip files marked as generated (`Code generated ... DO NOT EDIT`, `@generated`). Default true.
    pub skip_generated: bool,
    /// Threads for parsing; 0 = all cores.
    pub threads: usize,
    /// Per-file extraction options.
    pub extract: ExtractOptions,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            max_file_size: 1 << 20,
            max_avg_line_len: 500,
            respect_ignore_files: true,
            skip_hidden: true,
            excluded_dirs: DEFAULT_EXCLUDED_DIRS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            skip_virtualenvs: true,
            exclude_globs: Vec::new(),
            languages: Vec::new(),
            skip_generated: true,
            threads: 0,
            extract: ExtractOptions::default(),
        }
    }
}

/// Why a file (or directory) was not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// A directory in `excluded_dirs` or a virtualenv (the directory itself is reported).
    ExcludedDir,
    /// Matched one of `exclude_globs`.
    ExcludedGlob,
    /// No registered language for the extension (or filtered out by `languages`). Counted only.
    UnsupportedLanguage,
    /// Larger than `max_file_size`.
    TooLarge,
    /// A NUL byte in the first 8 KiB.
    Binary,
    /// `.min.js`-style name or average line length above `max_avg_line_len`.
    Minified,
    /// Marked as generated code.
    Generated,
    /// Could not be read (permissions, vanished, a symbolic link, not a regular file, ...).
    Unreadable,
    /// tree-sitter could not produce a tree.
    ParseFailed,
    /// Beyond a bound on the work one file may cost: definitions nested too deep, too many
    /// units, or units holding too much text (see [`crate::MAX_UNIT_DEPTH`]).
    TooComplex,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::ExcludedDir => "excluded directory",
            SkipReason::ExcludedGlob => "excluded by glob",
            SkipReason::UnsupportedLanguage => "unsupported language",
            SkipReason::TooLarge => "too large",
            SkipReason::Binary => "binary",
            SkipReason::Minified => "minified",
            SkipReason::Generated => "generated",
            SkipReason::Unreadable => "unreadable",
            SkipReason::ParseFailed => "parse failed",
            SkipReason::TooComplex => "too complex",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One skipped path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// Relative, `/`-separated.
    pub path: String,
    pub reason: SkipReason,
    /// Details (the I/O error, the size, ...).
    pub detail: Option<String>,
}

/// Progress of a walk, reported after every file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files selected for parsing (known once discovery is done, before parsing starts).
    pub files_total: usize,
    /// Files finished (parsed or skipped while reading).
    pub files_done: usize,
    /// Source bytes parsed so far.
    pub bytes_done: u64,
    /// Units extracted so far.
    pub units_done: usize,
}

/// What a walk did.
#[derive(Debug, Clone, Default)]
pub struct WalkSummary {
    /// Files parsed (and handed to the sink).
    pub files_parsed: usize,
    /// Source bytes parsed.
    pub bytes_parsed: u64,
    /// Units extracted.
    pub units: usize,
    /// Files parsed whose tree has syntax errors.
    pub files_with_errors: usize,
    /// Count per reason (including [`SkipReason::UnsupportedLanguage`]).
    pub skip_counts: BTreeMap<SkipReason, usize>,
    /// Every skipped path except unsupported-language files, sorted by path; only paths that
    /// are in the walked tree when the walk ends (a name listed through a directory swapped
    /// for a link, or a file that vanished during the walk, is in `skip_counts` only).
    pub skipped: Vec<SkippedFile>,
    /// Files read but not parsed because [`WalkHooks::parse_file`] said so.
    pub files_unchanged: usize,
    /// The walk stopped early ([`WalkHooks::cancelled`]).
    pub cancelled: bool,
}

/// One parsed file as handed to the sink.
pub type FileResult = ParsedFile;

/// The exact text of `path` relative to `root` ([`crate::relpath`]).
fn rel_path(root: &Path, path: &Path) -> String {
    encode_rel_path(path.strip_prefix(root).unwrap_or(path))
}

fn build_globs(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        let g = Glob::new(p).map_err(|e| SyntaxError::Glob {
            pattern: p.clone(),
            message: e.to_string(),
        })?;
        b.add(g);
    }
    b.build().map_err(|e| SyntaxError::Glob {
        pattern: patterns.join(", "),
        message: e.to_string(),
    })
}

struct Candidate {
    /// Relative to the walk's [`RepoRoot`], the name's own bytes (what is opened).
    open: PathBuf,
    /// Relative to the walk's start, as text (what is reported).
    rel: String,
    lang: &'static Language,
}

/// Discovers the files to parse under `root` (the walk's start: the held root, or a file in
/// it); records skips. Only names: nothing is read here but ignore files.
fn discover(
    base: &RepoRoot,
    root: &Path,
    opts: &WalkOptions,
    skipped: &mut Vec<SkippedFile>,
    counts: &mut BTreeMap<SkipReason, usize>,
) -> Result<Vec<Candidate>> {
    let globs = build_globs(&opts.exclude_globs)?;
    for l in &opts.languages {
        Language::by_name(l)?;
    }
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .hidden(opts.skip_hidden)
        .follow_links(false)
        .git_ignore(opts.respect_ignore_files)
        .git_global(opts.respect_ignore_files)
        .git_exclude(opts.respect_ignore_files)
        .ignore(opts.respect_ignore_files)
        .parents(opts.respect_ignore_files)
        // `.gitignore` applies even outside a git repository (e.g. an extracted tarball).
        .require_git(false);
    let excluded: Vec<String> = opts.excluded_dirs.clone();
    let skip_venvs = opts.skip_virtualenvs;
    let dir_skips: std::sync::Arc<Mutex<Vec<String>>> = Default::default();
    let dir_skips2 = dir_skips.clone();
    let root_buf = root.to_path_buf();
    builder.filter_entry(move |entry| {
        let is_dir = entry.file_type().is_some_and(|t| t.is_dir());
        if !is_dir || entry.depth() == 0 {
            return true;
        }
        let name = entry.file_name().to_string_lossy();
        let skip = excluded.iter().any(|d| *d == name)
            || (skip_venvs && entry.path().join("pyvenv.cfg").is_file());
        if skip && let Ok(mut v) = dir_skips2.lock() {
            v.push(rel_path(&root_buf, entry.path()));
        }
        !skip
    });

    let mut out = Vec::new();
    for entry in builder.build() {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                let path = match &err {
                    ignore::Error::WithPath { path, .. } => rel_path(root, path),
                    _ => String::new(),
                };
                // A missing root is an error of the caller, anything else a skipped file.
                if path.is_empty() && !root.exists() {
                    return Err(SyntaxError::Io {
                        path: root.to_path_buf(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, err.to_string()),
                    });
                }
                *counts.entry(SkipReason::Unreadable).or_default() += 1;
                skipped.push(SkippedFile {
                    path,
                    reason: SkipReason::Unreadable,
                    detail: Some(err.to_string()),
                });
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.into_path();
        let rel = if path == root {
            path.file_name()
                .map(|n| encode_os(n).into_owned())
                .unwrap_or_default()
        } else {
            rel_path(root, &path)
        };
        let Ok(open) = path.strip_prefix(base.path()).map(Path::to_path_buf) else {
            continue;
        };
        if !globs.is_empty() && globs.is_match(&rel) {
            *counts.entry(SkipReason::ExcludedGlob).or_default() += 1;
            skipped.push(SkippedFile {
                path: rel,
                reason: SkipReason::ExcludedGlob,
                detail: None,
            });
            continue;
        }
        let lang = Language::for_path(&path)
            .filter(|l| opts.languages.is_empty() || opts.languages.iter().any(|n| n == l.name()));
        let Some(lang) = lang else {
            *counts.entry(SkipReason::UnsupportedLanguage).or_default() += 1;
            continue;
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if file_name.contains(".min.") || file_name.ends_with("-min.js") {
            *counts.entry(SkipReason::Minified).or_default() += 1;
            skipped.push(SkippedFile {
                path: rel,
                reason: SkipReason::Minified,
                detail: Some("file name".into()),
            });
            continue;
        }
        out.push(Candidate { open, rel, lang });
    }
    if let Ok(dirs) = dir_skips.lock() {
        for d in dirs.iter() {
            *counts.entry(SkipReason::ExcludedDir).or_default() += 1;
            skipped.push(SkippedFile {
                path: d.clone(),
                reason: SkipReason::ExcludedDir,
                detail: None,
            });
        }
    }
    if !root.exists() {
        return Err(SyntaxError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "walk root does not exist"),
        });
    }
    Ok(out)
}

/// Reads a candidate through the held root (no link followed, size bounded) and applies the
/// content checks. `Err` = skip.
fn read_checked(
    root: &RepoRoot,
    c: &Candidate,
    opts: &WalkOptions,
) -> std::result::Result<Vec<u8>, (SkipReason, Option<String>)> {
    let bytes = root
        .read_file(&c.open, opts.max_file_size)
        .map_err(read_skip)?;
    check_content(&bytes, opts)?;
    Ok(bytes)
}

/// The skip reason of a failed [`RepoRoot::read_file`].
pub fn read_skip(e: ReadError) -> (SkipReason, Option<String>) {
    match e {
        ReadError::TooLarge(n) => (SkipReason::TooLarge, Some(format!("{n} bytes"))),
        e => (SkipReason::Unreadable, Some(e.to_string())),
    }
}

/// Why a walk with `opts` would not index the file `rel` (`/`-separated, relative to `root`)
/// by its path alone: a hidden or excluded directory on the way, an exclude glob, an ignore
/// file (`.gitignore`, `.ignore` of `root` and the directories below it, `.git/info/exclude`),
/// a minified name, no language. `None` when it would read it. For callers that learn of one
/// changed file (a file-system watcher, an editor) and must treat it as a full walk would.
///
/// `rel` is the exact text of the path ([`crate::relpath`]); a text that is not canonical is
/// [`SkipReason::Unreadable`].
pub fn path_skip_reason(root: &Path, rel: &str, opts: &WalkOptions) -> Option<SkipReason> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let (file, dirs) = parts.split_last()?;
    let Some(rel_os) = decode_rel_path(rel) else {
        return Some(SkipReason::Unreadable);
    };
    let os_dirs: Vec<&std::ffi::OsStr> = rel_os
        .parent()
        .map(|p| p.iter().collect())
        .unwrap_or_default();
    for d in dirs {
        if opts.excluded_dirs.iter().any(|x| x == d) {
            return Some(SkipReason::ExcludedDir);
        }
        if opts.skip_hidden && d.starts_with('.') {
            return Some(SkipReason::ExcludedDir);
        }
    }
    if opts.skip_hidden && file.starts_with('.') {
        return Some(SkipReason::ExcludedDir);
    }
    if opts.skip_virtualenvs {
        let mut dir = root.to_path_buf();
        for d in &os_dirs {
            dir.push(d);
            if dir.join("pyvenv.cfg").is_file() {
                return Some(SkipReason::ExcludedDir);
            }
        }
    }
    if !opts.exclude_globs.is_empty() {
        match build_globs(&opts.exclude_globs) {
            Ok(g) if g.is_match(rel) => return Some(SkipReason::ExcludedGlob),
            Ok(_) => {}
            Err(_) => return Some(SkipReason::ExcludedGlob),
        }
    }
    let full = root.join(&rel_os);
    if opts.respect_ignore_files {
        // Deeper ignore files take precedence, as git's do.
        let mut ignored = false;
        let mut dir = root.to_path_buf();
        let mut check = |base: &Path, files: &[PathBuf]| {
            let mut b = ignore::gitignore::GitignoreBuilder::new(base);
            let mut any = false;
            for f in files {
                if f.is_file() {
                    any |= b.add(f).is_none();
                }
            }
            if !any {
                return;
            }
            if let Ok(gi) = b.build() {
                match gi.matched_path_or_any_parents(&full, false) {
                    ignore::Match::Ignore(_) => ignored = true,
                    ignore::Match::Whitelist(_) => ignored = false,
                    ignore::Match::None => {}
                }
            }
        };
        check(root, &[root.join(".git/info/exclude")]);
        check(root, &[root.join(".gitignore"), root.join(".ignore")]);
        for d in &os_dirs {
            dir.push(d);
            check(&dir, &[dir.join(".gitignore"), dir.join(".ignore")]);
        }
        if ignored {
            return Some(SkipReason::ExcludedGlob);
        }
    }
    let lang = Language::for_path(&full)
        .filter(|l| opts.languages.is_empty() || opts.languages.iter().any(|n| n == l.name()));
    if lang.is_none() {
        return Some(SkipReason::UnsupportedLanguage);
    }
    let lower = file.to_ascii_lowercase();
    if lower.contains(".min.") || lower.ends_with("-min.js") {
        return Some(SkipReason::Minified);
    }
    None
}

/// The content checks of the walk (size, binary, minified, generated) for bytes read elsewhere
/// (an editor's unsaved buffer); `Err` says why the walk would skip them.
pub fn check_source(
    bytes: &[u8],
    opts: &WalkOptions,
) -> std::result::Result<(), (SkipReason, Option<String>)> {
    if bytes.len() as u64 > opts.max_file_size {
        return Err((SkipReason::TooLarge, Some(format!("{} bytes", bytes.len()))));
    }
    check_content(bytes, opts)
}

/// Content checks shared by the walker: binary, minified, generated.
fn check_content(
    bytes: &[u8],
    opts: &WalkOptions,
) -> std::result::Result<(), (SkipReason, Option<String>)> {
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return Err((SkipReason::Binary, Some("NUL byte".into())));
    }
    if bytes.len() >= 1024 {
        // A line break is `\n`, `\r\n` or a lone `\r` (old Mac files are not one long line).
        let lines = bytes
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
            .count()
            + 1;
        let avg = bytes.len() / lines;
        if avg > opts.max_avg_line_len {
            return Err((
                SkipReason::Minified,
                Some(format!("average line length {avg}")),
            ));
        }
    }
    if opts.skip_generated {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(2048)]);
        let marked = head.lines().take(20).any(|l| {
            (l.contains("Code generated") && l.contains("DO NOT EDIT"))
                || l.contains("@generated") && !l.contains("\"@generated")
        });
        if marked {
            return Err((SkipReason::Generated, Some("generated-code marker".into())));
        }
    }
    Ok(())
}

/// Walks `root`, parses every supported file in parallel and hands each result to `sink` (from
/// worker threads, in no particular order). `progress` is called after every file, also from
/// worker threads; throttle drawing on the caller side. Individual file problems are reported in
/// the summary, never as an error; errors are reserved for the walk itself (missing root, bad
/// glob, unknown language in the options, thread pool failure).
pub fn walk_repo(
    root: &Path,
    opts: &WalkOptions,
    progress: &(dyn Fn(Progress) + Sync),
    sink: &(dyn Fn(FileResult) + Sync),
) -> Result<WalkSummary> {
    let hooks = WalkHooks {
        progress,
        ..WalkHooks::default()
    };
    walk_repo_with(root, opts, &hooks, sink)
}

/// Callbacks of [`walk_repo_with`], all called from worker threads.
pub struct WalkHooks<'a> {
    /// After every file.
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// Called with each file's relative path and contents after the content checks: `None`
    /// skips parsing it (e.g. its content hash is already indexed; such files count in
    /// [`WalkSummary::files_unchanged`]), `Some(hash)` parses it and hands the hash on as
    /// [`ParsedFile::content_hash`](crate::ParsedFile::content_hash).
    pub parse_file: &'a (dyn Fn(&str, &[u8]) -> Option<String> + Sync),
    /// Polled before every file; once it returns true the remaining files are left alone and
    /// the walk returns what it did ([`WalkSummary::cancelled`]).
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl Default for WalkHooks<'_> {
    fn default() -> Self {
        WalkHooks {
            progress: &|_| {},
            parse_file: &|_, _| Some(String::new()),
            cancelled: &|| false,
        }
    }
}

/// [`walk_repo`] with a content filter and cancellation. `root` (a directory, or one file) is
/// resolved once and held ([`RepoRoot::resolve`]); see [`walk_root_with`].
pub fn walk_repo_with(
    root: &Path,
    opts: &WalkOptions,
    hooks: &WalkHooks<'_>,
    sink: &(dyn Fn(FileResult) + Sync),
) -> Result<WalkSummary> {
    let io_err = |source: std::io::Error| SyntaxError::Io {
        path: root.to_path_buf(),
        source,
    };
    let canonical = root.canonicalize().map_err(io_err)?;
    if canonical.is_dir() {
        let held = RepoRoot::open(&canonical).map_err(io_err)?;
        return walk_from(&held, held.path(), opts, hooks, sink);
    }
    // One file: its directory is held, the walk starts at the file.
    let parent = canonical.parent().ok_or_else(|| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a directory or a file in one",
        ))
    })?;
    let held = RepoRoot::open(parent).map_err(io_err)?;
    walk_from(&held, &canonical, opts, hooks, sink)
}

/// Walks the held root `root`: names are discovered below [`RepoRoot::path`], every file is
/// read through the handle (see the module docs). Otherwise as [`walk_repo_with`].
pub fn walk_root_with(
    root: &RepoRoot,
    opts: &WalkOptions,
    hooks: &WalkHooks<'_>,
    sink: &(dyn Fn(FileResult) + Sync),
) -> Result<WalkSummary> {
    walk_from(root, root.path(), opts, hooks, sink)
}

/// Walks from `start` (the held root's path, or a path below it).
fn walk_from(
    held: &RepoRoot,
    start: &Path,
    opts: &WalkOptions,
    hooks: &WalkHooks<'_>,
    sink: &(dyn Fn(FileResult) + Sync),
) -> Result<WalkSummary> {
    let root = start;
    let progress = hooks.progress;
    let mut summary = WalkSummary::default();
    let candidates = discover(
        held,
        root,
        opts,
        &mut summary.skipped,
        &mut summary.skip_counts,
    )?;
    let total = candidates.len();
    let files_done = AtomicUsize::new(0);
    let bytes_done = AtomicU64::new(0);
    let units_done = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let parsed = AtomicUsize::new(0);
    let unchanged = AtomicUsize::new(0);
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let skips: Mutex<Vec<SkippedFile>> = Mutex::new(Vec::new());
    progress(Progress {
        files_total: total,
        ..Progress::default()
    });

    let work = || {
        candidates.par_iter().for_each(|c| {
            if (hooks.cancelled)() {
                cancelled.store(true, Ordering::Relaxed);
                return;
            }
            let mut skip_parse = false;
            let outcome = read_checked(held, c, opts).and_then(|bytes| {
                let Some(content_hash) = (hooks.parse_file)(&c.rel, &bytes) else {
                    skip_parse = true;
                    return Err((SkipReason::ParseFailed, None));
                };
                extract_file(c.lang, &c.rel, &bytes, &opts.extract)
                    .map(|file| ParsedFile {
                        content_hash,
                        ..file
                    })
                    .map_err(|e| (e.skip_reason(), Some(e.to_string())))
            });
            let (nbytes, nunits) = match outcome {
                Err(_) if skip_parse => {
                    unchanged.fetch_add(1, Ordering::Relaxed);
                    (0, 0)
                }
                Ok(file) => {
                    let n = (file.bytes as u64, file.units.len());
                    parsed.fetch_add(1, Ordering::Relaxed);
                    if file.has_syntax_errors {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    sink(file);
                    n
                }
                Err((reason, detail)) => {
                    if let Ok(mut s) = skips.lock() {
                        s.push(SkippedFile {
                            path: c.rel.clone(),
                            reason,
                            detail,
                        });
                    }
                    (0, 0)
                }
            };
            let p = Progress {
                files_total: total,
                files_done: files_done.fetch_add(1, Ordering::Relaxed) + 1,
                bytes_done: bytes_done.fetch_add(nbytes, Ordering::Relaxed) + nbytes,
                units_done: units_done.fetch_add(nunits, Ordering::Relaxed) + nunits,
            };
            progress(p);
        })
    };
    if opts.threads == 0 {
        work();
    } else {
        rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .build()
            .map_err(|e| SyntaxError::Walk(e.to_string()))?
            .install(work);
    }

    let file_skips = skips.into_inner().unwrap_or_else(|p| p.into_inner());
    for s in &file_skips {
        *summary.skip_counts.entry(s.reason).or_default() += 1;
    }
    summary.skipped.extend(file_skips);
    // Names are listed by path, so a directory swapped for a link during discovery lists the
    // names of wherever it leads; those are counted but not named. A skipped path is named
    // only when it is in the held tree (a file that vanished meanwhile is counted only too).
    summary.skipped.retain(|s| {
        s.path.is_empty() || decode_rel_path(&s.path).is_some_and(|rel| held.contains(&rel))
    });
    summary.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    summary.files_parsed = parsed.into_inner();
    summary.bytes_parsed = bytes_done.into_inner();
    summary.units = units_done.into_inner();
    summary.files_with_errors = errors.into_inner();
    summary.files_unchanged = unchanged.into_inner();
    summary.cancelled = cancelled.into_inner();
    Ok(summary)
}

/// Convenience over [`walk_repo`]: all results in memory, sorted by path. Prefer `walk_repo`
/// with a streaming sink for large repositories.
pub fn extract_repo(root: &Path, opts: &WalkOptions) -> Result<(Vec<FileResult>, WalkSummary)> {
    let results = Mutex::new(Vec::new());
    let summary = walk_repo(root, opts, &|_| {}, &|f| {
        if let Ok(mut r) = results.lock() {
            r.push(f);
        }
    })?;
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((results, summary))
}
