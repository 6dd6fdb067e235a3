#!/usr/bin/env python3
"""Makes the v1.1 weights from v1: `query_proj` of head.safetensors set to identity (weight I,
bias 0), every other tensor and the metadata unchanged, SHA256SUMS rewritten.

Why (issue 11): v1's query projection drifted from the code projection (||Wq - Wc||_F ~ 7.6)
and costs the web-question skill of MiniLM (CoSQA) while adding nothing on dev. Code vectors do
not depend on query_proj, only query vectors do.

    python3 training/v1_1_identity_query.py weights/gnn-coder
"""

import hashlib
import json
import struct
import sys
from pathlib import Path

F16_ONE = struct.pack("<e", 1.0)
F16_ZERO = struct.pack("<e", 0.0)


def main(d: Path) -> None:
    path = d / "head.safetensors"
    data = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    w = header["query_proj.weight"]
    b = header["query_proj.bias"]
    assert w["dtype"] == "F16" and b["dtype"] == "F16", (w, b)
    rows, cols = w["shape"]
    assert rows == cols, w["shape"]
    start, end = w["data_offsets"]
    eye = bytearray()
    for i in range(rows):
        for j in range(cols):
            eye += F16_ONE if i == j else F16_ZERO
    assert len(eye) == end - start
    data[base + start : base + end] = eye
    start, end = b["data_offsets"]
    data[base + start : base + end] = F16_ZERO * b["shape"][0]
    path.write_bytes(bytes(data))
    sums = []
    for name in ["head.json", "head.safetensors", "transformer.safetensors"]:
        digest = hashlib.sha256((d / name).read_bytes()).hexdigest()
        sums.append(f"{digest}  {name}\n")
    (d / "SHA256SUMS").write_text("".join(sums))
    print("".join(sums), end="")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
