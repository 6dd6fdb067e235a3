#!/usr/bin/env python3
"""Fit the learned fusion's weights (crates/engine/src/rerank.rs, LEARNED) on dumped candidates.

usage: training/fusion/fit.py QUERIES.jsonl FEATURES.jsonl [--l2 X] [--steps N] [--holdout F]
  QUERIES   a benchmark's queries with gold answers (mine.py's queries.jsonl), built from the
            TRAINING manifests' packages only (training/fusion/README.md)
  FEATURES  `cargo run -p gnn-coder-engine --example fusion_features -- --index ... --queries
            QUERIES --out FEATURES`: per query the first stage's top candidates, features each
A candidate is right by ../shared/bench/score.py's rule (the gold file, a span holding the gold
definition line, not much larger than the gold function). The model is linear; the loss is the
listwise softmax cross-entropy of the right candidate against its pool (queries whose pool
holds no right candidate teach nothing and are left out), plus l2 * |w|^2 on every weight but
"fused"'s, fitted by full-batch Adam from the weighted fusion (10 x "fused"). Queries are split
by package (a stable hash of the gold path's package folder) into fit and holdout parts; the
script prints MRR@10 of the first stage's order and of the fitted model on both, per language,
and the weights as a Rust array for LEARNED. Needs numpy.
"""
import argparse
import hashlib
import json

import numpy as np


def norm(p):
    return p.replace("\\", "/").lstrip("./")


def hit(g, c):
    if not norm(c["path"]).endswith(norm(g["path"])):
        return False
    s, e = int(c["start_line"]), int(c["end_line"])
    return s <= g["line"] <= e and (e - s) <= (g["end_line"] - g["line"]) + 20


def package(path):
    parts = norm(path).split("/")
    return "/".join(parts[:2])


def mrr(scores, labels, groups):
    out = []
    for q in groups:
        s, y = scores[q], labels[q]
        order = np.argsort(-s, kind="stable")[:10]
        r = next((i + 1 for i, j in enumerate(order) if y[j]), 0)
        out.append(1.0 / r if r else 0.0)
    return float(np.mean(out)) if out else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("queries")
    ap.add_argument("features")
    ap.add_argument("--l2", type=float, default=0.01)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--drop", default="", help="comma-separated features forced to 0 weight")
    a = ap.parse_args()

    gold = {}
    for line in open(a.queries):
        q = json.loads(line)
        gold[q["id"]] = q
    lines = open(a.features).read().splitlines()
    names = json.loads(lines[0])["features"]
    X, Y, ids = [], [], []
    for line in lines[1:]:
        r = json.loads(line)
        g = gold.get(r["id"])
        if g is None or not r["candidates"]:
            continue
        X.append(np.array([c["features"] for c in r["candidates"]], dtype=np.float64))
        Y.append(np.array([hit(g, c) for c in r["candidates"]], dtype=bool))
        ids.append(r["id"])
    n = len(names)
    fused = names.index("fused")
    hold = {i for i in ids
            if int(hashlib.sha256(package(gold[i]["path"]).encode()).hexdigest(), 16) % 1000
            < a.holdout * 1000}
    fit_q = [k for k, i in enumerate(ids) if i not in hold and Y[k].any()]
    w0 = np.zeros(n)
    w0[fused] = 1.0
    mask = np.ones(n)
    for d in filter(None, a.drop.split(",")):
        mask[names.index(d)] = 0.0
    # The first stage's scores are in [0, 1]; a listwise softmax needs a scale (a temperature):
    # start from the weighted fusion times 10.
    w = w0 * 10.0
    m, v = np.zeros(n), np.zeros(n)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for t in range(1, a.steps + 1):
        grad = np.zeros(n)
        for k in fit_q:
            s = X[k] @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            target = Y[k] / Y[k].sum()
            grad += X[k].T @ (p - target)
        grad /= max(len(fit_q), 1)
        grad += 2 * a.l2 * np.where(np.arange(n) == fused, 0.0, w)
        grad *= mask
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        w -= a.lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    langs = sorted({gold[i]["lang"] for i in ids})
    base = {k: X[k][:, fused] for k in range(len(ids))}
    learned = {k: X[k] @ w for k in range(len(ids))}
    labels = {k: Y[k] for k in range(len(ids))}
    for part, sel in (("fit", lambda i: i not in hold), ("holdout", lambda i: i in hold)):
        ks = [k for k, i in enumerate(ids) if sel(i)]
        row = [f"{part} (n={len(ks)}): weighted {mrr(base, labels, ks):.4f} -> learned {mrr(learned, labels, ks):.4f}"]
        for lang in langs:
            kl = [k for k in ks if gold[ids[k]]["lang"] == lang]
            if kl:
                row.append(f"{lang} {mrr(base, labels, kl):.3f}->{mrr(learned, labels, kl):.3f}")
        print(" | ".join(row))
    print("weights:")
    for nm, x in zip(names, w):
        print(f"  {nm:16s} {x:+.4f}")
    print("LEARNED = [" + ", ".join(f"{x:.4f}" for x in w) + "]")


if __name__ == "__main__":
    main()
