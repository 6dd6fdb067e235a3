//! WordPiece tokenization with byte offsets, from the model's `tokenizer.json`.

use std::path::Path;

use tokenizers::{
    Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
    utils::padding::PaddingParams,
};

use crate::error::{ModelError, Result};

/// One tokenized text: `[CLS] ... [SEP]`, head-truncated to the maximum length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// Byte span of each token in the input text; `(0, 0)` for the special tokens.
    pub offsets: Vec<(usize, usize)>,
    /// `true` for `[CLS]`/`[SEP]`.
    pub special: Vec<bool>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Upper bound on input bytes per allowed token. Texts longer than `max_len * MAX_BYTES_PER_TOKEN`
/// are cut (at a char boundary) before tokenizing: the tail would be truncated away anyway and
/// tokenizing a 1 MB generated function just to drop it is wasted work.
const MAX_BYTES_PER_TOKEN: usize = 64;

/// The tokenizer of the pretrained model, with the shipped padding (fixed 128) turned off and our
/// own truncation.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    max_len: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl TextTokenizer {
    /// Load `tokenizer.json`; sequences are truncated to `max_len` tokens including `[CLS]` and
    /// `[SEP]` (keeping the head).
    pub fn from_file(path: &Path, max_len: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(ModelError::MissingModelFile {
                path: path.to_path_buf(),
            });
        }
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, path, max_len)
    }

    /// [`from_file`](Self::from_file) of a `tokenizer.json` in memory; `path` names it in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path, max_len: usize) -> Result<Self> {
        if max_len < 2 {
            return Err(ModelError::Config(format!(
                "max token length {max_len} leaves no room for [CLS]/[SEP]"
            )));
        }
        let err = |message: String| ModelError::Tokenizer {
            path: path.to_path_buf(),
            message,
        };
        let mut inner = Tokenizer::from_bytes(bytes).map_err(|e| err(e.to_string()))?;
        inner.with_padding(None::<PaddingParams>);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: max_len,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| err(e.to_string()))?;
        Ok(Self { inner, max_len })
    }

    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let text = cut_at_char_boundary(text, self.max_len.saturating_mul(MAX_BYTES_PER_TOKEN));
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ModelError::Tokenize(e.to_string()))?;
        Ok(Encoded {
            ids: enc.get_ids().to_vec(),
            offsets: enc.get_offsets().to_vec(),
            special: enc
                .get_special_tokens_mask()
                .iter()
                .map(|&m| m != 0)
                .collect(),
        })
    }
}

fn cut_at_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
