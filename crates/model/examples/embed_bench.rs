//! Embedding throughput benchmark.
//!
//! ```text
//! cargo run --release -p gnn-coder-model --example embed_bench -- \
//!     [--corpus /work/data/dev/corpus] [--limit 1000] [--batch 32] [--max-tokens 256] \
//!     [--dump-texts /tmp/gnn_coder_bench_texts.json] [--device flex]
//! ```
//!
//! Texts: every `.py` and `.rs` file under the corpus (sorted by path) is cut into "functions"
//! at lines whose trimmed start is a definition keyword (`def`, `async def`, `class`, `fn`,
//! `pub fn`, `impl`, ...): each chunk runs from one such line to the next. Chunks shorter than
//! 2 lines are dropped; the first `--limit` chunks are used. `--dump-texts` writes them as JSON
//! for `benches/reference_embed.py` (the PyTorch/sentence-transformers number).
//!
//! Measures (1) transformer throughput (units/s, `embed_sentences`: tokenize, batch, forward,
//! pool) and (2) the graph part alone per unit: graph batch building, graph encoder and fusion
//! on synthetic ASTs (a random tree with ~1 node per 6 bytes, 10..=2000 nodes, nested spans),
//! given the batch's token states.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use gnn_coder_model::{
    BertModel, Embedder, EmbedderOptions, GraphBatch, GraphInput, default_model_dir,
};
use gnn_coder_syntax::AstGraph;

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("py" | "rs")) {
            out.push(p);
        }
    }
}

fn is_def_line(line: &str) -> bool {
    let t = line.trim_start();
    const KW: &[&str] = &[
        "def ",
        "async def ",
        "class ",
        "fn ",
        "pub fn ",
        "pub(crate) fn ",
        "async fn ",
        "pub async fn ",
        "impl ",
        "impl<",
        "pub(crate) async fn ",
        "const fn ",
        "pub const fn ",
    ];
    KW.iter().any(|k| t.starts_with(k))
}

fn split_functions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<&str> = Vec::new();
    for line in text.lines() {
        if is_def_line(line) && !cur.is_empty() {
            if cur.len() >= 2 && is_def_line(cur[0]) {
                out.push(cur.join("\n"));
            }
            cur.clear();
        }
        cur.push(line);
    }
    if cur.len() >= 2 && is_def_line(cur[0]) {
        out.push(cur.join("\n"));
    }
    out
}

struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn synthetic_graph(text_len: usize, seed: u64) -> AstGraph {
    let n = (text_len / 6).clamp(10, 2000);
    let mut rng = Lcg(seed);
    let mut g = AstGraph::default();
    for i in 0..n {
        if i == 0 {
            g.spans.push((0, text_len as u32));
            g.kinds.push(1);
        } else {
            let parent = rng.below(i as u64) as usize;
            let (ps, pe) = g.spans[parent];
            let a = ps + rng.below((pe - ps) as u64 + 1) as u32;
            let b = a + rng.below((pe - a) as u64 + 1) as u32;
            g.edges.push((parent as u32, i as u32));
            g.child_counts[parent] += 1;
            g.spans.push((a, b));
            g.kinds.push(1 + rng.below(200) as u16);
        }
        g.child_counts.push(0);
    }
    g
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut corpus = PathBuf::from("/work/data/dev/corpus");
    let mut limit = 1000usize;
    let mut batch = 32usize;
    let mut max_tokens = 256usize;
    let mut dump: Option<PathBuf> = None;
    let mut device_name = "flex".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--corpus" => corpus = PathBuf::from(val()?),
            "--limit" => limit = val()?.parse()?,
            "--batch" => batch = val()?.parse()?,
            "--max-tokens" => max_tokens = val()?.parse()?,
            "--dump-texts" => dump = Some(PathBuf::from(val()?)),
            "--device" => device_name = val()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }

    let mut files = Vec::new();
    collect_files(&corpus, &mut files);
    files.sort();
    let mut texts = Vec::new();
    for f in &files {
        if let Ok(t) = std::fs::read_to_string(f) {
            texts.extend(split_functions(&t));
        }
        if texts.len() >= limit {
            break;
        }
    }
    texts.truncate(limit);
    if texts.is_empty() {
        return Err(format!("no functions found under {}", corpus.display()).into());
    }
    if let Some(path) = &dump {
        std::fs::write(path, serde_json::to_string(&texts)?)?;
        println!("wrote {} texts to {}", texts.len(), path.display());
    }

    let device = match device_name.as_str() {
        "flex" => Device::flex(),
        // Add the `ndarray` feature to burn to compare (measured slower, see the crate docs).
        other => return Err(format!("unknown device {other} (built with: flex)").into()),
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut model_dir = default_model_dir();
    if !model_dir.is_dir() {
        model_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-MiniLM-L6-v2");
    }
    let mut opts = EmbedderOptions::new(model_dir);
    opts.batch_size = batch;
    opts.max_tokens = max_tokens;
    let t0 = Instant::now();
    let emb = Embedder::load_on(&opts, device.clone())?;
    println!(
        "loaded model in {:.2}s on {device_name} ({threads} threads available)",
        t0.elapsed().as_secs_f64()
    );

    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encs = emb.tokenize(&refs)?;
    let mean_tokens = encs.iter().map(|e| e.len()).sum::<usize>() as f64 / encs.len() as f64;
    // Warm-up.
    emb.embed_sentences(&refs[..refs.len().min(batch)])?;
    let t = Instant::now();
    let vecs = emb.embed_sentences(&refs)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "transformer: {} units, mean {:.1} tokens (max {}), batch {batch}: {:.2}s = {:.1} units/s",
        vecs.len(),
        mean_tokens,
        max_tokens,
        secs,
        vecs.len() as f64 / secs
    );

    // Graph part alone.
    let graphs: Vec<AstGraph> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| synthetic_graph(t.len(), i as u64 + 1))
        .collect();
    let total_nodes: usize = graphs.iter().map(|g| g.len()).sum();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encs[i].len());
    let head = &emb.model().head;
    let kind_vocab = emb.head_config().graph.kind_vocab_size;
    let mut graph_secs = 0.0;
    for chunk in order.chunks(batch) {
        let l = chunk.iter().map(|&i| encs[i].len()).max().unwrap_or(1);
        let b = chunk.len();
        let mut ids = vec![0i64; b * l];
        let mut mask = vec![0f32; b * l];
        for (r, &i) in chunk.iter().enumerate() {
            for (j, &id) in encs[i].ids.iter().enumerate() {
                ids[r * l + j] = id as i64;
                mask[r * l + j] = 1.0;
            }
        }
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, l]), &device);
        let mask = Tensor::<2>::from_data(TensorData::new(mask, [b, l]), &device);
        let states = emb.model().transformer.forward(ids, mask.clone());
        let seq = BertModel::mean_pool(states.clone(), mask);
        // Materialize the transformer output before timing the graph part.
        let _ = seq.clone().into_data();
        let t = Instant::now();
        let inputs: Vec<GraphInput<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(row, &i)| GraphInput {
                row,
                graph: &graphs[i],
                tokens: &encs[i],
                kind_offset: 0,
            })
            .collect();
        let gb = GraphBatch::build(&inputs, l, kind_vocab)?;
        let out = head.code_vectors(seq, states, Some(&gb))?;
        let _ = out.into_data();
        graph_secs += t.elapsed().as_secs_f64();
    }
    println!(
        "graph part (batch build + 3x FAConv/ASTGPool + fusion), synthetic ASTs mean {:.0} nodes: \
         {:.3} ms/unit ({:.1} units/s)",
        total_nodes as f64 / texts.len() as f64,
        1000.0 * graph_secs / texts.len() as f64,
        texts.len() as f64 / graph_secs
    );
    Ok(())
}
