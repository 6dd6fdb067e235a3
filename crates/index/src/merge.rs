//! Segment merges off the commit path.
//!
//! Each commit makes a segment and every query visits every segment, so a commit that leaves
//! more than a dozen merges the smallest ones ([`crate::writer`]). Waiting for that merge made
//! an edit wait for it too (p99 447 ms at 110k units, 979 ms at a million, against a p50 of
//! 58 / 101 ms). The merge now runs on tantivy's merge thread and the commit returns at once:
//!
//! - [`MergeRun`] says whether the merge a writer started is still running. A writer starts no
//!   second merge meanwhile: later commits add segments until it ends (searches stay correct,
//!   only visit a few more segments).
//! - tantivy finishes a merge only while its `IndexWriter` lives (dropping the writer kills the
//!   merge). A writer dropped while its merge runs is therefore **parked** in its store
//!   ([`Parking`]) with its lock, and a thread drops it once the merge has ended. The store's
//!   next writer takes a parked one back instead of waiting for it; the store waits for a parked
//!   merge when it is dropped, so a command-line run still ends with its merge done. Meanwhile
//!   another process that asks for the writer is refused as locked, as while any writer lives.
//! - A process killed mid-merge loses only the merge: the committed `meta.json` still names the
//!   segments that were being merged, and the next writer collects the merge's partial files.

use std::sync::{Arc, Condvar, Mutex};

use tantivy::IndexWriter;

use crate::lock::WriterLock;

/// Whether a merge started by a writer is still running; clones share the state.
#[derive(Clone, Default)]
pub(crate) struct MergeRun(Arc<(Mutex<bool>, Condvar)>);

impl MergeRun {
    /// Waits for `merge` on a thread of its own; the returned run ends when it does (failed or
    /// not: a failed merge leaves the segments as they were, and is logged).
    pub(crate) fn watch(
        merge: tantivy::FutureResult<Option<tantivy::SegmentMeta>>,
        segments: usize,
    ) -> MergeRun {
        let run = MergeRun::default();
        *run.state() = true;
        let watcher = run.clone();
        let spawned = std::thread::Builder::new()
            .name("gnn-coder-merge".into())
            .spawn(move || {
                match merge.wait() {
                    Ok(_) => {}
                    // A segment emptied by a later commit (tantivy then drops it): the next
                    // commit merges what is left.
                    Err(e @ tantivy::TantivyError::InvalidArgument(_)) => {
                        tracing::debug!("merging {segments} segments: {e}");
                    }
                    Err(e) => tracing::warn!("merging {segments} segments: {e}"),
                }
                watcher.end();
            });
        if let Err(e) = spawned {
            // No thread to wait on it: the merge still runs, but nothing can say when it ends.
            tracing::warn!("no thread to follow a merge: {e}");
            run.end();
        }
        run
    }

    fn state(&self) -> std::sync::MutexGuard<'_, bool> {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn end(&self) {
        *self.state() = false;
        self.0.1.notify_all();
    }

    pub(crate) fn running(&self) -> bool {
        *self.state()
    }

    /// Blocks until the merge has ended.
    pub(crate) fn wait(&self) {
        let mut running = self.state();
        while *running {
            running = self.0.1.wait(running).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn same(&self, other: &MergeRun) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A writer kept alive for its running merge, with the lock it holds.
pub(crate) struct Parked {
    pub(crate) writer: IndexWriter,
    pub(crate) lock: WriterLock,
    pub(crate) merge: MergeRun,
}

/// A store's place for at most one parked writer.
#[derive(Default)]
pub(crate) struct Parking(Mutex<Option<Parked>>);

impl Parking {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Parked>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `parked` until its merge ends, then drops it (releasing the lock) on a thread of
    /// its own, unless the store's next writer took it back first.
    pub(crate) fn park(self: &Arc<Self>, parked: Parked) {
        let merge = parked.merge.clone();
        *self.slot() = Some(parked);
        let parking = self.clone();
        let spawned = std::thread::Builder::new()
            .name("gnn-coder-parked-writer".into())
            .spawn(move || {
                merge.wait();
                let mut slot = parking.slot();
                // Dropped under the slot's lock: a writer opened meanwhile waits for the lock
                // file to be released rather than failing on it. The merge has ended, so this
                // drop only stops tantivy's idle threads.
                if slot.as_ref().is_some_and(|p| p.merge.same(&merge)) {
                    slot.take();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no thread to release a merging writer: {e}; waiting for its merge");
            self.finish();
        }
    }

    /// The parked writer, if any, for the store's next writer.
    pub(crate) fn take(&self) -> Option<Parked> {
        self.slot().take()
    }

    /// Waits for a parked writer's merge and drops it (the store is going away).
    pub(crate) fn finish(&self) {
        let mut slot = self.slot();
        if let Some(p) = slot.take() {
            p.merge.wait();
        }
    }
}
