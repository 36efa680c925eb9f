#!/usr/bin/env bash
# Debian packages the full test suite needs (run as root, or with sudo). The core workflow needs none.
#   Slurm + accounting: the cluster tests run a real single-node Slurm
#                       (tests/integration/cluster/start_single_node.sh); slurm-wlm-torque gives the PBS
#                       profile Torque-compatible qsub/qstat/qdel to run against.
#   g++ libssl-dev libbz2-dev: `openhcs-rules setup-omero` builds the zeroc-ice wheel omero-py needs.
#   xvfb + xcb/GL libraries: napari runs for real on a virtual display (Qt's offscreen platform has no OpenGL).
#   imagej + a JRE: the Fiji viewer drives real ImageJ 1.x through scyjava/JPype.
#   chromium: the execution server's web page is tested in a real headless browser (playwright drives it).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge slurm-wlm-torque mariadb-server \
    g++ libssl-dev libbz2-dev \
    xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0 libgl1-mesa-dri libegl1 \
    imagej openjdk-17-jre-headless \
    chromium
