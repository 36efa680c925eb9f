"""Run a job's helper threads (read-ahead, image quality, writes) at a lower CPU priority than its compute.

Why: a well job's critical path is its main thread running the pipeline's kernels; the read-ahead thread (the
next site's planes and their quality measures), the writer (compression, pyramids) and the finisher overlap it
and normally use a core the job leaves idle. Their work comes in bursts, though: at the start of a site the read
and quality measures of the next site run while the writes of the last one are still going, and then the kernels
share two cores with two helpers. Measured on one well of the pipeline benchmark (4 sites of 2048x2048, 2x3
planes, this 2-core machine, 5 alternating runs): the job took 7.5 s against 6.3 s for the same kernels alone;
with the helpers at nice +10, 6.8 s. The helpers' work is unchanged: it runs when a core is free, which on a
machine whose cores all run kernels means after them, so the job's wall time is never worse than the kernels'
plus its helpers' total. (The writer also bounds how many sites it holds, so a helper that falls behind cannot
make the job hold more memory; see ``io.well_folder.WellImageWriter``.)

Linux only: there a nice value belongs to a thread (setpriority(2)); elsewhere the call would apply to a whole
process, so nothing is done. Raising one's own nice value needs no privilege; lowering it back would, which is
why a helper is only ever set to the main thread's nice plus :data:`HELPER_NICE_STEP`, never below where it is.
"""

from __future__ import annotations

import os
import sys
import threading

#: how much nicer than the job's main thread its helper threads run (0-19 scale; +10: ~10x less CPU share
#: than the kernels when both want the same core, and all of an idle one)
HELPER_NICE_STEP = 10
NICEST = 19


def lower_helper_priority() -> bool:
    """Give the calling thread the priority of a helper (module docstring); True if it was changed.

    Meant as a ``ThreadPoolExecutor(initializer=...)``: the nice value is the process main thread's plus
    :data:`HELPER_NICE_STEP`, whichever thread made the pool, and never lower than the thread's own.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        this_thread = threading.get_native_id()
        main_nice = os.getpriority(os.PRIO_PROCESS, os.getpid())  # Linux: the thread whose id is the pid
        current = os.getpriority(os.PRIO_PROCESS, this_thread)
        target = min(NICEST, main_nice + HELPER_NICE_STEP)
        if target <= current:
            return False
        os.setpriority(os.PRIO_PROCESS, this_thread, target)
    except OSError:  # a sandbox without setpriority: the helper just runs at the job's priority
        return False
    return True
