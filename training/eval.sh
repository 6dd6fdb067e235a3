#!/usr/bin/env bash
# Quality of every search mode on the dev benchmark and the public sets, scored by
# ../shared/bench/score.py: the numbers of README.md's quality table.
#
# usage: training/eval.sh [WORK_DIR] [GNN_CODER_BINARY]
#   WORK_DIR  where corpora and indexes go (default /tmp/gnn-eval; reused when present)
# Needs: python3 with `pip install tree-sitter==0.26.1 tree-sitter-rust==0.24.2` (for mine.py),
# the model (scripts/fetch-model.sh), and a built gnn-coder (default: target/release, else debug).
# Environment: MODES (default "lexical semantic hybrid"), WEIGHTS (hybrid dense weights to try,
# default "0.5"), SETS (default "dev cosqa-dev cosqa-test csn-ruby"). Indexes are embedded with
# the shipped weights (weights/gnn-coder); GNN_CODER_WEIGHTS=none (zero-shot) or =DIR picks
# others. Existing indexes under WORK are reused: use a fresh WORK after changing weights.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$REPO/../shared/bench"
W="${1:-/tmp/gnn-eval}"
G="${2:-}"
if [[ -z "$G" ]]; then
    G="$REPO/target/release/gnn-coder"
    [[ -x "$G" ]] || G="$REPO/target/debug/gnn-coder"
fi
[[ -x "$G" ]] || { echo "eval: no gnn-coder binary; cargo build --release -p gnn-coder-cli" >&2; exit 1; }
MODES="${MODES:-lexical semantic hybrid}"
WEIGHTS="${WEIGHTS:-0.5}"
SETS="${SETS:-dev cosqa-dev cosqa-test csn-ruby}"
mkdir -p "$W"

[[ -f "$W/dev/queries.jsonl" ]] || python3 "$BENCH/mine.py" "$BENCH/dev/manifest.json" "$W/dev"
[[ -f "$W/public/cosqa/queries-dev.jsonl" ]] || python3 "$REPO/training/public_corpus.py" "$BENCH/public" "$W/public"

# shellcheck source=training/bench-sets.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-sets.sh"

for set in $SETS; do
    read -r corpus queries <<<"$(bench_set "$W" "$set")"
    index="$corpus/../index"
    if [[ ! -f "$index/gnn-coder.json" ]]; then
        "$G" index "$corpus" --index "$index" --quiet
    fi
    for mode in $MODES; do
        weights="-"
        [[ "$mode" == hybrid ]] && weights="$WEIGHTS"
        for w in $weights; do
            extra=()
            [[ "$w" != "-" ]] && extra=(--dense-weight "$w")
            out="$W/results-$set-$mode${w/-/}.jsonl"
            "$G" search --index "$index" --queries "$queries" --top-k 10 --json --mode "$mode" "${extra[@]}" \
                >"$out" 2>/dev/null
            printf '%-10s %-8s %-4s ' "$set" "$mode" "$w"
            python3 "$BENCH/score.py" "$queries" "$out"
        done
    done
done
