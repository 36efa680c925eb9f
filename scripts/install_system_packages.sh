#!/usr/bin/env bash
# Debian packages the full test suite needs (run as root, or with sudo). The core workflow needs none.
#   Slurm + accounting: the cluster tests run a real single-node Slurm (tests/slurm/start_single_node.sh);
#                       slurm-wlm-torque gives the PBS profile Torque-compatible qsub/qstat/qdel to run against.
#   g++ libssl-dev libbz2-dev: `openhcs-rules setup-omero` builds the zeroc-ice wheel omero-py needs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge slurm-wlm-torque mariadb-server \
    g++ libssl-dev libbz2-dev
