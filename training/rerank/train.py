#!/usr/bin/env python3
"""A cross-encoder reranker: the question and one candidate's code read together by a six-layer
MiniLM (started from GNN-Coder's fine-tuned layers), mean-pooled, one linear score.

    train.py train GROUPS OUT [--steps N] [--batch Q] [--group G] ...   (resumes from OUT)
    train.py score GROUPS WEIGHTS OUT [--depth N]                       (scores candidates)
    train.py export OUT WEIGHTS                                         (burn names, f16)
    train.py reference WEIGHTS EMBEDDINGS FIXTURE                       (parity fixture)

`export` writes the layers in the product's burn names (what `gnn_coder_model::CrossEncoder`
loads); the quantize tool then stores them as `weights/gnn-coder-rerank` ships (README.md here).

GROUPS is `candidates.py` output. A training group is one question, its answer (the candidate the
first stage returned for it; questions it missed are left out) and G - 1 candidates of the first stage that are not the answer, drawn from its top 30 (the
closer to the top, the likelier). Loss: softmax cross-entropy of the answer among its group.
Input ids: [CLS] question [SEP] code [SEP], the question cut to 32 word pieces, the whole to
--max-tokens (192); token type 0 throughout, so the product's encoder runs it unchanged.
Embeddings stay frozen (the product loads them from the base model); the six layers and the
head train. bf16 autocast on CPU. A checkpoint (model, optimizer, step, RNG) goes to
OUT/checkpoint.pt every --checkpoint-every steps and at the end; the same command resumes.

Needs: pip install torch==2.9.0 tokenizers safetensors numpy
"""
import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "models" / "all-MiniLM-L6-v2"
TUNED = ROOT / "weights" / "gnn-coder"
QUERY_TOKENS = 32
CLS, SEP = 101, 102


class Layer(torch.nn.Module):
    def __init__(self, d=384, heads=12, inter=1536):
        super().__init__()
        self.heads = heads
        self.q = torch.nn.Linear(d, d)
        self.k = torch.nn.Linear(d, d)
        self.v = torch.nn.Linear(d, d)
        self.o = torch.nn.Linear(d, d)
        self.ln1 = torch.nn.LayerNorm(d, eps=1e-12)
        self.up = torch.nn.Linear(d, inter)
        self.down = torch.nn.Linear(inter, d)
        self.ln2 = torch.nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, bias):
        b, t, d = x.shape
        h = self.heads

        def split(y):
            return y.view(b, t, h, d // h).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           attn_mask=bias)
        a = a.transpose(1, 2).reshape(b, t, d)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.down(F.gelu(self.up(x))))


class CrossEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.word = torch.nn.Embedding(30522, 384)
        self.pos = torch.nn.Embedding(512, 384)
        self.typ = torch.nn.Embedding(2, 384)
        self.ln = torch.nn.LayerNorm(384, eps=1e-12)
        self.layers = torch.nn.ModuleList(Layer() for _ in range(6))
        self.score = torch.nn.Linear(384, 1)

    def forward(self, ids, mask):
        t = ids.shape[1]
        x = self.word(ids) + self.pos.weight[:t] + self.typ.weight[0]
        x = self.ln(x)
        bias = ((1.0 - mask[:, None, None, :]) * -1e4).to(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.score(pooled.float()).squeeze(-1)


# Burn names (as the product's encoder fetches them) of each layer's parameters, and whether
# the product stores the matrix transposed ([in, out]).
LAYER_NAMES = {
    "q": "attention.self_attn.query", "k": "attention.self_attn.key",
    "v": "attention.self_attn.value", "o": "attention.output.dense",
    "up": "intermediate.dense", "down": "output.dense",
}
NORM_NAMES = {"ln1": "attention.output.layer_norm", "ln2": "output.layer_norm"}


def dequant(tensors: dict) -> dict:
    for name in [k for k, v in tensors.items() if v.dtype == np.int8]:
        scale = tensors.pop(name + ".scale")
        tensors[name] = tensors[name].astype(np.float32) * scale
    return {k: v.astype(np.float32) for k, v in tensors.items()}


def load_initial(model: CrossEncoder, tuned_dir: Path) -> None:
    base = load_file(BASE / "model.safetensors")
    base = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in base.items()}
    sd = model.state_dict()
    sd["word.weight"] = torch.from_numpy(base["embeddings.word_embeddings.weight"].copy())
    sd["pos.weight"] = torch.from_numpy(base["embeddings.position_embeddings.weight"].copy())
    sd["typ.weight"] = torch.from_numpy(base["embeddings.token_type_embeddings.weight"].copy())
    sd["ln.weight"] = torch.from_numpy(base["embeddings.LayerNorm.weight"].copy())
    sd["ln.bias"] = torch.from_numpy(base["embeddings.LayerNorm.bias"].copy())
    tuned = dequant(load_file(tuned_dir / "transformer.safetensors"))
    for i in range(6):
        for short, burn in LAYER_NAMES.items():
            w = tuned[f"encoder.layer.{i}.{burn}.weight"]  # [in, out]
            sd[f"layers.{i}.{short}.weight"] = torch.from_numpy(w.T.copy())
            sd[f"layers.{i}.{short}.bias"] = torch.from_numpy(tuned[f"encoder.layer.{i}.{burn}.bias"].reshape(-1).copy())
        for short, burn in NORM_NAMES.items():
            sd[f"layers.{i}.{short}.weight"] = torch.from_numpy(tuned[f"encoder.layer.{i}.{burn}.gamma"].reshape(-1).copy())
            sd[f"layers.{i}.{short}.bias"] = torch.from_numpy(tuned[f"encoder.layer.{i}.{burn}.beta"].reshape(-1).copy())
    # Small random weights: a zero head would pass no gradient to the layers until it grew.
    sd["score.weight"] = torch.randn(1, 384, generator=torch.Generator().manual_seed(17)) * 0.05
    sd["score.bias"] = torch.zeros(1)
    model.load_state_dict(sd)


