#!/usr/bin/env bash
# Adds workers to a GNN-Coder Citus cluster set up by setup.sh and moves shards onto them.
#
#   1. extensions `citus` and `vector` on each new worker;
#   2. the new workers joined (citus_add_node; reference tables gc_meta and gc_migrations are
#      copied to them);
#   3. citus_rebalance_start(): a background job moves shard groups (a repository's
#      gc_repositories/gc_files/gc_units/gc_postings/gc_field_stats shards move together,
#      being colocated) until every worker holds about as many; with wal_level=logical the
#      moves use logical replication and reads and writes go on meanwhile.
#
# Usage:
#   rebalance.sh [--workers-via-coordinator] [--wait] COORDINATOR_URL NEW_WORKER_HOST:PORT...
#   rebalance.sh --status COORDINATOR_URL
#
#   --workers-via-coordinator   as in setup.sh: the new workers are not reachable from here
#                               (`citus` must then exist on them already, as in Citus's image).
#   --wait                      wait for the rebalance to finish (citus_rebalance_wait()).
#   --status                    show the running or last rebalance (citus_rebalance_status()).
#
# Environment: PGPASSWORD and PSQL as in setup.sh. The same SQL by hand, in psql on the
# coordinator:
#   SELECT citus_add_node('worker3', 5432);
#   SELECT run_command_on_workers('CREATE EXTENSION IF NOT EXISTS vector');
#   SELECT citus_rebalance_start();
#   SELECT * FROM citus_rebalance_status();   -- or: SELECT citus_rebalance_wait();
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$here/common.sh"

via_coordinator=0
wait_done=0
status_only=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --workers-via-coordinator) via_coordinator=1; shift ;;
    --wait) wait_done=1; shift ;;
    --status) status_only=1; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || usage
url=$1
shift

if [[ $status_only -eq 1 ]]; then
  run_sql "$url" "SELECT job_id, state, started_at, finished_at FROM citus_rebalance_status();"
  exit 0
fi
[[ $# -ge 1 ]] || usage

for w in "$@"; do
  if [[ $via_coordinator -eq 0 ]]; then
    create_extensions_direct "$url" "$w"
  fi
  add_worker "$url" "$w"
done
if [[ $via_coordinator -eq 1 ]]; then
  echo "== workers (through the coordinator): CREATE EXTENSION vector"
  run_sql "$url" "SELECT nodename, nodeport, success, result
                    FROM run_command_on_workers('CREATE EXTENSION IF NOT EXISTS vector');"
fi

echo "== citus_rebalance_start()"
run_sql "$url" "SELECT citus_rebalance_start();"
if [[ $wait_done -eq 1 ]]; then
  echo "== citus_rebalance_wait()"
  run_sql "$url" "SELECT citus_rebalance_wait();" >/dev/null
fi
run_sql "$url" "SELECT job_id, state, started_at, finished_at FROM citus_rebalance_status();"
