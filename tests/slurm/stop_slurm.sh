#!/usr/bin/env bash
# Stop the single-node cluster that start_slurm.sh started and remove its /etc/slurm/slurm.conf link.
#
# The link must not outlive the daemons: with a slurm.conf but no controller, every snakemake start on this
# machine waits about 9 s, because the SLURM executor plugin calls `scontrol show config` when it loads.
# A /etc/slurm/slurm.conf that is not start_slurm.sh's (a real cluster's) is left alone. munged keeps running:
# other software on the machine may use it.
set -euo pipefail

STATE=${AVAFFECT_SLURM_STATE:-/tmp/avaffect-slurm}
CONF=$STATE/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf

for daemon in slurmd slurmctld; do
  if [[ -f $STATE/$daemon.pid ]] && kill -0 "$(cat "$STATE/$daemon.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/$daemon.pid")"
    echo "stop_slurm: stopped $daemon" >&2
  fi
done
if [[ -L $SYSTEM_CONF ]] && [[ $(readlink -f "$SYSTEM_CONF") == "$(readlink -f "$CONF")" ]]; then
  rm -f "$SYSTEM_CONF"
  echo "stop_slurm: removed $SYSTEM_CONF" >&2
fi
