//! The HEAD commit of a git checkout, read from `.git` without a git library.
//!
//! These reads go by path and follow links (a worktree's or submodule's `.git` file names a
//! git directory elsewhere, by design), but nothing they read is indexed: the only thing that
//! comes out is a commit id that passes [`is_sha`]. Each read is bounded and takes regular
//! files only ([`read_regular`]), so a hostile `.git` (a FIFO, a link to `/dev/zero`, a huge
//! file) cannot block or exhaust an index run.

use std::path::{Path, PathBuf};

use gnn_coder_syntax::read_regular;

/// Most bytes read of `HEAD`, a ref or `.git`/`commondir` files.
const SMALL: u64 = 4096;
/// Most bytes read of `packed-refs` (large repositories have megabytes of tags).
const PACKED: u64 = 64 << 20;

fn read_to_string(path: &Path, max: u64) -> Option<String> {
    String::from_utf8(read_regular(path, max).ok()?).ok()
}

/// The `.git` directory of `root` (a directory, or a `gitdir:` file of a worktree/submodule).
fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot = root.join(".git");
    if dot.is_dir() {
        return Some(dot);
    }
    let text = read_to_string(&dot, SMALL)?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let p = Path::new(target);
    Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    })
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit HEAD points at, if `root` is a git checkout with at least one commit.
pub(crate) fn head_commit(root: &Path) -> Option<String> {
    let dir = git_dir(root)?;
    let head = read_to_string(&dir.join("HEAD"), SMALL)?;
    let head = head.trim();
    if is_sha(head) {
        return Some(head.to_string());
    }
    let reference = head.strip_prefix("ref:")?.trim();
    if reference.contains("..") {
        return None;
    }
    // Worktrees keep refs in the common directory.
    let common = read_to_string(&dir.join("commondir"), SMALL)
        .map(|c| dir.join(c.trim()))
        .unwrap_or_else(|| dir.clone());
    for base in [&dir, &common] {
        if let Some(sha) = read_to_string(&base.join(reference), SMALL) {
            let sha = sha.trim();
            if is_sha(sha) {
                return Some(sha.to_string());
            }
        }
    }
    let packed = read_to_string(&common.join("packed-refs"), PACKED)?;
    packed.lines().find_map(|line| {
        let (sha, name) = line.split_once(' ')?;
        (name.trim() == reference && is_sha(sha)).then(|| sha.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn reads_loose_and_packed_refs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        assert_eq!(head_commit(root), None);
        let git = root.join(".git");
        fs::create_dir_all(git.join("refs/heads")).unwrap();
        fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        assert_eq!(head_commit(root), None, "no commit yet");
        let sha = "0123456789abcdef0123456789abcdef01234567";
        fs::write(
            git.join("packed-refs"),
            format!("# pack-refs\n{sha} refs/heads/main\n"),
        )
        .unwrap();
        assert_eq!(head_commit(root).as_deref(), Some(sha));
        let newer = "89abcdef0123456789abcdef0123456789abcdef";
        fs::write(git.join("refs/heads/main"), format!("{newer}\n")).unwrap();
        assert_eq!(head_commit(root).as_deref(), Some(newer));
        fs::write(git.join("HEAD"), format!("{sha}\n")).unwrap();
        assert_eq!(head_commit(root).as_deref(), Some(sha), "detached HEAD");
    }

    /// A hostile `.git` neither blocks nor fills memory: no commit, at once.
    #[cfg(unix)]
    #[test]
    fn a_hostile_git_file_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::os::unix::fs::symlink("/dev/zero", root.join(".git")).unwrap();
        assert_eq!(head_commit(root), None);
        fs::remove_file(root.join(".git")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(root.join(".git"))
            .status()
            .is_ok_and(|s| s.success());
        if made {
            assert_eq!(head_commit(root), None);
        }
    }
}
