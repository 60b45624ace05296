#!/usr/bin/env bash
# Run one command against a throwaway localhost SLURM cluster and MLflow server, then stop both.
#
#   with-cluster.sh STATE_DIR [--cpus N] [--memory-mb M] [--mlflow-workers N] -- COMMAND [ARG...]
#
# COMMAND runs with SLURM_CONF, MLFLOW_TRACKING_URI (http://127.0.0.1:<free port>) and the
# server's credentials (MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD) set. Every daemon is
# stopped by its recorded pid when this script exits, whether COMMAND succeeded, failed or this
# script was interrupted (SIGINT, SIGTERM, e.g. from `timeout`). The exit status is COMMAND's.
# Logs stay under STATE_DIR/slurm/log and STATE_DIR/mlflow.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(($# >= 1)) || usage
state=$1
shift
cluster_args=() mlflow_workers=1
while (($#)); do
    case $1 in
        --cpus | --memory-mb) cluster_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
        --mlflow-workers) mlflow_workers=${2:?--mlflow-workers needs a value}; shift 2 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (allowed: --cpus N, --memory-mb M, --mlflow-workers N, then -- COMMAND)" ;;
    esac
done
(($# >= 1)) || die "no command given after --"
mkdir -p "$state"
state=$(cd "$state" && pwd)

command_pid=""
# shellcheck disable=SC2317,SC2329  # reached through the traps below
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $command_pid ]] && alive "$command_pid"; then
        kill -TERM "$command_pid" 2>/dev/null || true
        wait "$command_pid" 2>/dev/null || true
    fi
    "$here/slurm-down.sh" "$state/slurm" || true
    "$here/mlflow-server.sh" stop "$state/mlflow" || true
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The server takes far longer to start than the cluster: bring both up side by side.
"$here/mlflow-server.sh" start "$state/mlflow" --port "$(free_port)" --workers "$mlflow_workers" &
mlflow_start=$!
"$here/slurm-up.sh" "$state/slurm" "${cluster_args[@]}"
wait "$mlflow_start" || die "the MLflow server did not start"
# shellcheck disable=SC1091
source "$state/slurm/env.sh"
# shellcheck disable=SC1091
source "$state/mlflow/mlflow.env"
export SLURM_CONF MLFLOW_TRACKING_URI MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD

# In the background, so that a signal reaches our trap at once instead of after COMMAND ends.
"$@" &
command_pid=$!
set +e
wait "$command_pid"
status=$?
set -e
command_pid=""
exit "$status"
