//! Reading a repository without leaving it: [`RepoRoot`], a held handle of the root directory.
//!
//! # Guarantee
//!
//! Every byte that indexing reads from a repository (the walk of an index run, a file named by
//! an update) is read through a [`RepoRoot`], and a [`RepoRoot`] only reads regular files that
//! are, at the moment they are opened, reachable from the held directory through real
//! directories, with no symbolic link anywhere on the way. That holds whatever another process
//! does to the tree meanwhile: renaming, exchanging (`renameat2(RENAME_EXCHANGE)`) or replacing
//! any component of the root or of a path below it by a symbolic link, between a check and a
//! read or during a whole walk. The worst a racing writer gets is a read that fails (the file is
//! skipped as unreadable, or reported as a link) or the contents of another file *inside* the
//! root.
//!
//! The root itself is opened once ([`RepoRoot::open`]) from its canonical path, component by
//! component from `/`, none of them followed if it is a link: the handle is exactly the
//! directory that was at that path when it was opened, and [`RepoRoot::path`] is that path. A
//! caller that checks the root against a policy (the server's `--allow-root`) checks
//! [`RepoRoot::path`], the path the handle was opened from, and never resolves the name again.
//!
//! Symbolic links inside a repository are never followed, not even ones that stay inside it: a
//! link is reported as such ([`ReadError::Symlink`]) and skipped.
//!
//! Names do not leak either: a walk lists names by path, so while a directory is swapped for
//! a link it may list the names of wherever the link leads; it reads none of them (they are
//! opened through the handle), and it names a skipped file in its report only when
//! [`RepoRoot::contains`] finds it in the held tree.
//!
//! Not covered: a process that may write inside an allowed root and *move* an outside directory
//! into it (a rename, not a link) has put that directory inside the root; no path-based policy
//! can tell. Reads of `.git` metadata for the HEAD commit go by path and follow links (a
//! worktree's git directory lives elsewhere by design) but yield only a checked commit id
//! ([`read_regular`] keeps them bounded and off FIFOs and devices).
//!
//! # Design
//!
//! The handle is an `O_DIRECTORY` file descriptor (on Linux `O_PATH`, which needs no read
//! permission on the directories on the way). [`RepoRoot::read_file`] opens a relative path
//! with `openat` one component at a time from that handle: every directory with
//! `O_DIRECTORY | O_NOFOLLOW`, the file with `O_NOFOLLOW | O_NONBLOCK` (a FIFO does not block
//! the walk), then `fstat`s what it opened: it must be a regular file, and at most the caller's
//! size limit, which also bounds the read itself (a file growing meanwhile is cut off and
//! reported as too large). Names come from elsewhere (the `ignore` crate's discovery, a client)
//! and are only names: `..`, `.`, absolute paths and empty names are refused before any
//! system call. Path-based checks that only *choose* files (ignore files, `pyvenv.cfg`) may see
//! a swapped tree; they cannot make anything outside the root be read.
//!
//! Off Unix the handle is the canonical path and files are opened by name after a
//! `symlink_metadata` check of every component (best effort, not race free).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why [`RepoRoot::read_file`] read nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing at that path (or a component on the way is not a directory).
    #[error("not found")]
    NotFound,
    /// A symbolic link on the way or at the end; links are not followed.
    #[error("a symbolic link (links are not followed)")]
    Symlink,
    /// Not a regular file (a directory, a FIFO, a device, a socket).
    #[error("not a regular file")]
    NotAFile,
    /// Larger than the limit (the size seen, at least limit + 1 when it grew while read).
    #[error("{0} bytes")]
    TooLarge(u64),
    /// The name is not a plain relative path (`..`, `.`, absolute, empty).
    #[error("not a relative path below the root")]
    BadPath,
    /// Any other I/O error (permissions, ...).
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A repository root held open (see the module docs for what it guarantees).
#[derive(Debug, Clone)]
pub struct RepoRoot {
    path: PathBuf,
    #[cfg(unix)]
    dir: Arc<std::os::fd::OwnedFd>,
    #[cfg(not(unix))]
    _dir: Arc<()>,
}

