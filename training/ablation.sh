#!/usr/bin/env bash
# The ablation table of training/README.md: every row trained on the same pairs (a seeded
# sample of data/train/pairs-train.jsonl), validated on data/train/pairs-valid.jsonl, and
# evaluated semantic-only on the dev benchmark and CoSQA dev-500 with `gnn-coder eval`.
#
# usage: training/ablation.sh [RUNS_DIR] [ROWS...]
#   RUNS_DIR  run directories, caches and results (default /tmp/gnn-runs)
#   ROWS      any of: zero-shot s1-seq s1-topk s1-astg s2-seq s2-astg (default: all)
# Needs: data/train (training/fetch_train_sources.sh + the mine tool), the dev corpus and the
# public corpora as built by training/eval.sh (EVAL_DIR, default /tmp/gnn-eval), a built
# gnn-coder (G, default target/release/gnn-coder, else target/debug/gnn-coder).
# Environment: LIMIT (training pairs, default 16000), S1_EPOCHS (default 1), S2_STEPS (default
# 300 steps of 32 pairs), SETS (default "dev cosqa-dev"). Rows s2-* need their s1-* row first.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
R="${1:-/tmp/gnn-runs}"
shift || true
ROWS="${*:-zero-shot s1-seq s1-topk s1-astg s2-seq s2-astg}"
E="${EVAL_DIR:-/tmp/gnn-eval}"
G="${G:-$REPO/target/release/gnn-coder}"
[[ -x "$G" ]] || G="$REPO/target/debug/gnn-coder"
LIMIT="${LIMIT:-16000}"
S1_EPOCHS="${S1_EPOCHS:-1}"
S2_STEPS="${S2_STEPS:-300}"
SETS="${SETS:-dev cosqa-dev}"
mkdir -p "$R"
cd "$REPO"

common=(--pairs data/train/pairs-train.jsonl --valid data/train/pairs-valid.jsonl
        --limit "$LIMIT" --cache-dir "$R/cache" --split-layer 4 --checkpoint-every 50
        --eval-every 100)

train_row() {
    local row="$1"
    case "$row" in
        s1-seq) "$G" train "${common[@]}" --out "$R/$row" --epochs "$S1_EPOCHS" --no-graph ;;
        s1-topk) "$G" train "${common[@]}" --out "$R/$row" --epochs "$S1_EPOCHS" --plain-topk ;;
        s1-astg) "$G" train "${common[@]}" --out "$R/$row" --epochs "$S1_EPOCHS" ;;
        # Stage 2 starts from the stage-1 head of the same kind.
        s2-seq) "$G" train "${common[@]}" --out "$R/$row" --init "$R/s1-seq/weights" \
                    --tuned-layers 2 --batch-size 32 --max-steps "$S2_STEPS" --no-graph ;;
        s2-astg) "$G" train "${common[@]}" --out "$R/$row" --init "$R/s1-astg/weights" \
                    --tuned-layers 2 --batch-size 32 --max-steps "$S2_STEPS" ;;
        zero-shot) return 0 ;;
        *) echo "ablation: unknown row $row" >&2; exit 1 ;;
    esac
}

# shellcheck source=training/bench-sets.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench-sets.sh"

for row in $ROWS; do
    weights="$R/$row/weights"
    [[ "$row" == zero-shot ]] && weights=none
    if [[ "$row" != zero-shot && ! -f "$weights/head.json" ]]; then
        train_row "$row" 2> "$R/$row.train.err" > "$R/$row.train.out"
    fi
    for set in $SETS; do
        read -r corpus queries <<<"$(bench_set "$E" "$set")"
        "$G" eval --weights "$weights" --bench "$corpus" --queries "$queries" \
            --cache-dir "$R/cache" --split-layer 4 --results "$R/results-$row-$set.jsonl" --json \
            > "$R/eval-$row-$set.json" 2> "$R/eval-$row-$set.err"
        printf '%-10s %-10s ' "$row" "$set"
        python3 "$REPO/../shared/bench/score.py" "$queries" "$R/results-$row-$set.jsonl"
    done
done
