#!/usr/bin/env bash
# Sets up a Citus cluster for GNN-Coder's PostgreSQL store, once, on a fresh cluster:
#
#   1. extensions `citus` and `vector` (pgvector) on the coordinator and on every worker;
#   2. the workers joined to the coordinator (citus_add_node);
#   3. the schema: `gnn-coder store migrate --store URL`;
#   4. the tables distributed:
#        reference tables (a copy on every node):  gc_meta, gc_migrations
#        by `repo`, colocated with gc_repositories: gc_repositories, gc_files, gc_units,
#                                                   gc_postings, gc_field_stats
#        by `key` (the embedding cache, shared by all repositories): gc_vectors
#      so that a query filtered to one repository touches one shard group, and an
#      unfiltered one fans out to every worker and merges the top k.
#
# Every step is idempotent: rerunning it on a set-up cluster changes nothing.
#
# Usage:
#   setup.sh [--workers-via-coordinator] [--coordinator-host HOST:PORT] \
#            COORDINATOR_URL WORKER_HOST:PORT [WORKER_HOST:PORT ...]
#
#   COORDINATOR_URL   postgres://USER@HOST:PORT/DB of the coordinator, as reachable from here;
#                     USER must be a superuser (CREATE EXTENSION, citus_add_node).
#   WORKER_HOST:PORT  each worker, as the coordinator reaches it (e.g. worker1:5432).
#   --workers-via-coordinator
#                     the workers are not reachable from here (e.g. on a compose network):
#                     create `vector` on them through the coordinator (run_command_on_workers)
#                     after they joined; `citus` must already exist on them (Citus's image
#                     creates it in its database at initdb). Default: connect to each worker
#                     directly, with the coordinator URL's user, password and database.
#   --coordinator-host HOST:PORT
#                     how the workers reach the coordinator (citus_set_coordinator_host), when
#                     that is not the default localhost:5432 seen from the coordinator.
#
# Environment:
#   PGPASSWORD     the password (libpq); when set, it is also stored in pg_dist_authinfo for the
#                  coordinator's connections to the workers (same user and password everywhere).
#   PSQL           psql command (default: psql)
#   GNN_CODER      gnn-coder command (default: gnn-coder), e.g.
#                  "docker compose -f compose-citus.yaml run --rm --no-deps --entrypoint gnn-coder gnn-coder"
#   MIGRATE_STORE  the store URL given to `gnn-coder store migrate` (default: COORDINATOR_URL;
#                  set it when gnn-coder reaches the coordinator under another name).
#
# Example (deploy/compose/compose-citus.yaml; the coordinator is published on 127.0.0.1):
#   PGPASSWORD=$(cat secrets/db_password) deploy/citus/setup.sh --workers-via-coordinator \
#     --coordinator-host coordinator:5432 \
#     postgres://gnn@127.0.0.1:5432/gnn worker1:5432 worker2:5432
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh source-path=SCRIPTDIR
. "$here/common.sh"

via_coordinator=0
coordinator_host=
while [[ $# -gt 0 ]]; do
  case $1 in
    --workers-via-coordinator) via_coordinator=1; shift ;;
    --coordinator-host) coordinator_host=${2:?--coordinator-host needs HOST:PORT}; shift 2 ;;
    -h|--help) usage ;;
    --) shift; break ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 2 ]] || usage
url=$1
shift
workers=("$@")

echo "== coordinator: CREATE EXTENSION citus, vector"
run_sql "$url" "CREATE EXTENSION IF NOT EXISTS citus; CREATE EXTENSION IF NOT EXISTS vector;"

if [[ $via_coordinator -eq 0 ]]; then
  for w in "${workers[@]}"; do
    create_extensions_direct "$url" "$w"
  done
fi

if [[ -n $coordinator_host ]]; then
  split_hostport "$coordinator_host"
  echo "== citus_set_coordinator_host('$HOST', $PORT)"
  run_sql "$url" "SELECT citus_set_coordinator_host(:'host', :'port'::int);" \
    -v host="$HOST" -v port="$PORT" >/dev/null
fi

store_worker_password "$url"

for w in "${workers[@]}"; do
  add_worker "$url" "$w"
done

if [[ $via_coordinator -eq 1 ]]; then
  echo "== workers (through the coordinator): CREATE EXTENSION vector"
  run_sql "$url" "SELECT nodename, nodeport, success, result
                    FROM run_command_on_workers('CREATE EXTENSION IF NOT EXISTS vector');"
fi

echo "== schema: gnn-coder store migrate"
read -ra gnn_coder <<<"${GNN_CODER:-gnn-coder}"
"${gnn_coder[@]}" store migrate --store "${MIGRATE_STORE:-$url}"

# distribute TABLE HOW...: runs the SQL unless the table is already a Citus table.
distribute() {
  local table=$1 sql=$2
  local done_already
  done_already=$(run_sql "$url" \
    "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = to_regclass(:'t');" \
    -v t="$table")
  if [[ $done_already != 0 ]]; then
    echo "== $table: already distributed"
    return 0
  fi
  if [[ $(run_sql "$url" "SELECT to_regclass(:'t') IS NOT NULL;" -v t="$table") != t ]]; then
    echo "setup.sh: table $table does not exist after the migration; is this gnn-coder's schema?" >&2
    exit 1
  fi
  echo "== $table: $sql"
  run_sql "$url" "SELECT $sql;" >/dev/null
}

distribute gc_meta "create_reference_table('gc_meta')"
distribute gc_migrations "create_reference_table('gc_migrations')"
distribute gc_repositories "create_distributed_table('gc_repositories', 'repo')"
for t in gc_files gc_units gc_postings gc_field_stats; do
  distribute "$t" "create_distributed_table('$t', 'repo', colocate_with => 'gc_repositories')"
done
distribute gc_vectors "create_distributed_table('gc_vectors', 'key', colocate_with => 'none')"

echo "== done: the cluster"
run_sql "$url" "SELECT nodename || ':' || nodeport || ' ' || noderole FROM pg_dist_node ORDER BY nodeid;"
run_sql "$url" "SELECT table_name || ' ' || citus_table_type || ' ' || distribution_column
                  || ' shards=' || shard_count FROM citus_tables ORDER BY 1;"