class Encoder:
    def __init__(self, max_tokens: int):
        self.tok = Tokenizer.from_file(str(BASE / "tokenizer.json"))
        self.tok.no_truncation()
        self.tok.no_padding()
        self.max_tokens = max_tokens
        self.cache: dict[str, list[int]] = {}

    def ids(self, text: str, limit: int) -> list[int]:
        key = text[:4000]
        got = self.cache.get(key)
        if got is None:
            got = self.tok.encode(key, add_special_tokens=False).ids[:512]
            if len(self.cache) < 200_000:
                self.cache[key] = got
        return got[:limit]

    def pair(self, query: str, code: str) -> list[int]:
        q = self.ids(query, QUERY_TOKENS)
        c = self.ids(code, self.max_tokens - len(q) - 3)
        return [CLS] + q + [SEP] + c + [SEP]

    def batch(self, pairs: list[tuple[str, str]]):
        seqs = [self.pair(q, c) for q, c in pairs]
        t = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), t, dtype=torch.long)
        mask = torch.zeros(len(seqs), t)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1.0
        return ids, mask


def read_groups(path: str) -> list[dict]:
    return [json.loads(l) for l in open(path, encoding="utf-8") if l.strip()]


def train(args) -> None:
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The answer as the first stage returned it (its unit's own lines: decorators, attributes
    # and all). The mined gold span starts at the definition line, so with it as the positive
    # the model learned that a decorator line marks a wrong answer. Questions whose answer the
    # first stage missed are left out for the same reason.
    groups = []
    for g in read_groups(args.groups):
        answer = next((c["code"] for c in g["cands"] if c["label"] and c["code"].strip()), None)
        if answer is not None:
            groups.append(dict(g, gold=answer))
    rng = random.Random(args.seed)
    enc = Encoder(args.max_tokens)
    model = CrossEncoder()
    load_initial(model, Path(args.init))
    for p in [model.word.weight, model.pos.weight, model.typ.weight, model.ln.weight, model.ln.bias]:
        p.requires_grad_(False)
    head = [model.score.weight, model.score.bias]
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("score.")]
    opt = torch.optim.AdamW([{"params": body, "lr": args.lr}, {"params": head, "lr": args.head_lr}],
                            weight_decay=0.01)
    step = 0
    ckpt = out / "checkpoint.pt"
    config = {k: v for k, v in vars(args).items() if k not in ("cmd",)}
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["config"] != config:
            sys.exit(f"{ckpt} was written with another configuration: {state['config']}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
        rng.setstate(state["rng"])
        print(json.dumps({"resumed_at": step}), flush=True)
    base_lrs = [args.lr, args.head_lr]
    warm = max(1, args.steps // 40)
    log = open(out / "log.jsonl", "a")
    t0 = time.time()
    order: list[int] = []
    if ckpt.exists():
        order = state.get("order", [])
    while step < args.steps:
        if not order:
            order = list(range(len(groups)))
            rng.shuffle(order)
        batch_groups = [groups[order.pop()] for _ in range(min(args.batch, len(order) or 1))]
        pairs = []
        for g in batch_groups:
            negs = [c["code"] for c in g["cands"][:30]
                    if not c["label"] and not c.get("overlap") and c["code"].strip()
                    and c["code"].strip() != g["gold"].strip()]
            # Closer candidates are likelier: weight 1 / sqrt(rank + 1), without replacement.
            chosen = []
            pool = list(range(len(negs)))
            while pool and len(chosen) < args.group - 1:
                w = [1.0 / math.sqrt(i + 1) for i in pool]
                k = rng.choices(range(len(pool)), weights=w)[0]
                chosen.append(negs[pool.pop(k)])
            while len(chosen) < args.group - 1:
                other = groups[rng.randrange(len(groups))]["gold"]
                chosen.append(other)
            pairs.extend([(g["query"], g["gold"])] + [(g["query"], c) for c in chosen])
        ids, mask = enc.batch(pairs)
        frac = step / args.steps
        scale = (step + 1) / warm if step < warm else 0.5 * (1 + math.cos(math.pi * (frac - warm / args.steps) / (1 - warm / args.steps)))
        for pg, lr in zip(opt.param_groups, base_lrs):
            pg["lr"] = lr * scale
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scores = model(ids, mask)
        logits = scores.float().view(len(batch_groups), args.group) / args.temperature
        loss = F.cross_entropy(logits, torch.zeros(len(batch_groups), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(body + head, 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            acc = (logits.argmax(1) == 0).float().mean().item()
            rec = {"step": step, "loss": round(loss.item(), 4), "top1": round(acc, 3),
                   "s": round(time.time() - t0, 1)}
            print(json.dumps(rec), flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % args.checkpoint_every == 0 or step == args.steps:
            tmp = out / "checkpoint.pt.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "rng": rng.getstate(), "order": order, "config": config}, tmp)
            os.replace(tmp, ckpt)


def load_trained(path: Path) -> CrossEncoder:
    model = CrossEncoder()
    state = torch.load(path / "checkpoint.pt", weights_only=False)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["config"]


@torch.no_grad()
def score(args) -> None:
    model, config = load_trained(Path(args.weights))
    enc = Encoder(config["max_tokens"])
    groups = read_groups(args.groups)
    t0 = time.time()
    with open(args.out, "w") as out:
        for n, g in enumerate(groups):
            cands = g["cands"][:args.depth]
            s = []
            for i in range(0, len(cands), 32):
                ids, mask = enc.batch([(g["query"], c["code"]) for c in cands[i:i + 32]])
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    s.extend(model(ids, mask).float().tolist())
            out.write(json.dumps({"id": g["id"], "ce": s}) + "\n")
            if n % 200 == 0:
                print(json.dumps({"done": n, "s": round(time.time() - t0, 1)}), file=sys.stderr, flush=True)


def export(args) -> None:
    model, config = load_trained(Path(args.out))
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    tensors = {}
    for i in range(6):
        for short, burn in LAYER_NAMES.items():
            tensors[f"encoder.layer.{i}.{burn}.weight"] = sd[f"layers.{i}.{short}.weight"].T.copy()
            tensors[f"encoder.layer.{i}.{burn}.bias"] = sd[f"layers.{i}.{short}.bias"]
        for short, burn in NORM_NAMES.items():
            tensors[f"encoder.layer.{i}.{burn}.gamma"] = sd[f"layers.{i}.{short}.weight"]
            tensors[f"encoder.layer.{i}.{burn}.beta"] = sd[f"layers.{i}.{short}.bias"]
    dest = Path(args.weights)
    dest.mkdir(parents=True, exist_ok=True)
    meta = {"gnn_coder.format": "1", "gnn_coder.dtype": "f16"}
    save_file({k: v.astype(np.float16) for k, v in tensors.items()}, dest / "transformer.safetensors", metadata=meta)
    save_file({"score.weight": sd["score.weight"].reshape(-1).astype(np.float32),
               "score.bias": sd["score.bias"].reshape(-1).astype(np.float32)},
              dest / "head.safetensors", metadata={"gnn_coder.format": "1"})
    (dest / "rerank.json").write_text(json.dumps({
        "max_tokens": config["max_tokens"], "query_tokens": QUERY_TOKENS, "pooling": "mean",
        "layers": 6, "temperature": config["temperature"]}, indent=2) + "\n")
    print(json.dumps({"weights": str(dest), "tensors": len(tensors)}))


def load_exported(weights: Path, embeddings: Path) -> CrossEncoder:
    """An exported (or quantized) reranker folder over the embedding tables of `embeddings`
    (a folder with embeddings.safetensors, as weights/gnn-coder ships, or model.safetensors)."""
    model = CrossEncoder()
    sd = model.state_dict()
    name = "embeddings.safetensors" if (embeddings / "embeddings.safetensors").exists() else "model.safetensors"
    emb = dequant(load_file(embeddings / name))
    emb = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in emb.items()}
    for ours, theirs in [("word.weight", "embeddings.word_embeddings.weight"),
                         ("pos.weight", "embeddings.position_embeddings.weight"),
                         ("typ.weight", "embeddings.token_type_embeddings.weight"),
                         ("ln.weight", "embeddings.LayerNorm.weight"),
                         ("ln.bias", "embeddings.LayerNorm.bias")]:
        sd[ours] = torch.from_numpy(emb[theirs].copy())
    layers = dequant(load_file(weights / "transformer.safetensors"))
    for i in range(6):
        for short, burn in LAYER_NAMES.items():
            sd[f"layers.{i}.{short}.weight"] = torch.from_numpy(layers[f"encoder.layer.{i}.{burn}.weight"].T.copy())
            sd[f"layers.{i}.{short}.bias"] = torch.from_numpy(layers[f"encoder.layer.{i}.{burn}.bias"].reshape(-1).copy())
        for short, burn in NORM_NAMES.items():
            sd[f"layers.{i}.{short}.weight"] = torch.from_numpy(layers[f"encoder.layer.{i}.{burn}.gamma"].reshape(-1).copy())
            sd[f"layers.{i}.{short}.bias"] = torch.from_numpy(layers[f"encoder.layer.{i}.{burn}.beta"].reshape(-1).copy())
    head = dequant(load_file(weights / "head.safetensors"))
    sd["score.weight"] = torch.from_numpy(head["score.weight"].reshape(1, -1).copy())
    sd["score.bias"] = torch.from_numpy(head["score.bias"].reshape(1).copy())
    model.load_state_dict(sd)
    model.eval()
    return model


REFERENCE_PAIRS = [
    ("parse a size with a unit suffix", "def parse_size(text):\n    number = int(text[:-1])\n    unit = text[-1]\n    return number * {'K': 1024, 'M': 1 << 20}[unit]\n"),
    ("parse a size with a unit suffix", "def retry_with_backoff(fn, attempts):\n    for i in range(attempts):\n        try:\n            return fn()\n        except IOError:\n            sleep(2 ** i)\n"),
    ("Öffne die Datei — read the whole file", "fn read_all(path: &Path) -> io::Result<String> {\n    // ünïcödé ✓\n    std::fs::read_to_string(path)\n}\n"),
    ("a question longer than the reranker's question budget of thirty-two word pieces, which is cut before the code so that the code keeps its room in the input of one hundred and ninety-two", "x = 1\n" * 400),
    ("empty code", ""),
]


@torch.no_grad()
def reference(args) -> None:
    """Logits of REFERENCE_PAIRS with the product's files in f32: the Rust parity test's
    fixture (crates/model/tests/data/rerank_reference.json)."""
    model = load_exported(Path(args.weights), Path(args.embeddings))
    config = json.loads((Path(args.weights) / "rerank.json").read_text())
    enc = Encoder(config["max_tokens"])
    rows = []
    for q, c in REFERENCE_PAIRS:
        ids, mask = enc.batch([(q, c)])
        rows.append({"query": q, "code": c, "ids": ids[0].tolist(), "logit": model(ids, mask).item()})
    Path(args.out).write_text(json.dumps({"pairs": rows}, indent=1, ensure_ascii=False) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("groups")
    t.add_argument("out")
    t.add_argument("--init", default=str(TUNED))
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--group", type=int, default=8)
    t.add_argument("--max-tokens", type=int, default=192)
    t.add_argument("--lr", type=float, default=3e-5)
    t.add_argument("--head-lr", type=float, default=1e-3)
    t.add_argument("--temperature", type=float, default=1.0)
    t.add_argument("--checkpoint-every", type=int, default=100)
    t.add_argument("--seed", type=int, default=17)
    s = sub.add_parser("score")
    s.add_argument("groups")
    s.add_argument("weights")
    s.add_argument("out")
    s.add_argument("--depth", type=int, default=30)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("weights")
    r = sub.add_parser("reference")
    r.add_argument("weights")
    r.add_argument("embeddings")
    r.add_argument("out")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("THREADS", os.cpu_count() or 2)))
    {"train": train, "score": score, "export": export, "reference": reference}[args.cmd](args)


if __name__ == "__main__":
    main()
