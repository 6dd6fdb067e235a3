#!/usr/bin/env python3
"""Turn the public benchmarks in ../shared/bench/public into gnn-coder corpora.

usage: public_corpus.py PUBLIC_DIR OUT_DIR

Writes, for each benchmark, a directory of source files (one function per file) and query files
in the format of ../shared/bench/score.py (`{"id","lang","query","path","symbol","line","end_line"}`),
so that every set is scored the same way as the dev benchmark:

  OUT/cosqa/corpus/code/NNNN.py      the 6,267 codes of the CoSQA retrieval base (code_idx_map)
  OUT/cosqa/queries-dev.jsonl        cosqa-retrieval-dev-500 (tune here)
  OUT/cosqa/queries-test.jsonl       cosqa-retrieval-test-500 (report only)
  OUT/csn-ruby/corpus/code/NNNN.rb   the 1,261 functions of CodeSearchNet Ruby test
  OUT/csn-ruby/queries-test.jsonl    their docstrings (docstring_tokens joined), one per function

Codes are written verbatim (CoSQA's codes keep their docstrings, as in the standard protocol).
The gold line is the first line of the file that starts a definition (`def`), else line 1.
"""
import json
import os
import sys


def def_line(code, keyword="def "):
    for i, line in enumerate(code.splitlines(), 1):
        s = line.lstrip()
        if s.startswith(keyword) or s.startswith("async " + keyword):
            return i
    return 1


def write_corpus(root, codes, ext):
    """codes: {idx: code}; returns {idx: (path, line, end_line)}."""
    os.makedirs(os.path.join(root, "corpus", "code"), exist_ok=True)
    gold = {}
    for idx, code in codes.items():
        rel = f"code/{idx:04d}.{ext}"
        with open(os.path.join(root, "corpus", rel), "w", encoding="utf-8") as f:
            f.write(code if code.endswith("\n") else code + "\n")
        n = max(1, len(code.splitlines()))
        gold[idx] = (rel, def_line(code), n)
    return gold


def write_queries(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def cosqa(public, out):
    root = os.path.join(out, "cosqa")
    with open(os.path.join(public, "cosqa", "code_idx_map.txt"), encoding="utf-8") as f:
        code_idx = json.load(f)
    gold = write_corpus(root, {idx: code for code, idx in code_idx.items()}, "py")
    for split in ("dev", "test"):
        with open(os.path.join(public, "cosqa", f"cosqa-retrieval-{split}-500.json"), encoding="utf-8") as f:
            data = json.load(f)
        rows = []
        for k, d in enumerate(data):
            rel, line, end = gold[d["retrieval_idx"]]
            rows.append({"id": f"cosqa-{split}-{k:03d}", "lang": "python", "query": d["doc"],
                         "path": rel, "symbol": "", "line": line, "end_line": end})
        write_queries(os.path.join(root, f"queries-{split}.jsonl"), rows)
        print(f"cosqa {split}: {len(rows)} queries over {len(gold)} codes")


def csn_ruby(public, out):
    root = os.path.join(out, "csn-ruby")
    with open(os.path.join(public, "csn-ruby", "test.jsonl"), encoding="utf-8") as f:
        data = [json.loads(line) for line in f if line.strip()]
    gold = write_corpus(root, {k: d["code"] for k, d in enumerate(data)}, "rb")
    rows = []
    for k, d in enumerate(data):
        rel, line, end = gold[k]
        rows.append({"id": f"csn-ruby-{k:04d}", "lang": "ruby", "query": " ".join(d["docstring_tokens"]),
                     "path": rel, "symbol": d["func_name"], "line": line, "end_line": end})
    write_queries(os.path.join(root, "queries-test.jsonl"), rows)
    print(f"csn-ruby test: {len(rows)} queries over {len(gold)} functions")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    public, out = sys.argv[1], sys.argv[2]
    cosqa(public, out)
    csn_ruby(public, out)


if __name__ == "__main__":
    main()
