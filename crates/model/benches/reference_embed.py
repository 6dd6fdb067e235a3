#!/usr/bin/env python3
"""PyTorch reference throughput for the gnn-coder-model benchmark.

Embeds exactly the texts that `cargo run --release -p gnn-coder-model --example embed_bench --
--dump-texts FILE` selected, with sentence-transformers (all-MiniLM-L6-v2 from the same PyPI
package), 2 torch threads, batch 32, max_seq_length 256, and prints units/s.

Usage:
    python3 crates/model/benches/reference_embed.py /tmp/gnn_coder_bench_texts.json [MODEL_DIR]
"""

import json
import os
import sys
import time


def main() -> None:
    texts_path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/gnn_coder_bench_texts.json"
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.path.abspath(os.path.join(here, "..", "..", "..", "models", "all-MiniLM-L6-v2"))
    model_dir = sys.argv[2] if len(sys.argv) > 2 else default_dir
    threads = int(os.environ.get("BENCH_THREADS", "2"))

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    tok = model.tokenizer
    lens = [min(len(tok(t)["input_ids"]), 256) for t in texts]
    model.encode(texts[:32], batch_size=32)  # warm-up
    t0 = time.perf_counter()
    model.encode(texts, batch_size=32, normalize_embeddings=True)
    secs = time.perf_counter() - t0
    print(
        f"pytorch {torch.__version__} ({threads} threads): {len(texts)} units, "
        f"mean {sum(lens) / len(lens):.1f} tokens, batch 32: {secs:.2f}s = {len(texts) / secs:.1f} units/s"
    )


if __name__ == "__main__":
    main()
