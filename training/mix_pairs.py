#!/usr/bin/env python3
"""A seeded per-language sample of mined pairs (the `mine` tool's JSONL), for a training mix.

usage: training/mix_pairs.py IN.jsonl OUT.jsonl LANG=N [LANG=N ...] [--seed S]
  LANG is a pair's "lang" (python, rust, javascript, typescript, tsx, go, java, ...); several
  languages may share one quota with "+" (typescript+tsx=5500). N = 0 or more than there are
  takes them all. Pairs keep the input's order (package, path, line), which the trainer's
  hard-negative groups and its own shuffling start from; the sample is by package-stable
  hashing of the pair id with the seed, so the same inputs and seed give the same file.
Prints the count per language.
"""
import hashlib
import json
import sys


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--seed")]
    seed = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--seed=")), "1")
    if len(args) < 3:
        sys.exit(__doc__)
    src, dst, quotas = args[0], args[1], {}
    for q in args[2:]:
        langs, n = q.split("=")
        quotas[tuple(langs.split("+"))] = int(n)
    pairs = [json.loads(l) for l in open(src)]
    keep = set()
    for langs, n in quotas.items():
        ids = [p["id"] for p in pairs if p["lang"] in langs]
        ids.sort(key=lambda i: hashlib.sha256(f"{seed}/{i}".encode()).hexdigest())
        keep.update(ids if n <= 0 else ids[:n])
    counts = {}
    with open(dst, "w") as f:
        for p in pairs:
            if p["id"] in keep:
                f.write(json.dumps(p) + "\n")
                counts[p["lang"]] = counts.get(p["lang"], 0) + 1
    print(json.dumps(counts, sort_keys=True), sum(counts.values()))


if __name__ == "__main__":
    main()
