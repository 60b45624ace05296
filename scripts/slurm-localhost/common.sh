# shellcheck shell=bash
# Helpers shared by the localhost SLURM and MLflow scripts. Sourced, never run.
#
# Every daemon is started with `setsid`, so that it leads its own process group: stopping it
# by that group's id also ends the children it forked (MLflow's uvicorn workers), and nothing
# else is touched.

die() {
    echo "${0##*/}: error: $*" >&2
    exit 2
}

note() {
    echo "${0##*/}: $*" >&2
}

# A TCP port on 127.0.0.1 that is free right now (the kernel picks it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

require_commands() {
    local missing=()
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    ((${#missing[@]} == 0)) || die "missing commands: ${missing[*]} (Debian: apt-get install -y slurmctld slurmd slurm-client munge)"
}

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.2 s until it succeeds.
wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { note "gave up after ${seconds}s waiting for $what"; return 1; }
        sleep 0.2
    done
}

# start_daemon PIDFILE LOGFILE COMMAND...: run COMMAND in the background as the leader of a new
# process group and record its pid.
start_daemon() {
    local pidfile=$1 logfile=$2
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# alive PID: the process exists and is not a zombie (an exited daemon stays a zombie until
# whoever inherited it reaps it, which not every container's init does promptly).
alive() {
    local stat
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    # read, not $(<...): under set -e, bash 5.2 exits the script when $(<...) finds no file.
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# stop_daemons GRACE PIDFILE...: SIGTERM to each process group recorded in the PIDFILEs (all at
# once: each daemon takes a second or two to shut down), SIGKILL to those still alive after GRACE
# seconds. Missing or stale pid files are fine, so stopping twice is harmless.
stop_daemons() {
    local grace=$1 pidfile pid
    shift
    local pids=()
    for pidfile in "$@"; do
        [[ -f $pidfile ]] || continue
        pid=$(<"$pidfile")
        if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
            pids+=("$pid")
        fi
    done
    local deadline=$((SECONDS + grace))
    for pid in "${pids[@]}"; do
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if alive "$pid"; then
            note "pid $pid ignored SIGTERM for ${grace}s; sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
        fi
        # The group may outlive its leader (a worker still shutting down): end the stragglers.
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    rm -f "$@"
}
