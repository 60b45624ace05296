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
#   --no-auth                     serve without authentication (a closed network only)
#
# Every request but /health needs a user name and password (MLflow's basic-auth app). The first
# `start` generates them and keeps them in STATE_DIR/auth.ini (mode 600; the users are in
# STATE_DIR/auth.db); later starts reuse them. `start` returns once the server answers /health and
# lets them in, and writes STATE_DIR/mlflow.env (mode 600), which exports MLFLOW_TRACKING_URI
# (http://HOST:PORT), MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (only the URI with
# --no-auth); source it in the shell that runs snakemake (sbatch passes the environment on to
# every job). The pid and log are STATE_DIR/mlflow-server.pid and STATE_DIR/mlflow-server.log.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
    sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
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

host=127.0.0.1 port=5000 workers=4 advertise="" auth=true
backend="sqlite:///$state/mlflow.db"
artifacts=$state/artifacts
extra=()
# need_value OPTION "$@": a one-line error when OPTION has no value after it.
need_value() {
    (($# >= 3)) && [[ -n $3 && $3 != --* ]] || die "$1 needs a value"
}
while (($#)); do
    case $1 in
        --host) need_value "$1" "$@"; host=$2; shift 2 ;;
        --port) need_value "$1" "$@"; port=$2; shift 2 ;;
        --backend-store-uri) need_value "$1" "$@"; backend=$2; shift 2 ;;
        --artifacts-destination) need_value "$1" "$@"; artifacts=$2; shift 2 ;;
        --workers) need_value "$1" "$@"; workers=$2; shift 2 ;;
        --advertise) need_value "$1" "$@"; advertise=$2; shift 2 ;;
        --no-auth) auth=false; shift ;;
        --) shift; extra=("$@"); break ;;
        -h | --help) usage ;;
        *) die "unknown option '$1' (allowed: --host, --port, --backend-store-uri, --artifacts-destination, --workers, --advertise, --no-auth, then -- and options for mlflow server)" ;;
    esac
done
if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    die "--port must be 1-65535, got '$port'"
fi
[[ $workers =~ ^[1-9][0-9]*$ ]] || die "--workers must be a positive integer, got '$workers'"
if $auth; then
    for arg in "${extra[@]}"; do
        if [[ $arg == --app-name* ]]; then
            die "--app-name after -- would replace the basic-auth app this script serves; add --no-auth to serve an app of your own"
        fi
    done
fi
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

auth_ini=$state/auth.ini auth_db=$state/auth.db
user="" password=""

# write_private FILE: standard input into FILE, which nobody else may read at any moment: the
# file is made under umask 077, and noclobber refuses a temporary file someone put there first.
write_private() {
    rm -f "$1.tmp"
    (umask 077 && set -o noclobber && cat >"$1.tmp") || die "could not write $1.tmp"
    mv "$1.tmp" "$1"
}

