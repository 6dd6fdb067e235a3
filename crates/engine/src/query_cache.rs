//! Query vectors by query text: an editor searching as the user types sends the same text again
//! (a backspace, a re-sent request, the same query from another client), and embedding a query
//! is most of a hybrid search's cost.
//!
//! A small map with least-recently-used eviction, keyed by the exact text: one engine embeds
//! with one model, so a text has one vector. Misses of one call are embedded together, in one
//! batch, outside the lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Query texts whose vectors are kept (a few hundred kilobytes at 384 dimensions).
pub const QUERY_CACHE_ENTRIES: usize = 512;

#[derive(Default)]
pub(crate) struct QueryCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Text -> (vector, last use).
    map: HashMap<String, (Arc<Vec<f32>>, u64)>,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl QueryCache {
    /// The vectors of `queries`, embedding the ones not cached with `embed` (in one call, in
    /// their order) and keeping them.
    pub(crate) fn get_or_embed<E>(
        &self,
        queries: &[&str],
        embed: impl FnOnce(&[&str]) -> Result<Vec<Vec<f32>>, E>,
    ) -> Result<Vec<Vec<f32>>, E> {
        let mut found: Vec<Option<Arc<Vec<f32>>>> = Vec::with_capacity(queries.len());
        {
            let mut inner = self.lock();
            for q in queries {
                inner.tick += 1;
                let tick = inner.tick;
                let hit = inner.map.get_mut(*q).map(|(v, used)| {
                    *used = tick;
                    v.clone()
                });
                if hit.is_some() {
                    inner.hits += 1;
                } else {
                    inner.misses += 1;
                }
                found.push(hit);
            }
        }
        let missing: Vec<&str> = queries
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(q, _)| *q)
            .collect();
        let mut fresh = if missing.is_empty() {
            Vec::new()
        } else {
            embed(&missing)?
        }
        .into_iter();
        let mut out = Vec::with_capacity(queries.len());
        let mut inner = self.lock();
        for (q, f) in queries.iter().zip(found) {
            match f {
                Some(v) => out.push(v.as_ref().clone()),
                None => {
                    let Some(v) = fresh.next() else { break };
                    inner.insert(q, &v);
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// (hits, misses) so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let inner = self.lock();
        (inner.hits, inner.misses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panic could break: use it as it is.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn insert(&mut self, q: &str, v: &[f32]) {
        if !self.map.contains_key(q) && self.map.len() >= QUERY_CACHE_ENTRIES {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.map.remove(&k);
            }
        }
        self.tick += 1;
        self.map
            .insert(q.to_string(), (Arc::new(v.to_vec()), self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed_counting<'a>(
        calls: &'a std::cell::RefCell<Vec<Vec<String>>>,
    ) -> impl FnMut(&[&str]) -> Result<Vec<Vec<f32>>, ()> + 'a {
        move |qs: &[&str]| {
            calls
                .borrow_mut()
                .push(qs.iter().map(|s| s.to_string()).collect());
            Ok(qs.iter().map(|q| vec![q.len() as f32]).collect())
        }
    }

    #[test]
    fn misses_are_embedded_once_in_one_batch_and_kept() {
        let cache = QueryCache::default();
        let calls = std::cell::RefCell::new(Vec::new());
        let mut embed = embed_counting(&calls);
        let v = cache.get_or_embed(&["ab", "abc"], &mut embed).unwrap();
        assert_eq!(v, vec![vec![2.0], vec![3.0]]);
        let v = cache
            .get_or_embed(&["abc", "abcd", "ab"], &mut embed)
            .unwrap();
        assert_eq!(v, vec![vec![3.0], vec![4.0], vec![2.0]]);
        assert_eq!(
            *calls.borrow(),
            vec![
                vec!["ab".to_string(), "abc".into()],
                vec!["abcd".to_string()]
            ]
        );
        assert_eq!(cache.counts(), (2, 3));
        // All cached: the model is not called.
        cache.get_or_embed(&["abcd"], &mut embed).unwrap();
        assert_eq!(calls.borrow().len(), 2);
    }

    #[test]
    fn the_least_recently_used_text_is_evicted() {
        let cache = QueryCache::default();
        let calls = std::cell::RefCell::new(Vec::new());
        let mut embed = embed_counting(&calls);
        for i in 0..QUERY_CACHE_ENTRIES {
            cache.get_or_embed(&[&format!("q{i}")], &mut embed).unwrap();
        }
        // q0 used again: q1 is now the oldest.
        cache.get_or_embed(&["q0"], &mut embed).unwrap();
        cache.get_or_embed(&["new"], &mut embed).unwrap();
        let before = calls.borrow().len();
        cache.get_or_embed(&["q0"], &mut embed).unwrap();
        assert_eq!(calls.borrow().len(), before, "q0 kept");
        cache.get_or_embed(&["q1"], &mut embed).unwrap();
        assert_eq!(calls.borrow().len(), before + 1, "q1 evicted");
        assert!(cache.lock().map.len() <= QUERY_CACHE_ENTRIES);
    }

    #[test]
    fn a_failed_embedding_caches_nothing() {
        let cache = QueryCache::default();
        let r = cache.get_or_embed(&["x"], |_| Err::<Vec<Vec<f32>>, _>("model gone"));
        assert_eq!(r, Err("model gone"));
        assert!(cache.lock().map.is_empty());
    }
}
