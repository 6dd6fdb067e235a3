#!/usr/bin/env python3
"""The first stage's candidates of every question, with their code and whether each is the answer:
the cross-encoder's training groups (on a benchmark mined from training packages) and its
evaluation input (on dev).

usage: candidates.py QUERIES RESULTS CORPUS OUT
  QUERIES  a mine.py queries.jsonl (gold path, line, end_line)
  RESULTS  `gnn-coder search --index I --queries QUERIES --top-k K --json` of the same questions
  CORPUS   the corpus folder the index was built from (paths in RESULTS are relative to it)
  OUT      one line per question: {"id", "lang", "query", "gold": code, "cands": [{"code",
           "label", "overlap", "score", "path", "start_line",
           "end_line"}, ...]} in the first stage's order.

A candidate is the answer by score.py's rule (the gold file, a span holding the gold line, at most
20 lines longer). Code is the candidate's lines as in the file, cut to 8,000 characters.
"""
import json
import sys
from pathlib import Path

MAX_CHARS = 8000


def norm(p: str) -> str:
    return p.replace("\\", "/").lstrip("./")


def hit(g: dict, r: dict) -> bool:
    s, e = int(r["start_line"]), int(r["end_line"])
    if not norm(r.get("path", "")).endswith(norm(g["path"])):
        return False
    span = g["end_line"] - g["line"]
    return s <= g["line"] <= e and (e - s) <= span + 20


class Files:
    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[str, list[str]] = {}

    def lines(self, path: str, start: int, end: int) -> str:
        if path not in self.cache:
            if len(self.cache) > 4096:
                self.cache.clear()
            try:
                text = (self.root / path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self.cache[path] = text.splitlines()
        return "\n".join(self.cache[path][start - 1:end])[:MAX_CHARS]


def main() -> None:
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    queries = {}
    for line in open(sys.argv[1], encoding="utf-8"):
        if line.strip():
            q = json.loads(line)
            queries[q["id"]] = q
    files = Files(Path(sys.argv[3]))
    n = found = 0
    with open(sys.argv[4], "w", encoding="utf-8") as out:
        for line in open(sys.argv[2], encoding="utf-8"):
            if not line.strip():
                continue
            r = json.loads(line)
            g = queries.get(r["id"])
            if g is None:
                continue
            cands = []
            for c in r.get("results", []):
                cands.append({
                    "code": files.lines(c["path"], int(c["start_line"]), int(c["end_line"])),
                    "label": int(hit(g, c)),
                    # Any overlap with the answer's lines: never a negative in training.
                    "overlap": int(norm(c["path"]).endswith(norm(g["path"]))
                                   and int(c["start_line"]) <= int(g["end_line"])
                                   and int(c["end_line"]) >= int(g["line"])),
                    "score": float(c.get("score", 0.0)),
                    "path": c["path"],
                    "start_line": int(c["start_line"]),
                    "end_line": int(c["end_line"]),
                })
            gold_path = next((p for p in (g["path"], norm(g["path"])) if (files.root / p).exists()), g["path"])
            gold = files.lines(gold_path, int(g["line"]), int(g["end_line"]))
            n += 1
            found += any(c["label"] for c in cands)
            out.write(json.dumps({"id": g["id"], "lang": g["lang"], "query": g["query"],
                                  "gold": gold, "cands": cands}) + "\n")
    print(json.dumps({"questions": n, "answer_among_candidates": found}), file=sys.stderr)


if __name__ == "__main__":
    main()
