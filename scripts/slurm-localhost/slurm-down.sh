#!/usr/bin/env bash
# Stop the localhost cluster started by slurm-up.sh STATE_DIR: cancel its jobs, then stop
# slurmd, slurmctld and munged by the pids recorded under STATE_DIR/pids. Safe to run twice.
#
#   slurm-down.sh STATE_DIR
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$here/common.sh"

(($# == 1)) || { sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
state=$1
[[ -d $state/pids ]] || exit 0
export SLURM_CONF=$state/etc/slurm.conf

# Jobs run under slurmstepd, outside slurmd's process group: cancel them while slurmctld can
# still hear us, and give their steps a moment to end before the daemons go.
if [[ -f $state/pids/slurmctld.pid ]] && alive "$(<"$state/pids/slurmctld.pid")"; then
    timeout 10 scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    no_jobs() { [[ -z $(squeue -h -t RUNNING,COMPLETING,PENDING -o %i 2>/dev/null) ]]; }
    wait_until 15 "cancelled jobs to end" no_jobs || true
fi
stop_daemons 10 "$state"/pids/{slurmd,slurmctld,munged}.pid

# The short link slurm-up.sh made to STATE_DIR for the daemons' socket paths.
if [[ -f $state/short-link ]]; then
    link=$(<"$state/short-link")
    if [[ $link == /tmp/slurm-local.*/s ]]; then
        rm -f "$link"
        rmdir "${link%/s}" 2>/dev/null || true
    fi
    rm -f "$state/short-link"
fi
