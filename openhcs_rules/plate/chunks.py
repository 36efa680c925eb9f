"""Well chunks: a plate's wells split into consecutive runs, one workflow job each.

One job per well costs Snakemake ~1 ms of planning and ~60 ms of bookkeeping per job, and each job
pays ~1 s of imports and start-up: at 100 plates x 384 wells that is 38,400 jobs and a minute just to
plan. A chunk of wells is one job instead (one process, one scheduler submission), while each well
still has its own outputs and is still skipped on a rerun once complete.

Planning still costs Snakemake ~2 ms per job, so ``wells_per_job: auto`` also looks at the whole
screen: a plate gets at most :data:`AUTO_JOBS_PER_PLATE` (16) well jobs, halved as often as needed to keep
the screen within :data:`AUTO_JOBS_PER_SCREEN` (4,000) well jobs, and never fewer than one. The number of
plates comes from the config, so it is known when planning starts:

=====================  ==============  ==========================
plates in the screen   jobs per plate  wells per job (384 / 1536)
=====================  ==============  ==========================
1 - 250                16              24 / 96 (as before)
251 - 500              8               48 / 192
501 - 1,000            4               96 / 384
1,001 - 2,000          2               192 / 768
more                   1               384 / 1536
=====================  ==============  ==========================

Powers of two, so that a growing screen changes its chunks only at those four sizes (250, 500, 1,000,
2,000 plates), not every few plates.

A chunk's name says which wells it holds: ``B02`` (one well) or ``B02-B09`` (the wells from B02 to
B09 in the plate's well order). The name alone is enough to recover the wells from ``plate.json``,
and a changed chunk size gives new names, so Snakemake never mistakes an old chunk for a new one.
After such a change (another integer, or a screen grown past one of those sizes with ``auto``) the new
chunk jobs skip the wells already done (their run key does not depend on the chunk) and every plate is
assembled again (its chunk manifests are new); the old manifests are left unused.
"""

from __future__ import annotations

import math
import os
import re

from openhcs_rules.plate.model import PlateStructure

#: with ``wells_per_job: auto``, a plate is split into at most this many jobs: enough to keep a 16-core
#: workstation busy on one plate, few enough to plan 100 plates in seconds
AUTO_JOBS_PER_PLATE = 16

#: with ``wells_per_job: auto``, the well jobs of the whole screen are at most this many (unless it has more
#: plates: one job per plate is the least): 1,000 plates x 4 jobs, planned in under 30 s; a screen of up to
#: 250 plates keeps 16 jobs per plate
AUTO_JOBS_PER_SCREEN = 4000

CHUNK_PATTERN = r"[A-Z]{1,2}[0-9]{2,3}(-[A-Z]{1,2}[0-9]{2,3})?"
_CHUNK = re.compile(rf"^{CHUNK_PATTERN}$")


def auto_jobs_per_plate(plates: int) -> int:
    """Well jobs per plate with 'auto' in a screen of ``plates`` plates: :data:`AUTO_JOBS_PER_PLATE`, halved
    until the screen has at most :data:`AUTO_JOBS_PER_SCREEN` well jobs, at least 1 (16 up to 250 plates, 8 up
    to 500, 4 up to 1,000, 2 up to 2,000, then 1)."""
    if isinstance(plates, bool) or not isinstance(plates, int) or plates < 1:
        raise ValueError(f"a screen has at least one plate, got {plates!r}")
    jobs = AUTO_JOBS_PER_PLATE
    while jobs > 1 and plates * jobs > AUTO_JOBS_PER_SCREEN:
        jobs //= 2
    return jobs


def wells_per_job(setting: int | str, n_wells: int, plates: int = 1) -> int:
    """The chunk size for a plate of ``n_wells`` in a screen of ``plates`` plates: the configured integer, or
    for 'auto' the smallest size that splits the plate into at most :func:`auto_jobs_per_plate` jobs."""
    if setting == "auto":
        return max(1, math.ceil(n_wells / auto_jobs_per_plate(plates)))
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"wells_per_job must be 'auto' or an integer >= 1, got {setting!r}")
    return setting


def chunk_name(wells: list[str]) -> str:
    """'B02' for one well, 'B02-B09' for a run of wells."""
    if not wells:
        raise ValueError("a chunk needs at least one well")
    return wells[0] if len(wells) == 1 else f"{wells[0]}-{wells[-1]}"


def well_chunks(well_names: list[str], setting: int | str, plates: int = 1) -> dict[str, list[str]]:
    """Chunk name -> its wells, consecutive in the plate's well order (``plates``: the screen's plates, for
    'auto')."""
    size = wells_per_job(setting, len(well_names), plates)
    groups = [well_names[i : i + size] for i in range(0, len(well_names), size)]
    return {chunk_name(group): group for group in groups}


def wells_in_chunk(well_names: list[str], chunk: str) -> list[str]:
    """The wells a chunk name stands for, checked against the plate's wells (in plate order)."""
    if not _CHUNK.match(chunk):
        raise ValueError(f"{chunk!r} is not a chunk name (a well like B02, or a range like B02-B09)")
    first, _, last = chunk.partition("-")
    last = last or first
    for well in (first, last):
        if well not in well_names:
            raise KeyError(f"chunk {chunk}: well {well} is not in this plate; rerun discovery")
    start, stop = well_names.index(first), well_names.index(last)
    if stop < start:
        raise ValueError(f"chunk {chunk}: {last} comes before {first} in the plate's well order")
    return well_names[start : stop + 1]


class PlateChunks:
    """Chunk name -> wells of each plate.json, read once per version of the file.

    Planning asks for a plate's chunks once per job that names them (every chunk job's runtime, the plate's
    assembly, the stale-chunk check): 18,000 times for 1,000 plates. The file is read (only its well names)
    the first time and again only when it is another file: discovery writes plate.json atomically, so a
    rewritten one has a new inode, and a file changed in place a new mtime or size. One version per path is
    kept.
    """

    def __init__(self, setting: int | str, plates: int = 1) -> None:
        """``setting``: the config's wells_per_job; ``plates``: how many plates the screen has (for 'auto')."""
        wells_per_job(setting, 1, plates)  # a bad setting fails here, not in the first input function
        self.setting = setting
        self.plates = plates
        self._cache: dict[str, tuple[tuple[int, int, int], dict[str, list[str]]]] = {}

    def __call__(self, plate_json: str | os.PathLike[str]) -> dict[str, list[str]]:
        """The chunks of the plate.json at ``plate_json`` (raises FileNotFoundError if there is none)."""
        path = os.fspath(plate_json)
        info = os.stat(path)
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, well_chunks(PlateStructure.load_well_names(path), self.setting, self.plates))
            self._cache[path] = cached
        return cached[1]
