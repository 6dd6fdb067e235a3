# Sourced by training/eval.sh and training/ablation.sh: where each evaluation set's corpus and
# queries live under an evaluation directory (as eval.sh builds it).
# usage: bench_set EVAL_DIR SET   -> prints "CORPUS_DIR QUERIES_FILE"
bench_set() {
    local root="$1"
    case "$2" in
        dev) echo "$root/dev/corpus $root/dev/queries.jsonl" ;;
        cosqa-dev) echo "$root/public/cosqa/corpus $root/public/cosqa/queries-dev.jsonl" ;;
        cosqa-test) echo "$root/public/cosqa/corpus $root/public/cosqa/queries-test.jsonl" ;;
        csn-ruby) echo "$root/public/csn-ruby/corpus $root/public/csn-ruby/queries-test.jsonl" ;;
        *) echo "unknown evaluation set $2 (dev, cosqa-dev, cosqa-test, csn-ruby)" >&2; return 1 ;;
    esac
}
