#!/usr/bin/env bash
# Start a single-node SLURM cluster on 127.0.0.1: munged, slurmctld and slurmd, as root, with
# every file (config, munge key and socket, state, logs, pid files) under one state directory.
#
#   slurm-up.sh STATE_DIR [--cpus N] [--memory-mb M] [--partition NAME]
#
# On success it writes STATE_DIR/env.sh (SLURM_CONF, and PATH with an srun shim); source it
# before sbatch, squeue or snakemake. Stop everything with slurm-down.sh STATE_DIR.
#
# Without an accounting database sacct cannot answer, so job status has to come from squeue:
# MinJobAge keeps finished jobs visible to squeue for 300 s, long enough for any status poll.
# The daemons listen on 127.0.0.1 only (NoInAddrAny, NoCtldInAddrAny).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(($# >= 1)) || usage
state=$1
shift
cpus=$(nproc)
memory_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
partition=local
while (($#)); do
    case $1 in
        --cpus) cpus=${2:?--cpus needs a value}; shift 2 ;;
        --memory-mb) memory_mb=${2:?--memory-mb needs a value}; shift 2 ;;
        --partition) partition=${2:?--partition needs a value}; shift 2 ;;
        -h | --help) usage ;;
        *) die "unknown option '$1' (allowed: --cpus N, --memory-mb M, --partition NAME)" ;;
    esac
done
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a positive integer, got '$cpus'"
[[ $memory_mb =~ ^[1-9][0-9]*$ ]] || die "--memory-mb must be a positive integer, got '$memory_mb'"
[[ $partition =~ ^[A-Za-z0-9_-]+$ ]] || die "--partition may hold letters, digits, '_' and '-', got '$partition'"

require_commands munged munge unmunge slurmctld slurmd sinfo squeue sbatch srun scancel python3
((EUID == 0)) || die "the localhost cluster runs its daemons as root (SlurmUser=root); run as root"

mkdir -p "$state"
state=$(cd "$state" && pwd)
[[ ! -f $state/pids/slurmctld.pid ]] || die "$state already holds a running cluster; stop it with slurm-down.sh $state"
mkdir -p "$state"/{etc,log,pids,spool/ctld,spool/d,munge}
# munged refuses a socket directory or key that others can write to or read.
chmod 700 "$state/munge"

# A Unix socket's path holds at most 107 bytes: munged's socket, and the one each job step opens
# in SlurmdSpoolDir (localhost_<job>.<step>, up to 30 bytes), would not fit under a deep
# STATE_DIR (a pytest temporary directory under pytest-xdist goes past it, and the job never
# starts: "launch failed requeued held"). Both are named through a short link to STATE_DIR,
# $short/s; their files stay under STATE_DIR. slurm-down.sh removes the link.
if [[ -f $state/short-link ]]; then
    old=$(<"$state/short-link")
    [[ $old != /tmp/slurm-local.*/s ]] || { rm -f "$old"; rmdir "${old%/s}" 2>/dev/null || true; }
fi
short=$(mktemp -d /tmp/slurm-local.XXXXXX)
ln -s "$state" "$short/s"
echo "$short/s" >"$state/short-link"
short=$short/s

# --- munge: a fresh key and a private socket, so the system's munge (if any) is left alone ----
key=$state/munge/munge.key
socket=$short/munge/munge.socket
if [[ ! -f $key ]]; then
    head -c 1024 /dev/urandom >"$key.tmp"
    chmod 400 "$key.tmp"
    mv "$key.tmp" "$key"
fi
start_daemon "$state/pids/munged.pid" "$state/log/munged.out" \
    munged --foreground --force --socket="$socket" --key-file="$key" \
    --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" \
    --seed-file="$state/munge/munged.seed"
munge_roundtrip() { munge -n -S "$socket" | unmunge -S "$socket"; }
wait_until 15 "munged to answer on $socket" munge_roundtrip ||
    die "munged did not start; see $state/log/munged.log"

# --- slurm.conf ---------------------------------------------------------------------------------
ctld_port=${SLURM_LOCAL_CTLD_PORT:-$(free_port)}
slurmd_port=${SLURM_LOCAL_SLURMD_PORT:-$(free_port)}
conf=$state/etc/slurm.conf
cat >"$conf.tmp" <<CONF
# Single-node test cluster written by slurm-up.sh; everything lives under $state.
ClusterName=ganstudy-localhost
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# The node is what --cpus and --memory-mb say, even where that exceeds the machine: a test can
# then submit jobs with a real cluster's memory requests (nothing enforces them here).
SlurmdParameters=config_overrides
MinJobAge=300
KillWait=5
StateSaveLocation=$state/spool/ctld
SlurmdSpoolDir=$short/spool/d
SlurmctldPidFile=$state/spool/slurmctld.pid
SlurmdPidFile=$state/spool/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=$partition Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
mv "$conf.tmp" "$conf"
# An empty cgroup.conf keeps slurmd from probing the (absent) cgroup hierarchy for its defaults.
: >"$state/etc/cgroup.conf"
export SLURM_CONF=$conf

# --- daemons ------------------------------------------------------------------------------------
start_daemon "$state/pids/slurmctld.pid" "$state/log/slurmctld.out" slurmctld -D -c -f "$conf"
start_daemon "$state/pids/slurmd.pid" "$state/log/slurmd.out" slurmd -D -N localhost -f "$conf"
node_idle() { [[ $(sinfo -h -N -n localhost -o %T) == idle ]]; }
if ! wait_until 30 "node localhost to become idle" node_idle; then
    note "sinfo: $(sinfo -h -N -o '%N %T %E' 2>&1 || true)"
    tail -n 20 "$state/log/slurmctld.log" "$state/log/slurmd.log" >&2 || true
    "$here/slurm-down.sh" "$state" || true
    die "the cluster did not come up; logs are in $state/log"
fi

# The SLURM executor's job step drops every SLURM_* variable before it calls srun inside a job,
# SLURM_CONF included; a real cluster's srun then finds /etc/slurm/slurm.conf. This cluster keeps
# its config in the state directory, so a shim first on PATH hands srun the path again.
mkdir -p "$state/bin"
printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$conf" "$(command -v srun)" >"$state/bin/srun.tmp"
chmod +x "$state/bin/srun.tmp"
mv "$state/bin/srun.tmp" "$state/bin/srun"

# shellcheck disable=SC2016  # $PATH expands where env.sh is sourced
printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$conf" "$state/bin" >"$state/env.sh.tmp"
mv "$state/env.sh.tmp" "$state/env.sh"
note "cluster up: partition $partition, $cpus CPUs, $memory_mb MB; source $state/env.sh"
