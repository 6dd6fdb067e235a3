//! Cached transformer states: run the pretrained transformer once over every text (with the
//! forward-only f32 kernels of [`gnn_coder_model::cpu`], ragged, one batch per worker) and keep, per
//! token, the hidden states after encoder layer `split` ("lower") and after the last layer
//! ("top"), as f16.
//!
//! Stage 1 (frozen transformer) trains the head on the "top" states alone: a step costs only the
//! graph network. Stage 2 fine-tunes the top `num_layers - split` layers: a step runs just those
//! layers on the cached "lower" states (queries share them), so fine-tuning the top two of six
//! layers costs about a third of a full forward pass per example.
//!
//! On disk: `meta.json` (written last: a directory without it is incomplete), `items.jsonl`
//! (per text: token count, byte offsets, special-token flags, AST graph, node-kind offset) and
//! `lower.f16` / `top.f16` (little-endian f16, items one after another, `len * dim` values each).

use std::io::{BufRead, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use gnn_coder_model::cpu::{Encoder, Precision};
use gnn_coder_model::{BertModel, Encoded, TextTokenizer};
use gnn_coder_syntax::AstGraph;
use half::f16;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io_err};

const CACHE_VERSION: u32 = 2;
const META_FILE: &str = "meta.json";
const ITEMS_FILE: &str = "items.jsonl";
const LOWER_FILE: &str = "lower.f16";
const TOP_FILE: &str = "top.f16";

/// What a cache is built from: the inputs [`StateCache::build`] and
/// [`StateCache::load_or_build`] share.
#[derive(Clone, Copy)]
pub struct CacheInputs<'a> {
    /// The pretrained transformer (a plain-device copy: no autodiff).
    pub model: &'a BertModel,
    pub tokenizer: &'a TextTokenizer,
    pub texts: &'a [CacheText<'a>],
    /// Keep the states after this encoder layer (0 = the embeddings' output).
    pub split: usize,
    /// Keep the last layer's states too.
    pub top: bool,
    /// Threads, each running whole batches.
    pub workers: usize,
    /// Names the model in the cache's fingerprint.
    pub model_tag: &'a str,
    /// Called with (texts done, total) after every batch.
    pub progress: &'a (dyn Fn(usize, usize) + Sync),
}

/// One text to cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheText<'a> {
    pub text: &'a str,
    pub graph: Option<&'a AstGraph>,
    /// Language slot of the graph's node kinds ([`gnn_coder_model::kind_offset`]).
    pub kind_offset: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMeta {
    pub version: u32,
    pub count: usize,
    /// Hidden size.
    pub dim: usize,
    /// "lower" = output of encoder layer `split` (1-based count of layers run), of `num_layers`.
    pub split: usize,
    pub num_layers: usize,
    pub max_tokens: usize,
    /// Total tokens over all items.
    pub tokens: usize,
    /// Hash of the texts, graphs and settings: a cache is reused only for the same inputs.
    pub fingerprint: String,
    /// The final-layer ("top") states are kept. A cache for fine-tuning every layer (`split`
    /// 0) needs only the embeddings' output for its codes, so it can skip the whole forward
    /// pass.
    #[serde(default = "yes")]
    pub has_top: bool,
}

fn yes() -> bool {
    true
}

/// Per-text token information (the states live in the flat arrays).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheItem {
    pub len: usize,
    pub offsets: Vec<(usize, usize)>,
    pub special: Vec<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<AstGraph>,
    #[serde(default)]
    pub kind_offset: u32,
    /// FNV-1a hash of the text (never 0): equal texts, equal hashes (duplicate negatives).
    #[serde(default)]
    pub hash: u64,
}

impl CacheItem {
    /// The tokenization view [`gnn_coder_model::GraphBatch::build`] needs (ids are not kept).
    pub fn encoded(&self) -> Encoded {
        Encoded {
            ids: vec![0; self.len],
            offsets: self.offsets.clone(),
            special: self.special.clone(),
        }
    }
}

/// Cached states of a list of texts, in input order.
#[derive(Debug, Clone)]
pub struct StateCache {
    pub meta: CacheMeta,
    pub items: Vec<CacheItem>,
    starts: Vec<usize>,
    lower: Vec<f16>,
    top: Vec<f16>,
}

