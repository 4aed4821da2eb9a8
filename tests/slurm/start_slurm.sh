#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the SLURM workflow test and for trying
# profiles/slurm on a workstation. Run as root (it installs Debian packages and starts daemons):
#
#     sudo tests/slurm/start_slurm.sh          # then: sinfo; snakemake --profile profiles/slurm
#
# It installs slurmctld, slurmd, slurm-client and munge when they are missing, writes a minimal slurm.conf
# into a state folder ($AVAFFECT_SLURM_STATE, default /tmp/avaffect-slurm, with the daemons' logs and
# state), links it as /etc/slurm/slurm.conf, starts munged, slurmctld and slurmd, and waits until the node
# is idle. Running it again while the cluster is up only waits for the node. Its one line of stdout is the
# config's path; progress goes to stderr.
#
# The config must be found at the default path, not through $SLURM_CONF: the plugin's job step executor
# removes SLURM_* variables before it calls srun inside a job. A different /etc/slurm/slurm.conf (a real
# cluster's) is never replaced: the script stops with an error instead.
#
# The config has no cgroups (proctrack/linuxproc, task/none: containers and CI runners rarely delegate
# cgroups) and no accounting: sacct has nothing to read, so the snakemake plugin must be told to poll
# squeue (profiles/slurm sets `slurm-status-command: squeue`; see docs/slurm.md).
set -euo pipefail

STATE=${AVAFFECT_SLURM_STATE:-/tmp/avaffect-slurm}
WAIT_S=${AVAFFECT_SLURM_WAIT_S:-120}
NODE=$(hostname -s)
CONF=$STATE/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf

say() { echo "start_slurm: $*" >&2; }

node_idle() {
  [[ $(readlink -f "$SYSTEM_CONF") == "$(readlink -f "$CONF")" ]] && [[ $(sinfo --noheader --nodes "$NODE" --format %T 2>/dev/null) =~ ^idle|^mixed|^allocated ]]
}

if node_idle; then
  say "node $NODE already up (config $CONF)"
  echo "$CONF"
  exit 0
fi

if [[ $(id -u) != 0 ]]; then
  say "must run as root: it installs packages and starts munged, slurmctld and slurmd"
  exit 2
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
  || ! command -v munged >/dev/null; then
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2
fi

if [[ -e $SYSTEM_CONF || -L $SYSTEM_CONF ]] && [[ $(readlink -f "$SYSTEM_CONF") != "$(readlink -f "$CONF")" ]]; then
  say "$SYSTEM_CONF exists and is not this script's: not replacing a cluster's config"
  exit 1
fi
mkdir -p "$STATE/ctld" "$STATE/spool" /run/munge "$(dirname "$SYSTEM_CONF")"
chown munge:munge /run/munge

if [[ ! -s /etc/munge/munge.key ]]; then
  say "creating /etc/munge/munge.key"
  mungekey --create --keyfile /etc/munge/munge.key >&2
  chown munge:munge /etc/munge/munge.key
  chmod 600 /etc/munge/munge.key
fi
if ! munge -n </dev/null >/dev/null 2>&1; then
  say "starting munged"
  runuser -u munge -- /usr/sbin/munged
fi

CPUS=$(nproc)
MEMORY_MB=$(free -m | awk '/^Mem:/ {print $2}')
cat >"$CONF" <<EOF
# Written by tests/slurm/start_slurm.sh: one node, no cgroups, no accounting.
ClusterName=avaffect
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
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
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$NODE CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=main Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

ln -sfn "$CONF" "$SYSTEM_CONF"

# A daemon left from an earlier run reads an older config: restart both.
for daemon in slurmctld slurmd; do
  if [[ -f $STATE/$daemon.pid ]] && kill -0 "$(cat "$STATE/$daemon.pid")" 2>/dev/null; then
    kill "$(cat "$STATE/$daemon.pid")"
    sleep 1
  fi
done
say "starting slurmctld and slurmd (logs in $STATE)"
slurmctld
slurmd

for ((waited = 0; waited < WAIT_S; waited++)); do
  if node_idle; then
    say "node $NODE idle after ${waited} s"
    echo "$CONF"
    exit 0
  fi
  sleep 1
done
say "node $NODE not idle after $WAIT_S s; sinfo says:"
sinfo -N -l >&2 || true
tail -n 20 "$STATE/slurmctld.log" "$STATE/slurmd.log" >&2 || true
exit 1