/// The names of a relative path, refusing anything but plain names.
fn plain_names(rel: &Path) -> Option<Vec<&OsStr>> {
    let mut names = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            _ => return None,
        }
    }
    (!names.is_empty()).then_some(names)
}

#[cfg(unix)]
mod sys {
    use std::ffi::OsStr;
    use std::io;
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

    use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, statat};
    use rustix::io::Errno;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    const DIR: OFlags = OFlags::PATH
        .union(OFlags::DIRECTORY)
        .union(OFlags::NOFOLLOW)
        .union(OFlags::CLOEXEC);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const DIR: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::NOFOLLOW)
        .union(OFlags::CLOEXEC);

    const FILE: OFlags = OFlags::RDONLY
        .union(OFlags::NOFOLLOW)
        .union(OFlags::NONBLOCK)
        .union(OFlags::NOCTTY)
        .union(OFlags::CLOEXEC);

    /// How opening `name` below `dir` failed.
    pub(super) enum Failed {
        NotFound,
        Symlink,
        NotADir,
        Io(io::Error),
    }

    /// Classifies a failed no-follow open of `name` in `dir`: `ELOOP` (and, from `O_PATH`
    /// with `O_DIRECTORY`, `ENOTDIR`) may be a link; an `lstat` tells.
    fn classify(dir: BorrowedFd<'_>, name: &OsStr, e: Errno) -> Failed {
        match e {
            Errno::NOENT => Failed::NotFound,
            Errno::LOOP | Errno::MLINK => Failed::Symlink,
            Errno::NOTDIR => match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Failed::Symlink
                }
                Ok(_) => Failed::NotADir,
                Err(Errno::NOENT) => Failed::NotFound,
                Err(e) => Failed::Io(e.into()),
            },
            e => Failed::Io(e.into()),
        }
    }

    pub(super) fn root() -> io::Result<OwnedFd> {
        Ok(openat(rustix::fs::CWD, "/", DIR, Mode::empty())?)
    }

    pub(super) fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Failed> {
        openat(dir, name, DIR, Mode::empty()).map_err(|e| classify(dir, name, e))
    }

    pub(super) fn open_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Failed> {
        openat(dir, name, FILE, Mode::empty()).map_err(|e| classify(dir, name, e))
    }

    /// Whether `name` is an entry of `dir` (not following it).
    pub(super) fn exists(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
        statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// `(is a regular file, size)` of an open file.
    pub(super) fn regular_size(fd: &OwnedFd) -> io::Result<(bool, u64)> {
        let st = rustix::fs::fstat(fd.as_fd())?;
        Ok((
            FileType::from_raw_mode(st.st_mode) == FileType::RegularFile,
            st.st_size.max(0) as u64,
        ))
    }
}

