//! The one writer of an engine, shared by its jobs.
//!
//! A store has a single writer (across processes, by its lock). A long-lived front end (the
//! service) runs several jobs at once on one engine: an index run of one repository, an IDE's
//! file update, a removal. They share the writer instead of refusing each other: the first job
//! to start takes it from the store, the last one to end gives it back (releasing the lock, so
//! a command-line `index` can run while the server idles). Each store call holds the writer
//! for that call only, so an edit commits between two batches of a long index run.
//!
//! Every write the store takes is whole per file, so a commit made by one job while another
//! is half-way through its repository still leaves every file either old or new. A job that is
//! cancelled keeps what it wrote until the next commit of any job, or loses it when it was the
//! last user; both leave the index consistent.
//!
//! Two jobs on the same repository would race on its file list, so a repository is claimed by
//! one index or remove job at a time ([`Engine::claim_repository`]).

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use gnn_coder_store::{StoreError, StoreWriter};

use crate::{Engine, EngineError, Result};

#[derive(Default)]
pub(crate) struct WriterSlot {
    writer: Option<Box<dyn StoreWriter>>,
    users: usize,
}

/// A share of the engine's writer; the writer is released when the last lease is dropped.
pub(crate) struct WriterLease<'e> {
    engine: &'e Engine,
}

fn poisoned() -> EngineError {
    EngineError::Internal("a job panicked while holding the index writer".into())
}

impl Engine {
    fn slot(&self) -> Result<MutexGuard<'_, WriterSlot>> {
        self.writer.lock().map_err(|_| poisoned())
    }

    /// Takes a share of the writer, opening it when no job holds it.
    pub(crate) fn lease_writer(&self) -> Result<WriterLease<'_>> {
        let mut slot = self.slot()?;
        if slot.writer.is_none() {
            slot.writer = Some(self.store.writer()?);
        }
        slot.users += 1;
        Ok(WriterLease { engine: self })
    }

    /// Claims `name` for an index or remove job; refused while another job holds it.
    pub(crate) fn claim_repository(&self, name: &str) -> Result<RepositoryClaim<'_>> {
        let mut busy = self.busy.lock().map_err(|_| poisoned())?;
        if !busy.insert(name.to_string()) {
            return Err(EngineError::Busy(format!(
                "repository {name:?} is being indexed or removed by another job"
            )));
        }
        Ok(RepositoryClaim {
            busy: &self.busy,
            name: name.to_string(),
        })
    }
}

impl WriterLease<'_> {
    /// Runs one store call with the writer.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut dyn StoreWriter) -> std::result::Result<R, StoreError>,
    ) -> Result<R> {
        let mut slot = self.engine.slot()?;
        let writer = slot
            .writer
            .as_mut()
            .ok_or_else(|| EngineError::Internal("the index writer is gone".into()))?;
        Ok(f(writer.as_mut())?)
    }
}

impl Drop for WriterLease<'_> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.engine.writer.lock() {
            slot.users = slot.users.saturating_sub(1);
            if slot.users == 0 {
                slot.writer = None;
            }
        }
    }
}

/// A repository claimed by one job, released on drop.
pub(crate) struct RepositoryClaim<'e> {
    busy: &'e Mutex<HashSet<String>>,
    name: String,
}

impl Drop for RepositoryClaim<'_> {
    fn drop(&mut self) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(&self.name);
        }
    }
}
