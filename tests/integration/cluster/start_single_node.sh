#!/usr/bin/env bash
# Bring up a real single-node Slurm on localhost, with accounting (slurmdbd + MariaDB), no systemd.
#
# Why accounting: snakemake-executor-plugin-slurm checks job status with `sacct`, as on a real cluster;
# without an accounting database `sacct` fails and the run never sees its jobs finish. Running slurmdbd
# keeps the profile exactly as users will use it (no test-only status-command override).
#
# Idempotent: daemons already answering are left alone. Needs root and Debian's slurm-wlm, munge,
# slurmdbd and mariadb-server packages (installed by .ci/run). Prints "slurm ready" when the node is idle.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/var/lib/openhcs-slurm}
CONF_DIR=/etc/slurm
mkdir -p "$STATE"/{ctld,d,log,run} /var/run/munge /var/log/munge
chown munge:munge /var/run/munge /var/log/munge 2>/dev/null || true

# ready = the controller answers, the node takes jobs AND accounting answers (sacct is how finished jobs are
# seen: with the database gone, e.g. killed with an earlier test run, every job would look unfinished)
if scontrol ping 2>/dev/null | grep -q "UP"; then
    if sinfo -h -o "%T" | grep -qE "idle|mix|alloc" && sacct -n -X -S now >/dev/null 2>&1; then
        echo "slurm ready (already running)"; exit 0
    fi
fi

# --- munge (authentication between the daemons and clients) -------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged --force
fi

# --- MariaDB + slurmdbd (job accounting: what sacct reads) ---------------------------------------------
if ! mariadb -u root -e "select 1" >/dev/null 2>&1; then
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    (mysqld_safe --skip-networking=0 --bind-address=127.0.0.1 >/dev/null 2>&1 &)
    for _ in $(seq 1 60); do mariadb -u root -e "select 1" >/dev/null 2>&1 && break; sleep 0.5; done
    # a slurmdbd that lost its database: stopped here, started again below
    if pkill -x slurmdbd 2>/dev/null; then
        for _ in $(seq 1 50); do pgrep -x slurmdbd >/dev/null || break; sleep 0.2; done
    fi
fi
mariadb -u root -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"

cat > "$CONF_DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmdbpass
StorageLoc=slurm_acct_db
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
CONF
chmod 600 "$CONF_DIR/slurmdbd.conf"

CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmdbd >/dev/null || slurmdbd
for _ in $(seq 1 40); do sacctmgr -n show cluster >/dev/null 2>&1 && break; sleep 0.25; done
sacctmgr -i add cluster ci >/dev/null 2>&1 || true
sacctmgr -i add account ci Cluster=ci >/dev/null 2>&1 || true
sacctmgr -i add user root Account=ci >/dev/null 2>&1 || true

# a fresh controller forgets the jobs of an earlier life (-c): on a machine restored from a snapshot, jobs
# recovered from the saved state could hold the node or leave accounting waiting on jobs no slurmd knows
pgrep -x slurmctld >/dev/null || slurmctld -c
pgrep -x slurmd >/dev/null || { rm -rf "${STATE:?}"/d/*; slurmd -N localhost; }
for _ in $(seq 1 80); do
    state=$(sinfo -h -o "%T" 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) echo "slurm ready"; exit 0 ;; esac
    scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
    sleep 0.25
done
echo "slurm did not come up; logs in $STATE/log" >&2
exit 1
