#!/usr/bin/env bash
# Fetch the source of every package of the training manifest, for the training-data miner
# (`cargo run -p gnn-coder-train --release --bin mine`).
#
# usage: training/fetch_train_sources.sh [OUT]          (default: <repo>/data/train-src)
#   env TRAIN_MANIFEST  default <repo>/../shared/bench/train/manifest.json
#   env DEV_MANIFEST    default <repo>/../shared/bench/dev/manifest.json (safety check)
#
# Layout written (the same method as ../shared/bench/mine.py):
#   OUT/python/<pkg>/...        the unpacked wheel of pkg==ver (`pip download --no-deps
#                               --only-binary :all:`), or its unpacked sdist (top folder dropped)
#                               when no wheel fits this machine
#   OUT/rust/<crate>-<ver>/...  the crate as cargo unpacked it, after `cargo fetch` in a
#                               throwaway project depending on `crate = "=ver"`
#   OUT/.archives/              downloaded wheels / sdists (kept so re-runs are cheap)
# Each finished package holds a `.fetched` file naming its pinned version, so a re-run skips it
# (idempotent); a package whose pin changed in the manifest is fetched again.
#
# A package that also appears in the dev manifest is refused (dev packages must never be mined).
# A package that fails is reported and skipped; the exit status is non-zero only when nothing at
# all could be fetched. Fetched third-party code stays under data/ (git-ignored): never commit it.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-$REPO/data/train-src}
BENCH=$REPO/../shared/bench
TRAIN_MANIFEST=${TRAIN_MANIFEST:-$BENCH/train/manifest.json}
DEV_MANIFEST=${DEV_MANIFEST:-$BENCH/dev/manifest.json}
PYTHON=${PYTHON:-python3}
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}

[ -f "$TRAIN_MANIFEST" ] || { echo "error: no train manifest at $TRAIN_MANIFEST" >&2; exit 2; }
if [ ! -f "$DEV_MANIFEST" ]; then
    echo "error: no dev manifest at $DEV_MANIFEST (needed for the safety check; set DEV_MANIFEST)" >&2
    exit 2
fi
mkdir -p "$OUT/python" "$OUT/rust" "$OUT/.archives"
OUT=$(cd "$OUT" && pwd)

# "lang name version" per train package; a package also named in the dev manifest comes out as
# "dev lang name version". Names are compared normalised (PEP 503 for PyPI; `-` = `_` for crates).
PLAN=$("$PYTHON" - "$TRAIN_MANIFEST" "$DEV_MANIFEST" <<'EOF'
import json, re, sys
train, dev = (json.load(open(p)) for p in sys.argv[1:3])
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
def py(m):
    for spec in m.get("python", []):
        name, _, ver = spec.partition("==")
        yield name.strip(), ver.strip()
def rs(m):
    return list(m.get("rust", {}).items())
dev_py = {norm(n) for n, _ in py(dev)}
dev_rs = {norm(n) for n, _ in rs(dev)}
for n, v in py(train):
    print(("dev " if norm(n) in dev_py else "") + f"python {n} {v}")
for n, v in rs(train):
    print(("dev " if norm(n) in dev_rs else "") + f"rust {n} {v}")
EOF
) || { echo "error: cannot read the manifests" >&2; exit 2; }

ok=0; cached=0; failed=(); refused=()