/// FNV-1a, 64 bits: stable across runs and platforms.
#[derive(Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so that ("ab", "c") and ("a", "bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Fingerprint of the inputs of a cache build.
pub fn fingerprint(
    texts: &[CacheText<'_>],
    split: usize,
    max_tokens: usize,
    model_tag: &str,
) -> String {
    let mut h = Fnv::default();
    h.write(model_tag.as_bytes());
    h.write(&(split as u64).to_le_bytes());
    h.write(&(max_tokens as u64).to_le_bytes());
    for t in texts {
        h.write(t.text.as_bytes());
        h.write(&t.kind_offset.to_le_bytes());
        if let Some(g) = t.graph {
            for k in &g.kinds {
                h.write(&k.to_le_bytes());
            }
        }
    }
    format!("{:016x}", h.finish())
}

/// Non-zero hash of a text (0 means "unknown" in a [`CacheItem`]).
pub fn text_hash(text: &str) -> u64 {
    let mut h = Fnv::default();
    h.write(text.as_bytes());
    h.finish().max(1)
}

impl StateCache {
    /// Run `model` over `texts` (tokenized by `tokenizer`, head-truncated to its limit; these
    /// and the names below are fields of `inputs`) on `workers` threads (each thread runs whole
    /// batches of `batch_size` texts; burn's CPU kernels leave cores idle otherwise) and keep
    /// the states of layer `split` (0 = the embeddings' output) and, with `top`, of the last
    /// layer (without it, the layers above `split` are not run). `progress(done, total)` is
    /// called after every batch.
    pub fn build(inputs: CacheInputs<'_>, batch_size: usize) -> Result<Self> {
        let CacheInputs {
            model,
            tokenizer,
            texts,
            split,
            top,
            workers,
            model_tag,
            progress,
        } = inputs;
        let num_layers = model.num_layers();
        if split > num_layers {
            return Err(TrainError::Config(format!(
                "cache split {split} must be in 0..={num_layers}"
            )));
        }
        let encs: Vec<Encoded> = texts
            .iter()
            .map(|t| tokenizer.encode(t.text))
            .collect::<std::result::Result<_, _>>()?;
        let dim = model.hidden_size;
        let mut order: Vec<usize> = (0..encs.len()).collect();
        order.sort_by_key(|&i| encs[i].len());
        let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let total = encs.len();
        let (tx, rx) = mpsc::channel::<Result<Vec<(usize, Vec<f16>, Vec<f16>)>>>();
        // The forward-only f32 kernels (as `gnn-coder index` runs at f32), one batch per worker.
        let encoder = Encoder::from_burn(model, model.layer_norm_eps, Precision::F32)?;
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                let tx = tx.clone();
                let (chunks, next, done, encs, encoder) = (&chunks, &next, &done, &encs, &encoder);
                scope.spawn(move || {
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(c) else { break };
                        let r = run_chunk(encoder, encs, chunk, split, top);
                        let stop = r.is_err();
                        let n = done.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
                        progress(n, total);
                        if tx.send(r).is_err() || stop {
                            break;
                        }
                    }
                });
            }
        });
        drop(tx);
        let mut lower_parts: Vec<Vec<f16>> = vec![Vec::new(); total];
        let mut top_parts: Vec<Vec<f16>> = vec![Vec::new(); total];
        for r in rx {
            for (i, lo, tp) in r? {
                lower_parts[i] = lo;
                top_parts[i] = tp;
            }
        }
        let mut items = Vec::with_capacity(total);
        for (t, e) in texts.iter().zip(&encs) {
            items.push(CacheItem {
                len: e.len(),
                offsets: e.offsets.clone(),
                special: e.special.clone(),
                graph: t.graph.cloned(),
                kind_offset: t.kind_offset,
                hash: text_hash(t.text),
            });
        }
        let tokens = items.iter().map(|i| i.len).sum();
        let meta = CacheMeta {
            version: CACHE_VERSION,
            count: total,
            dim,
            split,
            num_layers,
            max_tokens: tokenizer.max_len(),
            tokens,
            fingerprint: fingerprint(texts, split, tokenizer.max_len(), model_tag),
            has_top: top,
        };
        let lower = lower_parts.concat();
        let top = top_parts.concat();
        Self::assemble(meta, items, lower, top)
    }

    fn assemble(
        meta: CacheMeta,
        items: Vec<CacheItem>,
        lower: Vec<f16>,
        top: Vec<f16>,
    ) -> Result<Self> {
        let mut starts = Vec::with_capacity(items.len());
        let mut pos = 0;
        for it in &items {
            starts.push(pos);
            pos += it.len * meta.dim;
        }
        let top_len = if meta.has_top { pos } else { 0 };
        if lower.len() != pos || top.len() != top_len || items.len() != meta.count {
            return Err(TrainError::Input(format!(
                "cache sizes disagree: {} items for {} declared, {} / {} values for {pos}",
                items.len(),
                meta.count,
                lower.len(),
                top.len()
            )));
        }
        Ok(Self {
            meta,
            items,
            starts,
            lower,
            top,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// States after layer `split` of item `i`: `len * dim` values, row-major.
    pub fn lower(&self, i: usize) -> &[f16] {
        let n = self.items[i].len * self.meta.dim;
        &self.lower[self.starts[i]..self.starts[i] + n]
    }

    /// Final-layer states of item `i` (empty when the cache was built without them: see
    /// [`CacheMeta::has_top`]).
    pub fn top(&self, i: usize) -> &[f16] {
        if !self.meta.has_top {
            return &[];
        }
        let n = self.items[i].len * self.meta.dim;
        &self.top[self.starts[i]..self.starts[i] + n]
    }

    /// Write to `dir` (created; `meta.json` last).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let _ = std::fs::remove_file(dir.join(META_FILE));
        let items_path = dir.join(ITEMS_FILE);
        let f = std::fs::File::create(&items_path).map_err(io_err(&items_path))?;
        let mut w = BufWriter::new(f);
        for it in &self.items {
            serde_json::to_writer(&mut w, it).map_err(|e| TrainError::BadFile {
                path: items_path.clone(),
                message: e.to_string(),
            })?;
            w.write_all(b"\n").map_err(io_err(&items_path))?;
        }
        w.flush().map_err(io_err(&items_path))?;
        for (name, values) in [(LOWER_FILE, &self.lower), (TOP_FILE, &self.top)] {
            let path = dir.join(name);
            let f = std::fs::File::create(&path).map_err(io_err(&path))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            for v in values.iter() {
                w.write_all(&v.to_le_bytes()).map_err(io_err(&path))?;
            }
            w.flush().map_err(io_err(&path))?;
        }
        let meta_path = dir.join(META_FILE);
        let json = serde_json::to_string_pretty(&self.meta).map_err(|e| TrainError::BadFile {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&meta_path, json).map_err(io_err(&meta_path))?;
        Ok(())
    }

    /// The metadata of a complete cache in `dir`, if any.
    pub fn read_meta(dir: &Path) -> Option<CacheMeta> {
        let text = std::fs::read_to_string(dir.join(META_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(io_err(&meta_path))?;
        let meta: CacheMeta = serde_json::from_str(&text).map_err(|e| TrainError::BadFile {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        if meta.version != CACHE_VERSION {
            return Err(TrainError::BadFile {
                path: meta_path,
                message: format!("cache version {} (expected {CACHE_VERSION})", meta.version),
            });
        }
        let items_path = dir.join(ITEMS_FILE);
        let f = std::fs::File::open(&items_path).map_err(io_err(&items_path))?;
        let mut items = Vec::with_capacity(meta.count);
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(io_err(&items_path))?;
            items.push(
                serde_json::from_str(&line).map_err(|e| TrainError::BadLine {
                    path: items_path.clone(),
                    line: i + 1,
                    message: e.to_string(),
                })?,
            );
        }
        let read = |name: &str| -> Result<Vec<f16>> {
            let path = dir.join(name);
            let mut bytes = Vec::new();
            std::fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&path))?;
            if bytes.len() % 2 != 0 {
                return Err(TrainError::BadFile {
                    path,
                    message: "odd byte count".into(),
                });
            }
            Ok(bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect())
        };
        let lower = read(LOWER_FILE)?;
        let top = read(TOP_FILE)?;
        Self::assemble(meta, items, lower, top)
    }

    /// Load the cache in `dir` if it was built from the same inputs, else build and save it.
    pub fn load_or_build(dir: &Path, inputs: CacheInputs<'_>) -> Result<Self> {
        let fp = fingerprint(
            inputs.texts,
            inputs.split,
            inputs.tokenizer.max_len(),
            inputs.model_tag,
        );
        if let Some(meta) = Self::read_meta(dir)
            && meta.fingerprint == fp
            && meta.version == CACHE_VERSION
            && (meta.has_top || !inputs.top)
        {
            return Self::load(dir);
        }
        let cache = Self::build(inputs, 32)?;
        cache.save(dir)?;
        Ok(cache)
    }
}

type ChunkOut = Vec<(usize, Vec<f16>, Vec<f16>)>;

fn run_chunk(
    encoder: &Encoder,
    encs: &[Encoded],
    chunk: &[usize],
    split: usize,
    top: bool,
) -> Result<ChunkOut> {
    let texts: Vec<&[u32]> = chunk.iter().map(|&i| encs[i].ids.as_slice()).collect();
    let conv = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>();
    if !top {
        let lower = encoder.encode_upto(&texts, 1, split)?;
        return Ok(chunk
            .iter()
            .enumerate()
            .map(|(row, &i)| (i, conv(lower.rows(row)), Vec::new()))
            .collect());
    }
    let (top, lower) = encoder.encode_split(&texts, 1, Some(split))?;
    let lower =
        lower.ok_or_else(|| TrainError::Input("the encoder kept no lower states".into()))?;
    Ok(chunk
        .iter()
        .enumerate()
        .map(|(row, &i)| (i, conv(lower.rows(row)), conv(top.rows(row))))
        .collect())
}
