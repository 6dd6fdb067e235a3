//! The writer lock: `DIR/writer.lock`, held with an exclusive `flock` for as long as a writer
//! lives and holding the writer's PID. The kernel drops the lock when its process dies, however
//! it dies, so a stale lock file of a killed writer never blocks the next one; the PID is only
//! there to say who holds a live lock. A writer that ends cleanly empties the file before it lets
//! go, so no dead PID is left behind; the file itself stays (unlinking a lock file that another
//! process may have opened would let two writers hold locks on two different files).

use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use gnn_coder_store::{Result, StoreError};

pub(crate) const LOCK_FILE: &str = "writer.lock";

/// A held writer lock; released on drop, its PID cleared.
#[derive(Debug)]
pub(crate) struct WriterLock {
    file: fs::File,
    #[allow(dead_code)]
    path: PathBuf,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Still locked here: nobody else writes the file meanwhile. A failure only leaves the
        // PID, which the next holder replaces.
        let _ = self.file.set_len(0);
    }
}

impl WriterLock {
    pub(crate) fn acquire(dir: &Path) -> Result<WriterLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(StoreError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(StoreError::Locked {
                    path: dir.to_path_buf(),
                    pid: if pid.is_empty() {
                        "?".into()
                    } else {
                        pid.to_string()
                    },
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(StoreError::io(&path)(e)),
        }
        // Ours now: whatever PID a dead holder left is replaced.
        let write = |f: &mut fs::File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.flush()
        };
        write(&mut file).map_err(StoreError::io(&path))?;
        Ok(WriterLock { file, path })
    }
}