unpack() {  # unpack ARCHIVE DEST: wheel (zip) as is, sdist (tar.gz / zip) without its top folder
    "$PYTHON" - "$1" "$2" <<'EOF'
import os, sys, tarfile, zipfile
src, dst = sys.argv[1], sys.argv[2]
def put(name, data):
    name = name.lstrip("/")
    if not name or any(p == ".." for p in name.split("/")):
        return
    path = os.path.join(dst, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
if src.endswith(".whl"):
    with zipfile.ZipFile(src) as z:
        for n in z.namelist():
            if not n.endswith("/"):
                put(n, z.read(n))
elif src.endswith(".zip"):
    with zipfile.ZipFile(src) as z:
        for n in z.namelist():
            if not n.endswith("/") and "/" in n:
                put(n.split("/", 1)[1], z.read(n))
else:
    with tarfile.open(src) as t:
        for m in t.getmembers():
            if m.isfile() and "/" in m.name:
                put(m.name.split("/", 1)[1], t.extractfile(m).read())
EOF
}

fetch_python() {  # name version
    local name=$1 ver=$2 key dest dl archive
    key=$(echo "$name" | tr 'A-Z' 'a-z' | sed 's/[_.]+/-/g')
    dest=$OUT/python/$key
    if [ -f "$dest/.fetched" ] && [ "$(cat "$dest/.fetched")" = "$name==$ver" ]; then
        echo "python $name==$ver: already fetched ($dest)"; cached=$((cached + 1)); ok=$((ok + 1)); return
    fi
    dl=$OUT/.archives/python/$key-$ver
    mkdir -p "$dl"
    archive=$(ls "$dl"/*.whl "$dl"/*.tar.gz "$dl"/*.zip 2>/dev/null | head -n1)
    if [ -z "$archive" ]; then
        if ! "$PYTHON" -m pip download -q --no-deps --only-binary :all: -d "$dl" "$name==$ver" >"$dl.log" 2>&1; then
            echo "python $name==$ver: no wheel for this machine, taking the sdist"
            "$PYTHON" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
                -d "$dl" "$name==$ver" >>"$dl.log" 2>&1
        fi
        archive=$(ls "$dl"/*.whl "$dl"/*.tar.gz "$dl"/*.zip 2>/dev/null | head -n1)
    fi
    if [ -z "$archive" ]; then
        echo "python $name==$ver: FAILED to download (see $dl.log)" >&2; failed+=("python:$name"); return
    fi
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    if ! unpack "$archive" "$dest.tmp"; then
        echo "python $name==$ver: FAILED to unpack $archive" >&2; rm -rf "$dest.tmp"; failed+=("python:$name"); return
    fi
    echo "$name==$ver" >"$dest.tmp/.fetched"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    echo "python $name==$ver: $(basename "$archive") -> $dest ($(find "$dest" -name '*.py' | wc -l) .py files)"
    ok=$((ok + 1))
}

registry_copy() {  # crate version: the unpacked crate in the cargo registry, if any
    ls -d "$CARGO_HOME_DIR"/registry/src/*/"$1-$2" 2>/dev/null | head -n1
}

fetch_rust() {  # crate version
    local crate=$1 ver=$2 dest src proj
    dest=$OUT/rust/$crate-$ver
    if [ -f "$dest/.fetched" ] && [ "$(cat "$dest/.fetched")" = "$crate=$ver" ]; then
        echo "rust $crate $ver: already fetched ($dest)"; cached=$((cached + 1)); ok=$((ok + 1)); return
    fi
    src=$(registry_copy "$crate" "$ver")
    if [ -z "$src" ] || [ ! -f "$src/Cargo.toml" ]; then
        # One throwaway project per crate (as mine.py): pins of different crates never conflict.
        proj=$(mktemp -d)
        mkdir -p "$proj/src"
        printf '[package]\nname = "rcorp"\nversion = "0.1.0"\nedition = "2021"\n[dependencies]\n%s = "=%s"\n' \
            "$crate" "$ver" >"$proj/Cargo.toml"
        echo 'fn main() {}' >"$proj/src/main.rs"
        if ! (cd "$proj" && cargo fetch -q >"$proj/fetch.log" 2>&1); then
            echo "rust $crate $ver: FAILED: cargo fetch: $(tail -n3 "$proj/fetch.log" | tr '\n' ' ')" >&2
            rm -rf "$proj"; failed+=("rust:$crate"); return
        fi
        rm -rf "$proj"
        src=$(registry_copy "$crate" "$ver")
    fi
    if [ -z "$src" ]; then
        echo "rust $crate $ver: FAILED: not in $CARGO_HOME_DIR/registry/src after cargo fetch" >&2
        failed+=("rust:$crate"); return
    fi
    rm -rf "$dest.tmp" && cp -R "$src" "$dest.tmp" && chmod -R u+w "$dest.tmp"
    echo "$crate=$ver" >"$dest.tmp/.fetched"
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    echo "rust $crate $ver: $src -> $dest ($(find "$dest" -name '*.rs' | wc -l) .rs files)"
    ok=$((ok + 1))
}

while read -r a b c d; do
    [ -n "$a" ] || continue
    if [ "$a" = dev ]; then
        echo "$b $c $d: REFUSED: also in the dev manifest $DEV_MANIFEST" >&2
        refused+=("$b:$c"); continue
    fi
    case $a in
        python) fetch_python "$b" "$c" ;;
        rust) fetch_rust "$b" "$c" ;;
    esac
done <<<"$PLAN"

echo "fetched $ok packages into $OUT ($cached already there), ${#failed[@]} failed, ${#refused[@]} refused"
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}" >&2
[ ${#refused[@]} -eq 0 ] || echo "refused (dev packages): ${refused[*]}" >&2
[ "$ok" -gt 0 ] || exit 1
