#!/usr/bin/env bash
# `--scheduler slurm:FILE` against a real SLURM, started as an admin would start a one-node
# cluster: Debian's slurm-wlm and munge, slurmctld + slurmd on this machine, one partition
# `debug` with this machine's cores. Then the opt-in test runs `enrich redundancy` and
# `enrich rank` with Dask workers submitted as SLURM batch jobs and compares their outputs
# byte for byte with the in-process engine.
#
# Needs root (apt-get, daemons). Usage: sudo scripts/check_slurm.sh   (PYTHON: the project venv)
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-$HERE/.venv/bin/python}"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "installing slurm-wlm and munge (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi

# munge: one key, one daemon
mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
chown -R munge:munge /etc/munge /var/log/munge /run/munge /var/lib/munge
chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
munge -n | unmunge >/dev/null

# slurm: this host as controller and only node
HOST="$(hostname)"
CPUS="$(nproc)"
MEM="$(free -m | awk '/Mem:/{print int($2 * 0.8)}')"
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
if ! grep -qs "ClusterName=enrichcheck" /etc/slurm/slurm.conf; then
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=enrichcheck
SlurmctldHost=$HOST
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmUser=root
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo
srun -N1 -n1 true  # a job runs

cd "$HERE"
ENRICH_CHECK_SLURM=1 ENRICH_SLURM_QUEUE=debug "$PYTHON" -m pytest -q -p no:cacheprovider \
  tests/test_distributed.py -k "real_slurm or slurm"