random_secret() {
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

# The auth app's admin, whom the study logs in as: read from auth.ini, or created with a fresh
# password when the state directory has none. The users live in auth.db and the auth app reads
# admin_password only to create a missing admin, so a new password next to an existing auth.db
# would lock the study out of its own server.
credentials() {
    local found
    if [[ -f $auth_ini ]]; then
        # Parsed as MLflow parses it (interpolation included), so both see the same password.
        found=$(
            python3 - "$auth_ini" <<'PY'
import configparser
import sys

parser = configparser.ConfigParser()
try:
    parser.read(sys.argv[1])
    user = parser["mlflow"]["admin_username"]
    password = parser["mlflow"]["admin_password"]
except (KeyError, configparser.Error) as err:
    sys.exit(f"no admin_username and admin_password in its [mlflow] section ({err})")
if not user or not password or "\n" in user + password:
    sys.exit("admin_username and admin_password must be non-empty single lines")
print(user)
print(password)
PY
        ) || die "cannot read the server's credentials from $auth_ini"
        user=${found%%$'\n'*} password=${found#*$'\n'}
    elif [[ -s $auth_db ]]; then
        die "$auth_db holds the server's users, but $auth_ini with their password is gone; restore it, or delete $auth_db to create new credentials"
    else
        user=ganstudy password=$(random_secret)
        write_private "$auth_ini" <<INI
# MLflow basic-auth settings of the server in this directory (scripts/slurm-localhost/).
# The study logs in as admin_username/admin_password (exported by mlflow.env next to this file).
# The users live in database_uri; admin_password only creates the admin when it is missing there.
[mlflow]
default_permission = READ
database_uri = sqlite:///${auth_db//%/%%}
admin_username = $user
admin_password = $password
# Checking a password costs about 0.1 s of CPU (scrypt); each worker remembers a good one for a
# minute, so that the many small requests of a study's jobs do not each pay it. A password changed
# through the API may keep working on the other workers for that minute.
auth_cache_ttl_seconds = 60
INI
    fi
    # The user database holds password hashes: private from its first byte, like auth.ini.
    (umask 077 && : >>"$auth_db")
    chmod 600 "$auth_db"
}

write_env() {
    {
        printf 'export MLFLOW_TRACKING_URI=%q\n' "$uri"
        if $auth; then
            printf 'export MLFLOW_TRACKING_USERNAME=%q\n' "$user"
            printf 'export MLFLOW_TRACKING_PASSWORD=%q\n' "$password"
        fi
    } | write_private "$state/mlflow.env"
}

# The server lets the study in: one API request with its credentials (passed in the environment,
# never on a command line, which every user of the machine can read).
accepts_credentials() {
    MLFLOW_TRACKING_USERNAME=$user MLFLOW_TRACKING_PASSWORD=$password python3 - "$uri" <<'PY'
import base64
import os
import sys
import urllib.error
import urllib.request

pair = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ['MLFLOW_TRACKING_PASSWORD']}"
request = urllib.request.Request(f"{sys.argv[1]}/api/2.0/mlflow/experiments/search?max_results=1")
request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
try:
    urllib.request.urlopen(request, timeout=10).read()
except urllib.error.HTTPError as err:
    sys.exit(f"HTTP {err.code} {err.reason}")
PY
}

if [[ $action == start && -f $pidfile ]] && alive "$(<"$pidfile")"; then
    die "a server from $state is already running (pid $(<"$pidfile")); stop it with: $0 stop $state"
fi
if $auth; then
    credentials
    command+=(--app-name basic-auth)
    export MLFLOW_AUTH_CONFIG_PATH=$auth_ini
    # The admin that auth.ini names is the one the study logs in as; these would override it.
    unset MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD
    # Signs the CSRF tokens of the auth app's user form: one key for every worker.
    if [[ -z ${MLFLOW_FLASK_SERVER_SECRET_KEY:-} ]]; then
        MLFLOW_FLASK_SERVER_SECRET_KEY=$(random_secret)
        export MLFLOW_FLASK_SERVER_SECRET_KEY
    fi
fi

if [[ $action == run ]]; then
    write_env
    note "serving $uri (backend $backend, artifacts $artifacts); source $state/mlflow.env"
    exec "${command[@]}"
fi

healthy() {
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$1/health"
}
if healthy "http://127.0.0.1:$port" 2>/dev/null; then
    die "port $port already answers as an MLflow server; pick another with --port"
fi
log=$state/mlflow-server.log
logged_before=$(stat -c %s "$log" 2>/dev/null || echo 0)
start_daemon "$pidfile" "$log" "${command[@]}"
# Importing MLflow in every worker takes a while on a busy machine; a server that exits (port
# taken, bad store URI) ends the wait at once.
deadline=$((SECONDS + ${MLFLOW_SERVER_START_TIMEOUT:-120}))
until healthy "$uri" 2>/dev/null; do
    if ! alive "$(<"$pidfile")" || ((SECONDS >= deadline)); then
        tail -n 30 "$log" >&2 || true
        stop_daemons 15 "$pidfile"
        if tail -c "+$((logged_before + 1))" "$log" | grep -q "requires the Flask-WTF package"; then
            die "MLflow's basic-auth app needs Flask-WTF: pip install 'mlflow[auth]' (or add --no-auth on a closed network)"
        fi
        die "the MLflow server did not come up at $uri; see $log"
    fi
    sleep 0.3
done
if $auth && ! accepts_credentials; then
    stop_daemons 15 "$pidfile"
    die "the MLflow server at $uri refuses user '$user' with the password in $auth_ini (does $auth_db come from another auth.ini?)"
fi
write_env
if $auth; then
    access="user $user, password in $state/mlflow.env"
else
    access="no authentication"
fi
note "serving $uri ($access; backend $backend, artifacts $artifacts); source $state/mlflow.env"
