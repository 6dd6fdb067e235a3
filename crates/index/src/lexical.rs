//! The lexical leg: BM25 over the code-aware analysis of the unit's text fields.
//!
//! The query text goes through the same analysis as the documents ([`crate::tokenizer`]); each
//! distinct term becomes a `Should` clause per text field (name, qualified symbol, doc comment,
//! code, path), boosted by the request's field boosts. Language, kind and repository filters are
//! zero-scored term filters inside the query, so tantivy's top-k only ever sees units that pass
//! them. Path globs and exclusions cannot be terms: they are checked on the ranked hits with the
//! per-segment [`SegmentFilter`], fetching deeper (20× the limit, then 4× more each round) until
//! enough pass or no hits are left, still before the top-k cut.

use std::collections::{HashMap, HashSet};

use gnn_coder_store::{LexicalQuery, Result, UnitId, UnitRecord};
use tantivy::Term;
use tantivy::collector::TopDocs;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::query::{Bm25Weight, BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use crate::error::backend;
use crate::filter::SegmentFilter;
use crate::snapshot::{Snapshot, unit_id};
use crate::tokenizer::{analyze, query_terms};

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

    fn lexical_query(&self, q: &LexicalQuery) -> Option<Box<dyn Query>> {
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
        let disjunction: Box<dyn Query> = Box::new(BooleanQuery::new(should));
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
