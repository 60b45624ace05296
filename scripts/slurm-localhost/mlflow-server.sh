#!/usr/bin/env bash
# Run an MLflow tracking server that every job of a study logs to.
#
#   mlflow-server.sh start STATE_DIR [options] [-- extra `mlflow server` options]
#   mlflow-server.sh run   STATE_DIR [options] [-- ...]   same server in the foreground
#   mlflow-server.sh stop  STATE_DIR
#
# Options (defaults in brackets):
#   --host ADDR                   address to bind [127.0.0.1]; 0.0.0.0 listens on every interface
#   --port N                      port [5000]
#   --backend-store-uri URI       run and metric database [sqlite:///STATE_DIR/mlflow.db];
#                                 for many writers use PostgreSQL: postgresql://user:pw@db/mlflow
#   --artifacts-destination URI   where uploaded artifacts are kept [STATE_DIR/artifacts]; the
#                                 server proxies uploads, so jobs need no shared filesystem
#   --workers N                   server worker processes [4]
#   --advertise HOST              name jobs use to reach the server [--host, or `hostname -f`
#                                 when binding 0.0.0.0]
#
# `start` returns once the server answers /health, and writes STATE_DIR/mlflow.env with
# `export MLFLOW_TRACKING_URI=http://HOST:PORT`; source it in the shell that runs snakemake
# (sbatch passes the environment on to every job). The pid and log are STATE_DIR/mlflow-server.pid
# and STATE_DIR/mlflow-server.log.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
    sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(($# >= 2)) || usage
action=$1 state=$2
shift 2
case $action in
    start | run | stop) ;;
    *) die "unknown action '$action' (allowed: start, run, stop)" ;;
esac
mkdir -p "$state"
state=$(cd "$state" && pwd)
pidfile=$state/mlflow-server.pid

if [[ $action == stop ]]; then
    (($# == 0)) || die "stop takes no options, got '$*'"
    stop_daemons 15 "$pidfile"
    exit 0
fi

host=127.0.0.1 port=5000 workers=4 advertise=""
backend="sqlite:///$state/mlflow.db"
artifacts=$state/artifacts
extra=()
while (($#)); do
    case $1 in
        --host) host=${2:?--host needs a value}; shift 2 ;;
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --backend-store-uri) backend=${2:?--backend-store-uri needs a value}; shift 2 ;;
        --artifacts-destination) artifacts=${2:?--artifacts-destination needs a value}; shift 2 ;;
        --workers) workers=${2:?--workers needs a value}; shift 2 ;;
        --advertise) advertise=${2:?--advertise needs a value}; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) usage ;;
        *) die "unknown option '$1' (allowed: --host, --port, --backend-store-uri, --artifacts-destination, --workers, --advertise, then -- and options for mlflow server)" ;;
    esac
done
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "--port must be 1-65535, got '$port'"
fi
[[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '$workers'"
require_commands mlflow python3

if [[ -z $advertise ]]; then
    case $host in
        0.0.0.0 | :: | "[::]") advertise=$(hostname -f) ;;
        *) advertise=$host ;;
    esac
fi
uri=http://$advertise:$port

# MLflow refuses requests whose Host header it does not know (DNS-rebinding protection). Its
# default list covers loopback and private addresses; a server reached by name needs that name.
has_allowed_hosts=false
for arg in "${extra[@]}"; do [[ $arg == --allowed-hosts* ]] && has_allowed_hosts=true; done
if ! $has_allowed_hosts; then
    case $advertise in
        127.0.0.1 | localhost) ;;
        *) extra+=(--allowed-hosts "$advertise,$advertise:$port,localhost,localhost:*,127.0.0.1,127.0.0.1:*,10.*,172.*,192.168.*") ;;
    esac
fi

if [[ $backend == sqlite:///* ]]; then
    mkdir -p "$(dirname "${backend#sqlite:///}")"
fi
[[ $artifacts == *://* ]] || mkdir -p "$artifacts"

command=(mlflow server --host "$host" --port "$port" --workers "$workers"
    --backend-store-uri "$backend" --artifacts-destination "$artifacts" "${extra[@]}")
# The server's background job runner (GenAI evaluation) is not used by the study and would start
# seven extra processes; an explicit MLFLOW_SERVER_ENABLE_JOB_EXECUTION wins.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}

if [[ $action == run ]]; then
    note "serving $uri (backend $backend, artifacts $artifacts)"
    exec "${command[@]}"
fi

if [[ -f $pidfile ]] && alive "$(<"$pidfile")"; then
    die "a server from $state is already running (pid $(<"$pidfile")); stop it with: $0 stop $state"
fi
healthy() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$1/health"
}
if healthy "http://127.0.0.1:$port" 2>/dev/null; then
    die "port $port already answers as an MLflow server; pick another with --port"
fi
start_daemon "$pidfile" "$state/mlflow-server.log" "${command[@]}"
# Importing MLflow in every worker takes a while on a busy machine; a server that exits (port
# taken, bad store URI) ends the wait at once.
deadline=$((SECONDS + ${MLFLOW_SERVER_START_TIMEOUT:-120}))
until healthy "$uri" 2>/dev/null; do
    if ! alive "$(<"$pidfile")" || ((SECONDS >= deadline)); then
        tail -n 30 "$state/mlflow-server.log" >&2 || true
        stop_daemons 15 "$pidfile"
        die "the MLflow server did not come up at $uri; see $state/mlflow-server.log"
    fi
    sleep 0.3
done
printf 'export MLFLOW_TRACKING_URI=%q\n' "$uri" >"$state/mlflow.env.tmp"
mv "$state/mlflow.env.tmp" "$state/mlflow.env"
note "serving $uri (backend $backend, artifacts $artifacts); source $state/mlflow.env"
