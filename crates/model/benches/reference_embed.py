#!/usr/bin/env python3
"""PyTorch reference side of the embedding benchmarks.

Embeds a JSON list of texts with sentence-transformers (all-MiniLM-L6-v2 from the same PyPI
package the engine uses), 2 torch threads, batch 32, max_seq_length 256, in f32 or under
`torch.autocast("cpu", dtype=torch.bfloat16)`.

One-shot (prints units/s):
    python3 crates/model/benches/reference_embed.py TEXTS.json [MODEL_DIR]

Served (what `speed_bench` (crates/engine/examples) drives, so both sides alternate in one run): loads the model, warms
up, prints `ready`, then answers each stdin line `f32` or `bf16` with one JSON line
`{"mode", "units", "tokens", "secs"}`, and `vectors MODE PATH` by writing that mode's
normalized vectors to PATH as JSON (for the cosine columns).
    python3 crates/model/benches/reference_embed.py --serve TEXTS.json [MODEL_DIR]
"""

import contextlib
import json
import os
import sys
import time


def load(model_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 256
    return torch, model, threads


def encode(torch, model, texts, mode, as_lists=False):
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if mode == "bf16"
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), ctx:
        v = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=False)
    return [x.float().tolist() for x in v] if as_lists else v


def main() -> None:
    args = sys.argv[1:]
    serve = bool(args) and args[0] == "--serve"
    if serve:
        args = args[1:]
    texts_path = args[0] if args else "/tmp/gnn_coder_bench_texts.json"
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.path.abspath(os.path.join(here, "..", "..", "..", "models", "all-MiniLM-L6-v2"))
    model_dir = args[1] if len(args) > 1 else default_dir

    with open(texts_path, encoding="utf-8") as f:
        texts = json.load(f)
    torch, model, threads = load(model_dir)
    tok = model.tokenizer
    tokens = sum(min(len(tok(t)["input_ids"]), 256) for t in texts)
    for mode in ("f32", "bf16"):
        encode(torch, model, texts[:32], mode)  # warm-up

    if not serve:
        t0 = time.perf_counter()
        encode(torch, model, texts, "f32")
        secs = time.perf_counter() - t0
        print(
            f"pytorch {torch.__version__} ({threads} threads): {len(texts)} units, "
            f"mean {tokens / len(texts):.1f} tokens, batch 32: {secs:.2f}s = {len(texts) / secs:.1f} units/s"
        )
        return

    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": threads}), flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "vectors" and len(parts) == 3:
            vecs = encode(torch, model, texts, parts[1], as_lists=True)
            with open(parts[2], "w", encoding="utf-8") as f:
                json.dump(vecs, f)
            print(json.dumps({"written": parts[2]}), flush=True)
            continue
        mode = parts[0]
        if mode not in ("f32", "bf16"):
            print(json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
            continue
        t0 = time.perf_counter()
        encode(torch, model, texts, mode)
        secs = time.perf_counter() - t0
        print(json.dumps({"mode": mode, "units": len(texts), "tokens": tokens, "secs": secs}), flush=True)


if __name__ == "__main__":
    main()
