//! The lexical leg: BM25 over the code-aware analysis of the unit's text fields.
//!
//! The query text goes through the same analysis as the documents ([`crate::tokenizer`]); each
//! distinct term becomes a `Should` clause per text field (name, qualified symbol, doc comment,
//! code, path), boosted by the request's field boosts.
//!
//! Filters take one of two ways, chosen by how many units pass them (counted once per snapshot
//! and filter):
//! - **Most units pass** (a quarter or more; the product's kind filter passes nearly all): the
//!   bare disjunction is walked with tantivy's block-max WAND (`Weight::for_each_pruning`), and
//!   each candidate is checked against the per-segment [`SegmentFilter`] (language, kind,
//!   repository, path globs, exclusions) before it enters the top k; only passing units raise
//!   the pruning threshold, which is carried from segment to segment, so the result is exact.
//!   At a million units this cut a lexical query's p50 from 10.7 to 3.2 ms: intersecting with
//!   the kind filter's postings had scored every matching posting of the disjunction, and the
//!   filter's own union of two near-complete posting lists was half the time.
//! - **Few units pass** (or the index has no vectors to count them by): language, kind and
//!   repository filters are zero-scored term filters inside the query, whose short postings
//!   let the intersection skip most of the disjunction. Path globs and exclusions cannot be
//!   terms: they are checked on the ranked hits with the [`SegmentFilter`], fetching deeper (20×
//!   the limit, then 4× more each round) until enough pass or no hits are left, still before
//!   the top-k cut.

use std::collections::{HashMap, HashSet};

use gnn_coder_store::{LexicalQuery, Result, UnitId, UnitRecord};
use tantivy::collector::TopDocs;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::query::EnableScoring;
use tantivy::query::{Bm25Weight, BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocAddress, Term};

use crate::error::backend;
use crate::filter::SegmentFilter;
use crate::snapshot::{Snapshot, unit_id};
use crate::tokenizer::{analyze, query_terms};
use crate::topk::TopK;

/// [`Snapshot::lexical_search`] walks the bare disjunction when at least one unit in this many
/// passes the filters (see `filters_pass_most`). Below that, the filters' postings are short
/// enough for the intersection to skip most of the disjunction's; above it, the WAND walk skips
/// more than the failing units cost to check.
const PASS_MOST_DIVISOR: u64 = 4;