impl RepoRoot {
    /// Opens the directory at `path`, which must be absolute and canonical (no `.`, `..` or
    /// symbolic link in it): every component is opened without following links, so a link
    /// anywhere on the way, or a path that is not a directory, fails (`NotFound` when nothing
    /// is there). The handle is the directory that was at `path` at that moment.
    pub fn open(path: &Path) -> io::Result<RepoRoot> {
        let bad = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: {why}", path.display()),
            )
        };
        if !path.is_absolute() {
            return Err(bad("not an absolute path"));
        }
        let mut names = Vec::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => {}
                Component::Normal(n) => names.push(n),
                Component::CurDir | Component::ParentDir => {
                    return Err(bad("not a canonical path"));
                }
            }
        }
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let mut dir = sys::root()?;
            for (i, name) in names.iter().enumerate() {
                dir = match sys::open_dir(dir.as_fd(), name) {
                    Ok(d) => d,
                    Err(f) => {
                        let here: PathBuf = std::iter::once(Component::RootDir.as_os_str())
                            .chain(names[..=i].iter().copied())
                            .collect();
                        let here = here.display();
                        return Err(match f {
                            sys::Failed::NotFound => io::Error::new(
                                io::ErrorKind::NotFound,
                                format!("{here} does not exist"),
                            ),
                            sys::Failed::Symlink => io::Error::new(
                                io::ErrorKind::InvalidInput,
                                format!("{here} is a symbolic link (it changed while opened?)"),
                            ),
                            sys::Failed::NotADir => io::Error::new(
                                io::ErrorKind::NotADirectory,
                                format!("{here} is not a directory"),
                            ),
                            sys::Failed::Io(e) => io::Error::new(e.kind(), format!("{here}: {e}")),
                        });
                    }
                };
            }
            Ok(RepoRoot {
                path: path.to_path_buf(),
                dir: Arc::new(dir),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = names;
            let meta = std::fs::symlink_metadata(path)?;
            if !meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", path.display()),
                ));
            }
            Ok(RepoRoot {
                path: path.to_path_buf(),
                _dir: Arc::new(()),
            })
        }
    }

    /// Resolves `path` to its canonical form once and opens that ([`RepoRoot::open`]).
    pub fn resolve(path: &Path) -> io::Result<RepoRoot> {
        let canonical = path.canonicalize()?;
        RepoRoot::open(&canonical)
    }

    /// The canonical path the handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the regular file at `rel` (relative, plain names only) below the held directory,
    /// following no link, at most `max` bytes (see the module docs).
    pub fn read_file(&self, rel: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
        let names = plain_names(rel).ok_or(ReadError::BadPath)?;
        let (file, size) = self.open_file(&names)?;
        if size > max {
            return Err(ReadError::TooLarge(size));
        }
        let cap = usize::try_from(size.min(max))
            .unwrap_or(0)
            .saturating_add(1);
        let mut bytes = Vec::with_capacity(cap);
        file.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if bytes.len() as u64 > max {
            return Err(ReadError::TooLarge(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Whether something (of any type; a link is not followed) is at `rel` below the held
    /// directory, reached through real directories only. A walk reports a path by name only
    /// when it is there: a name listed through a directory swapped for a link is not.
    pub fn contains(&self, rel: &Path) -> bool {
        let Some(names) = plain_names(rel) else {
            return false;
        };
        #[cfg(unix)]
        {
            use std::os::fd::AsFd;
            let Some((last, dirs)) = names.split_last() else {
                return false;
            };
            let mut held: Option<std::os::fd::OwnedFd> = None;
            for name in dirs {
                let at = held.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
                match sys::open_dir(at, name) {
                    Ok(d) => held = Some(d),
                    Err(_) => return false,
                }
            }
            let at = held.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
            sys::exists(at, last)
        }
        #[cfg(not(unix))]
        {
            let mut here = self.path.clone();
            for (i, name) in names.iter().enumerate() {
                here.push(name);
                match std::fs::symlink_metadata(&here) {
                    Ok(m) if m.file_type().is_symlink() && i + 1 < names.len() => return false,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
            true
        }
    }

    #[cfg(unix)]
    fn open_file(&self, names: &[&OsStr]) -> Result<(std::fs::File, u64), ReadError> {
        use std::os::fd::AsFd;
        let failed = |f: sys::Failed| match f {
            sys::Failed::NotFound | sys::Failed::NotADir => ReadError::NotFound,
            sys::Failed::Symlink => ReadError::Symlink,
            sys::Failed::Io(e) => ReadError::Io(e),
        };
        let Some((file, dirs)) = names.split_last() else {
            return Err(ReadError::BadPath);
        };
        let mut held: Option<std::os::fd::OwnedFd> = None;
        for name in dirs {
            let at = held.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
            held = Some(sys::open_dir(at, name).map_err(failed)?);
        }
        let at = held.as_ref().map_or(self.dir.as_fd(), |d| d.as_fd());
        let fd = sys::open_file(at, file).map_err(|f| match f {
            sys::Failed::NotADir => ReadError::NotAFile,
            f => failed(f),
        })?;
        let (regular, size) = sys::regular_size(&fd)?;
        if !regular {
            return Err(ReadError::NotAFile);
        }
        Ok((std::fs::File::from(fd), size))
    }

    #[cfg(not(unix))]
    fn open_file(&self, names: &[&OsStr]) -> Result<(std::fs::File, u64), ReadError> {
        let mut here = self.path.clone();
        for name in names {
            here.push(name);
            match std::fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() => return Err(ReadError::Symlink),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::NotFound),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
        let file = std::fs::File::open(&here)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(ReadError::NotAFile);
        }
        Ok((file, meta.len()))
    }
}

/// Reads a regular file by path (links followed: for files outside any repository, such as a
/// worktree's git directory), at most `max` bytes, without blocking on a FIFO or reading a
/// device: what [`RepoRoot::read_file`] checks, for a path.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(
            (rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY).bits() as i32,
        );
    }
    let file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ReadError::NotFound,
        _ => ReadError::Io(e),
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile);
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_inside_and_refuses_links_and_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let repo = base.join("repo");
        fs::create_dir_all(repo.join("src")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(repo.join("src/a.py"), "inside").unwrap();
        fs::write(base.join("outside/secret.py"), "secret").unwrap();
        symlink(base.join("outside"), repo.join("linkdir")).unwrap();
        symlink(base.join("outside/secret.py"), repo.join("link.py")).unwrap();
        symlink("src/a.py", repo.join("inner_link.py")).unwrap();

        let root = RepoRoot::open(&repo).unwrap();
        assert_eq!(root.path(), repo);
        assert_eq!(
            root.read_file(Path::new("src/a.py"), 100).unwrap(),
            b"inside"
        );
        for (rel, want) in [
            ("link.py", "symlink"),
            ("inner_link.py", "symlink"),
            ("linkdir/secret.py", "symlink"),
            ("src", "not a file"),
            ("missing.py", "not found"),
            ("src/a.py/x", "not found"),
            ("../outside/secret.py", "bad path"),
            ("/etc/passwd", "bad path"),
            ("./src/a.py", "bad path"),
        ] {
            let got = root.read_file(Path::new(rel), 100);
            let ok = matches!(
                (&got, want),
                (Err(ReadError::Symlink), "symlink")
                    | (Err(ReadError::NotAFile), "not a file")
                    | (Err(ReadError::NotFound), "not found")
                    | (Err(ReadError::BadPath), "bad path")
            );
            assert!(ok, "{rel}: {got:?}, want {want}");
        }
        assert!(matches!(
            root.read_file(Path::new("src/a.py"), 3),
            Err(ReadError::TooLarge(6))
        ));
        assert!(root.contains(Path::new("src/a.py")) && root.contains(Path::new("link.py")));
        assert!(!root.contains(Path::new("linkdir/secret.py")));
        assert!(!root.contains(Path::new("src/missing.py")));

        // A root with a link on the way is refused; so is a non-canonical or relative one.
        symlink(&repo, base.join("repo_link")).unwrap();
        assert!(RepoRoot::open(&base.join("repo_link")).is_err());
        assert!(RepoRoot::open(&base.join("repo_link/src")).is_err());
        assert!(RepoRoot::open(&repo.join("src/../src")).is_err());
        assert!(RepoRoot::open(Path::new("repo")).is_err());
        assert_eq!(
            RepoRoot::open(&base.join("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            RepoRoot::resolve(&base.join("repo_link")).unwrap().path(),
            repo
        );
    }

    #[test]
    fn a_fifo_does_not_block() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let fifo = dir.join("pipe.py");
        let status = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !status.is_ok_and(|s| s.success()) {
            return;
        }
        let root = RepoRoot::open(&dir).unwrap();
        assert!(matches!(
            root.read_file(Path::new("pipe.py"), 100),
            Err(ReadError::NotAFile)
        ));
        assert!(matches!(read_regular(&fifo, 100), Err(ReadError::NotAFile)));
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 100),
            Err(ReadError::NotAFile)
        ));
    }

    #[test]
    fn the_handle_outlives_a_swap() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        fs::create_dir_all(base.join("repo")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("repo/a.py"), "inside").unwrap();
        fs::write(base.join("outside/a.py"), "secret").unwrap();
        let root = RepoRoot::open(&base.join("repo")).unwrap();
        fs::rename(base.join("repo"), base.join("moved")).unwrap();
        symlink(base.join("outside"), base.join("repo")).unwrap();
        assert_eq!(root.read_file(Path::new("a.py"), 100).unwrap(), b"inside");
    }
}
