//! The tantivy schema: one index, three document types.
//!
//! Units (searchable), files (path and content hash, for refreshes) and repositories (their
//! record as JSON) are all documents of the same index, told apart by `doc_type`, so a single
//! tantivy commit covers all of them: the deletes and adds of one refresh become visible
//! together or not at all. Unit and file documents of one file share the `key` term
//! `f\0REPO\0PATH`, repository documents have `r\0REPO`; deleting that term replaces or removes
//! them. Text fields use the code-aware analyzer ([`crate::tokenizer`]); the exact fields a
//! filter reads (`repo`, `path`, `language`, `kind`) and the vector row are fast fields.
//!
//! The field list is part of the on-disk format ([`crate::FORMAT_VERSION`]): an index lacking a
//! field is reported damaged, never misread.

use std::path::Path;

use gnn_coder_store::{Result, StoreError};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
};

use crate::tokenizer::CODE_TOKENIZER;

pub(crate) const DOC_UNIT: &str = "unit";
pub(crate) const DOC_FILE: &str = "file";
pub(crate) const DOC_REPO: &str = "repo";

/// Fields of the tantivy schema. One index holds three document types: units (searchable),
/// files (path and content hash, for refreshes) and repositories (their record as JSON), so a
/// single tantivy commit covers all of them.
#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub(crate) doc_type: Field,
    /// `f\0REPO\0PATH` on unit and file documents, `r\0REPO` on repository documents: the term
    /// that replaces or deletes them.
    pub(crate) key: Field,
    pub(crate) repo: Field,
    pub(crate) path: Field,
    pub(crate) path_text: Field,
    pub(crate) language: Field,
    pub(crate) kind: Field,
    pub(crate) name: Field,
    pub(crate) symbol: Field,
    pub(crate) doc: Field,
    pub(crate) code: Field,
    pub(crate) start_line: Field,
    pub(crate) end_line: Field,
    pub(crate) def_line: Field,
    pub(crate) start_byte: Field,
    pub(crate) end_byte: Field,
    /// The unit's vector row.
    pub(crate) row: Field,
    pub(crate) file_hash: Field,
    pub(crate) file_units: Field,
    pub(crate) file_bytes: Field,
    pub(crate) repo_json: Field,
}

const FIELD_NAMES: [&str; 21] = [
    "doc_type",
    "key",
    "repo",
    "path",
    "path_text",
    "language",
    "kind",
    "name",
    "symbol",
    "doc",
    "code",
    "start_line",
    "end_line",
    "def_line",
    "start_byte",
    "end_byte",
    "row",
    "file_hash",
    "file_units",
    "file_bytes",
    "repo_json",
];

impl Fields {
    pub(crate) fn schema() -> Schema {
        let mut b = Schema::builder();
        let text = || {
            let indexing = TextFieldIndexing::default()
                .set_tokenizer(CODE_TOKENIZER)
                .set_index_option(IndexRecordOption::WithFreqs);
            TextOptions::default().set_indexing_options(indexing)
        };
        b.add_text_field("doc_type", STRING);
        b.add_text_field("key", STRING);
        b.add_text_field("repo", STRING | STORED | FAST);
        b.add_text_field("path", STRING | STORED | FAST);
        b.add_text_field("path_text", text());
        b.add_text_field("language", STRING | STORED | FAST);
        b.add_text_field("kind", STRING | STORED | FAST);
        b.add_text_field("name", text().set_stored());
        b.add_text_field("symbol", text().set_stored());
        b.add_text_field("doc", text().set_stored());
        b.add_text_field("code", text().set_stored());
        for f in [
            "start_line",
            "end_line",
            "def_line",
            "start_byte",
            "end_byte",
        ] {
            b.add_u64_field(f, STORED);
        }
        b.add_u64_field("row", INDEXED | STORED | FAST);
        b.add_text_field("file_hash", STORED);
        b.add_u64_field("file_units", STORED);
        // Fast, so that a repository's bytes are summed from its committed files (indexes made
        // before it was fast keep the bytes their last run recorded).
        b.add_u64_field("file_bytes", STORED | FAST);
        b.add_text_field("repo_json", STORED);
        b.build()
    }

    pub(crate) fn from_schema(schema: &Schema, dir: &Path) -> Result<Fields> {
        let mut got = Vec::with_capacity(FIELD_NAMES.len());
        for name in FIELD_NAMES {
            got.push(schema.get_field(name).map_err(|_| StoreError::Damaged {
                path: dir.to_path_buf(),
                reason: format!("the lexical index lacks the field {name:?}"),
            })?);
        }
        let f = |i: usize| got[i];
        Ok(Fields {
            doc_type: f(0),
            key: f(1),
            repo: f(2),
            path: f(3),
            path_text: f(4),
            language: f(5),
            kind: f(6),
            name: f(7),
            symbol: f(8),
            doc: f(9),
            code: f(10),
            start_line: f(11),
            end_line: f(12),
            def_line: f(13),
            start_byte: f(14),
            end_byte: f(15),
            row: f(16),
            file_hash: f(17),
            file_units: f(18),
            file_bytes: f(19),
            repo_json: f(20),
        })
    }
}

/// The term naming a file's unit and file documents.
pub(crate) fn file_key(repo: &str, path: &str) -> String {
    format!("f\0{repo}\0{path}")
}

/// The term naming a repository's record.
pub(crate) fn repo_key(repo: &str) -> String {
    format!("r\0{repo}")
}
