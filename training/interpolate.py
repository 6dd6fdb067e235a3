"""Weight-space interpolation of fine-tuned transformer layers with the pretrained ones (WiSE-FT,
Wortsman et al. 2022): layers = alpha * tuned + (1 - alpha) * pretrained; the head is copied.
Fine-tuning on docstring pairs costs the transformer some of its general query understanding
(CoSQA's web questions); interpolating keeps part of both.

usage: python3 training/interpolate.py WEIGHTS PRETRAINED_DIR ALPHA OUT
  WEIGHTS         a `gnn-coder train` OUT/weights with transformer.safetensors (burn names, f16;
                  int8 matrices with `.scale` tensors, as shipped, are dequantized and written f16)
  PRETRAINED_DIR  models/all-MiniLM-L6-v2 (model.safetensors, Hugging Face names)
Needs: pip install numpy safetensors
"""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def hf_name(burn: str) -> str:
    name = burn.replace(".self_attn.", ".self.").replace(".layer_norm.gamma", ".LayerNorm.weight")
    return name.replace(".layer_norm.beta", ".LayerNorm.bias")


def main() -> None:
    weights, pretrained, alpha, out = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    if not 0.0 <= alpha <= 1.0:
        sys.exit("alpha must be in [0, 1]")
    tuned = load_file(weights / "transformer.safetensors")
    # Int8 storage (gnn_coder_model::quant): value = q * scale, the scale broadcast.
    for name in [k for k, v in tuned.items() if v.dtype == np.int8]:
        scale = tuned.pop(name + ".scale")
        tuned[name] = (tuned[name].astype(np.float32) * scale).astype(np.float16)
    base = load_file(pretrained / "model.safetensors")
    base = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in base.items()}
    mixed = {}
    for name, t in tuned.items():
        b = base[hf_name(name)].astype(np.float32)
        if name.endswith(".weight") and b.ndim == 2:
            b = b.T  # PyTorch [out, in] -> burn [in, out]
        if b.shape != t.shape:
            sys.exit(f"{name}: shape {t.shape} vs pretrained {b.shape}")
        mixed[name] = (alpha * t.astype(np.float32) + (1.0 - alpha) * b).astype(t.dtype)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"gnn_coder.format": "1", "gnn_coder.dtype": "f16" if any(
        v.dtype == np.float16 for v in mixed.values()) else "f32",
        "gnn_coder.interpolated": f"alpha={alpha} of {weights}"}
    save_file(mixed, out / "transformer.safetensors", metadata=meta)
    for f in ("head.json", "head.safetensors"):
        shutil.copyfile(weights / f, out / f)
    lines = []
    for f in ("head.json", "head.safetensors", "transformer.safetensors"):
        digest = hashlib.sha256((out / f).read_bytes()).hexdigest()
        lines.append(f"{digest}  {f}\n")
    (out / "SHA256SUMS").write_text("".join(lines))
    print(json.dumps({"out": str(out), "alpha": alpha, "tensors": len(mixed)}))


if __name__ == "__main__":
    main()
