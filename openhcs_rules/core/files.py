"""Atomic writes: a temporary name in the same folder, then ``os.replace``.

An interrupted job must never leave a file that looks complete: readers see either the old file or the
whole new one, and Snakemake's "incomplete" marking plus this rule make reruns redo only what is missing.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from openhcs_rules.errors import OpenHCSError

log = logging.getLogger(__name__)

#: the random part ``tempfile.mkstemp`` puts in a name: 8 characters of this set
_RANDOM = "[a-z0-9_]{8}"


_FREE_SPACE = "free space on it (df -h {folder}) or write the results to another disk"
_PERMISSION = "check that you may write to {folder} (ls -ld {folder}) or write the results elsewhere"

#: errors of the filesystem being written to, not of the code, and what a user can do about each
_ADVICE = {
    errno.ENOSPC: "the disk is full: " + _FREE_SPACE,
    errno.EDQUOT: "your disk quota is used up: " + _FREE_SPACE + " (or ask for a larger quota)",
    errno.EFBIG: "the file is larger than this filesystem allows: write the results to another disk",
    errno.EROFS: "the filesystem is mounted read-only: write the results elsewhere or have it mounted read-write",
    errno.EACCES: "permission denied: " + _PERMISSION,
    errno.EPERM: "operation not permitted: " + _PERMISSION,
}


class OutputWriteError(OpenHCSError, OSError):
    """An output could not be written because of its filesystem (full, over quota, read-only, no permission).

    The bare ``OSError`` of a failing ``write()`` names no file ("[Errno 28] No space left on device"), so a
    user of a 1536-well run cannot tell which disk filled up. This one names the output and says what to do;
    it stays an ``OSError`` (same errno) for any caller that handles those.
    """

    def __init__(self, target: Path, cause: OSError) -> None:
        folder = _nearest_existing(target.parent)
        code = cause.errno
        assert code is not None, "write_error only wraps an OSError whose errno is in _ADVICE"
        advice = _ADVICE[code].format(folder=folder)
        reason = cause.strerror or os.strerror(code)
        message = (
            f"cannot write {target}: {reason}. {advice[0].upper()}{advice[1:]}, then rerun; "
            f"nothing half-written was left under a name that looks complete."
        )
        super().__init__(cause.errno, message)
        self.target, self.cause, self.message = target, cause, message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[OutputWriteError], tuple[Path, OSError]]:
        return type(self), (self.target, self.cause)


def _nearest_existing(folder: Path) -> Path:
    """``folder`` or its nearest existing parent: the one a user can run ``df``/``ls`` on."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _names_a_path_of(error: OSError, target: Path) -> bool:
    """Whether ``error`` concerns writing ``target``: it names no file (``write()`` and ``fsync()`` do not), or
    one in ``target``'s folder or on the way to it; not, say, an input that the code writing ``target`` reads.
    """
    folder = os.path.abspath(target.parent)
    for name in (error.filename, error.filename2):
        if not isinstance(name, str | bytes | os.PathLike):
            continue
        path = os.path.abspath(os.fsdecode(name))
        if not (folder == path or folder.startswith(path + os.sep) or path.startswith(folder + os.sep)):
            return False
    return True


def write_error(error: BaseException, target: Path) -> OutputWriteError | None:
    """The error to raise instead of ``error`` when it means ``target``'s filesystem refused the write, else None.

    An error already about an inner output (a TIFF inside a well's temp folder) is renamed after the outer
    ``target``: the user knows the well's ``images`` folder, not its temporary name.
    """
    cause = error.cause if isinstance(error, OutputWriteError) else error
    if isinstance(cause, OSError) and cause.errno in _ADVICE and _names_a_path_of(cause, target):
        return OutputWriteError(target, cause)
    return None


def _new_temp(target: Path, suffix: str) -> Path:
    """A free temporary name beside ``target`` (the folder made if missing); nothing is left at it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    return tmp


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error remove it.

    Works for files and directories (an OME-Zarr group is a directory). A full, read-only or forbidden
    filesystem raises :class:`OutputWriteError`, which names ``path`` and says what to do.
    """
    target = Path(path)
    tmp: Path | None = None
    try:
        tmp = _new_temp(target, suffix)
        yield tmp
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as error:
        if tmp is not None:
            _remove(tmp)
        named = write_error(error, target)
        if named is None:
            raise
        raise named from named.cause


def _temp_name_pattern(target: Path) -> re.Pattern[str]:
    """The names :func:`atomic_path` gives ``target``'s temporaries (``.<name>.<random>.tmp[<suffix>]``), exactly.

    Exact so that a temp of another target is never matched, not even one whose name starts the same
    (``.B02.json...`` vs ``.B02.json.x...``) or an unrelated dot-file the user keeps beside it.
    """
    return re.compile(rf"\.{re.escape(target.name)}\.{_RANDOM}\.tmp(\.\w+)?")


def stale_temps(target: str | Path) -> list[Path]:
    """Temporaries of ``target`` in its folder: ones a killed writer left (SIGKILL skips the cleanup)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _temp_name_pattern(target)
    return sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name))


def remove_stale_temps(*targets: str | Path) -> list[Path]:
    """Remove what killed writers of ``targets`` left; call it only from the one job that owns the targets.

    A killed job's temp folder (a whole well's images) is never renamed into place, so nothing reads it,
    but it keeps its disk space through every successful rerun. Only the owner of a target may clear its
    temporaries: another process writing the same target now would lose its temp. Snakemake runs one job
    per output and locks the working directory against a second run, so a job owns its outputs; and
    temporaries are named per target, so a job writing another well (another folder) is never touched.
    """
    removed = []
    for target in targets:
        for temp in stale_temps(target):
            _remove(temp)
            log.info("removed %s, left by an interrupted earlier write of %s", temp, Path(target).name)
            removed.append(temp)
    return removed


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