impl Snapshot {
    /// The BM25 leg: the best `q.limit` units passing the filters, best first.
    pub(crate) fn lexical_search(&self, q: &LexicalQuery) -> Result<Vec<(UnitId, f32)>> {
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
        if self.filters_pass_most(q, globs)? {
            let Some(union) = self.disjunction(q) else {
                return Ok(Vec::new());
            };
            return self.pruned_top(union.as_ref(), want, q, globs, &exclude);
        }
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

    /// Whether the request has filters that most units pass (the product's kind filter, say),
    /// so that walking the bare disjunction with block-max WAND and checking each candidate's
    /// columns beats intersecting the disjunction with the filters' postings (which scores
    /// every matching posting: the filters' own union was half of a lexical query's time at a
    /// million units). Counted once per snapshot and filter, over units with vectors; an index
    /// without vectors keeps the intersection.
    fn filters_pass_most(
        &self,
        q: &LexicalQuery,
        globs: Option<&globset::GlobSet>,
    ) -> Result<bool> {
        let f = &q.filters;
        if f.languages.is_empty()
            && f.kinds.is_empty()
            && f.repositories.is_empty()
            && globs.is_none()
        {
            // Nothing to intersect with; exclusions alone are checked on the ranked hits.
            return Ok(false);
        }
        let (passing, total) = self.cached_candidate_counts(f, globs)?;
        Ok(total > 0 && passing.saturating_mul(PASS_MOST_DIVISOR) >= total)
    }

    /// The best `want` units by `union`'s score among those passing every filter (exclusions
    /// and path globs included), best first: block-max WAND over each segment, the threshold
    /// being the `want`-th best score of the passing units so far (carried from segment to
    /// segment), so a unit that fails a filter never raises it and the result is exact.
    fn pruned_top(
        &self,
        union: &dyn Query,
        want: usize,
        q: &LexicalQuery,
        globs: Option<&globset::GlobSet>,
        exclude: &HashSet<UnitId>,
    ) -> Result<Vec<(UnitId, f32)>> {
        let weight = union
            .weight(EnableScoring::enabled_from_searcher(&self.searcher))
            .map_err(backend)?;
        let cols = self.seg_cols()?;
        let mut top = TopK::new(want);
        let mut threshold = f32::MIN;
        for (ord, (seg, c)) in self.searcher.segment_readers().iter().zip(cols).enumerate() {
            let ord = ord as u32;
            let filter = SegmentFilter::new(seg, c, ord, &q.filters, globs, exclude)?;
            if filter.none {
                continue;
            }
            weight
                .for_each_pruning(threshold, seg, &mut |doc, score| {
                    if filter.accepts(doc) {
                        top.push(unit_id(DocAddress::new(ord, doc)), score);
                        threshold = top.threshold().unwrap_or(f32::MIN);
                    }
                    threshold
                })
                .map_err(backend)?;
        }
        Ok(top.into_sorted())
    }

    /// BM25 of texts outside the index, as [`Snapshot::lexical_search`] scores its units: the
    /// same analysis, fields, boosts and per-term weights (tantivy's, over this snapshot's
    /// statistics), and the field lengths coded as tantivy codes them.
    pub(crate) fn score_texts(&self, q: &LexicalQuery, units: &[UnitRecord]) -> Result<Vec<f32>> {
        let f = &self.fields;
        let b = &q.boosts;
        let fields = [
            (f.name, b.name),
            (f.symbol, b.symbol),
            (f.doc, b.doc),
            (f.code, b.code),
            (f.path_text, b.path),
        ];
        let mut weights: Vec<(String, usize, Bm25Weight)> = Vec::new();
        for t in query_terms(&q.text) {
            for (i, (field, boost)) in fields.iter().enumerate() {
                if *boost <= 0.0 {
                    continue;
                }
                let term = Term::from_field_text(*field, &t);
                let w = Bm25Weight::for_terms(&self.searcher, &[term])
                    .map_err(backend)?
                    .boost_by(*boost);
                weights.push((t.clone(), i, w));
            }
        }
        Ok(units
            .iter()
            .map(|r| {
                let texts = [
                    r.name.as_str(),
                    r.symbol.as_str(),
                    r.doc.as_deref().unwrap_or(""),
                    r.code.as_str(),
                    r.path.as_str(),
                ];
                let tokens: Vec<Vec<String>> = texts.iter().map(|t| analyze(t)).collect();
                weights
                    .iter()
                    .map(|(t, i, w)| {
                        let toks = &tokens[*i];
                        let tf = toks.iter().filter(|x| *x == t).count() as u32;
                        if tf == 0 {
                            return 0.0;
                        }
                        let len = u32::try_from(toks.len()).unwrap_or(u32::MAX);
                        w.score(FieldNormReader::fieldnorm_to_id(len), tf)
                    })
                    .sum()
            })
            .collect())
    }

    /// The scored part of the query: one `Should` clause per term and text field.
    fn disjunction(&self, q: &LexicalQuery) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let b = &q.boosts;
        let terms = query_terms(&q.text);
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
        // Only unit documents carry the text fields (file and repository documents have none),
        // so the disjunction alone selects units: without filters it stays a pure union, which
        // tantivy's top-k walks with block-max WAND, skipping blocks that cannot enter the top.
        // (An intersection with the unit type, as before, scored every matching posting.)
        Some(Box::new(BooleanQuery::new(should)))
    }

    /// The disjunction, within the term filters (language, kind, repository) as zero-scored
    /// `Must` clauses.
    fn lexical_query(&self, q: &LexicalQuery) -> Option<Box<dyn Query>> {
        let f = &self.fields;
        let disjunction = self.disjunction(q)?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, values) in [
            (f.language, &q.filters.languages),
            (f.kind, &q.filters.kinds),
            (f.repo, &q.filters.repositories),
        ] {
            if let Some(filter) = self.exact_any(field, values) {
                clauses.push((Occur::Must, filter));
            }
        }
        if clauses.is_empty() {
            return Some(disjunction);
        }
        clauses.push((Occur::Must, disjunction));
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
}
