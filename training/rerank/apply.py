#!/usr/bin/env python3
"""Reorders the first stage's candidates by cross-encoder scores (from `train.py score`) and
writes results that ../shared/bench/score.py scores: a quick look at depth and mixing before the
product path measures them.

usage: apply.py CANDIDATES SCORES OUT [--depth N] [--mix W]
  the top N candidates (default 20) are ordered by  ce + W * first-stage score  (W default 0);
  the rest follow in the first stage's order.
"""
import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("candidates")
    p.add_argument("scores")
    p.add_argument("out")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--mix", type=float, default=0.0)
    a = p.parse_args()
    ce = {}
    for line in open(a.scores):
        r = json.loads(line)
        ce[r["id"]] = r["ce"]
    with open(a.out, "w") as out:
        for line in open(a.candidates):
            g = json.loads(line)
            cands = g["cands"]
            s = ce.get(g["id"], [])
            n = min(a.depth, len(cands), len(s))
            head = sorted(range(n), key=lambda i: -(s[i] + a.mix * cands[i]["score"]))
            order = head + list(range(n, len(cands)))
            results = [{k: cands[i][k] for k in ("path", "start_line", "end_line")} for i in order]
            out.write(json.dumps({"id": g["id"], "results": results[:10]}) + "\n")


if __name__ == "__main__":
    main()
