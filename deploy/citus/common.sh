# shellcheck shell=bash
# Shared by setup.sh and rebalance.sh (sourced, not run). Needs bash and psql.
#
# Environment:
#   PSQL        the psql command (default: psql)
#   PGPASSWORD  the password of the URL's user, if the URL holds none (libpq reads it)

# The script's own "# Usage:" comment block, then exit 2.
usage() {
  sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

# psql against one URL, stopping at the first error: run_sql URL SQL [psql args...]
# The SQL goes through stdin, not -c, so that psql interpolates -v variables (:'name'
# quotes a value as an SQL literal).
run_sql() {
  local url=$1 sql=$2
  shift 2
  local -a psql
  read -ra psql <<<"${PSQL:-psql}"
  PGOPTIONS="-c client_min_messages=warning ${PGOPTIONS:-}" \
    "${psql[@]}" -X -q -At -v ON_ERROR_STOP=1 "$@" -d "$url" <<<"$sql"
}

# The same URL with another host:port: url_with_host URL HOST:PORT
# postgres://user@coordinator:5432/gnn?sslmode=require + w1:5432
#   -> postgres://user@w1:5432/gnn?sslmode=require
url_with_host() {
  local url=$1 hostport=$2
  if [[ $url =~ ^(postgres(ql)?://)([^@/]*@)?([^/?]*)(.*)$ ]]; then
    printf '%s%s%s%s\n' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}" "$hostport" "${BASH_REMATCH[5]}"
  else
    echo "not a postgres:// URL: $url" >&2
    return 1
  fi
}

# Splits HOST:PORT (the port defaults to 5432) into the globals HOST and PORT.
split_hostport() {
  HOST=${1%:*}
  PORT=${1##*:}
  if [[ $HOST == "$1" ]]; then
    PORT=5432
  fi
  if [[ -z $HOST || ! $PORT =~ ^[0-9]+$ ]]; then
    echo "expected HOST:PORT, got: $1" >&2
    return 1
  fi
}

# Creates the extensions on one worker, connecting to it directly.
create_extensions_direct() {
  local url=$1 hostport=$2 worker_url
  worker_url=$(url_with_host "$url" "$hostport")
  echo "== $hostport: CREATE EXTENSION citus, vector"
  run_sql "$worker_url" "CREATE EXTENSION IF NOT EXISTS citus; CREATE EXTENSION IF NOT EXISTS vector;"
}

# Adds a worker to the cluster unless it is there already.
add_worker() {
  local url=$1 hostport=$2
  split_hostport "$hostport"
  echo "== citus_add_node('$HOST', $PORT)"
  run_sql "$url" \
    "SELECT citus_add_node(:'host', :'port'::int)
       WHERE NOT EXISTS (SELECT 1 FROM pg_dist_node
                          WHERE nodename = :'host' AND nodeport = :'port'::int);" \
    -v host="$HOST" -v port="$PORT" >/dev/null
}

# Lets the coordinator authenticate to every worker with $PGPASSWORD (pg_dist_authinfo,
# nodeid 0 = all workers), for clusters that use passwords between nodes.
store_worker_password() {
  local url=$1
  if [[ -z ${PGPASSWORD:-} ]]; then
    return 0
  fi
  local escaped=${PGPASSWORD//\\/\\\\}
  escaped=${escaped//\'/\\\'}
  echo "== pg_dist_authinfo: password for the coordinator's connections to the workers"
  run_sql "$url" \
    "DELETE FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = current_user;
     INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo)
       VALUES (0, current_user, :'authinfo');" \
    -v authinfo="password='$escaped'"
}
