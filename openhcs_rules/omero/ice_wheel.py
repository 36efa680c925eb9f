"""Build, cache and install the zeroc-ice 3.6.5 wheel that omero-py needs on Python 3.11+.

omero-py pins ``zeroc-ice>=3.6.5,<3.7``. The package index has only the 3.6.5 source distribution, and it does
not compile on CPython 3.11 as published: ``src/Slice.cpp`` includes ``eval.h`` (removed in 3.11) and
``src/Util.cpp`` reads ``PyThreadState_GET()->frame`` (the field is gone). Both have one-line replacements that
keep the behaviour. The build takes minutes, so the wheel is kept in the user's cache directory and reused.
After :func:`setup_omero`, ``pip install '.[omero]'`` resolves zeroc-ice to the installed wheel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from openhcs_rules.errors import OpenHCSError

log = logging.getLogger(__name__)

ICE_VERSION = "3.6.5"
SDIST_NAME = f"zeroc-ice-{ICE_VERSION}.tar.gz"
# sha256 of the sdist on the package index; a different file is refused rather than patched blindly.
SDIST_SHA256 = "4235ffeb605bcd4e22e716577f7d61e4aa1bc82f65276bb542701a81b7933356"

# (file, exact old text, replacement): the whole patch. Each must match once, or the build stops.
PATCHES: tuple[tuple[str, str, str], ...] = (
    ("src/Slice.cpp", "#include <eval.h>\n", ""),
    ("src/Util.cpp", "PyThreadState_GET()->frame", "PyEval_GetFrame()"),
)

# Headers the C++ extension includes, and the Debian package that ships each.
BUILD_HEADERS = {"openssl/ssl.h": "libssl-dev", "bzlib.h": "libbz2-dev"}


class IceBuildError(OpenHCSError):
    """The zeroc-ice wheel could not be built or installed; the message says what to do."""


@dataclass(frozen=True)
class SetupResult:
    wheel: Path
    built: bool
    seconds: float


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/openhcs-rules/wheels`` (``~/.cache/...`` by default): survives venv rebuilds."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "openhcs-rules" / "wheels"


def _wheel_fits_interpreter(path: Path) -> bool:
    try:
        from packaging.tags import sys_tags
        from packaging.utils import parse_wheel_filename
    except ImportError:  # a bare venv: pip always carries its own copy
        from pip._vendor.packaging.tags import sys_tags  # type: ignore[assignment]  # pip's copy, same API
        from pip._vendor.packaging.utils import parse_wheel_filename  # type: ignore[assignment]  # same API

    try:
        name, version, _build, tags = parse_wheel_filename(path.name)
    except ValueError:
        return False
    if name != "zeroc-ice" or str(version) != ICE_VERSION:
        return False
    supported = set(sys_tags())
    return any(tag in supported for tag in tags)


def find_cached_wheel(cache_dir: Path) -> Path | None:
    """A cached zeroc-ice wheel that this interpreter can install, or None."""
    if not cache_dir.is_dir():
        return None
    for candidate in sorted(cache_dir.glob("zeroc_ice-*.whl")):
        if _wheel_fits_interpreter(candidate):
            return candidate
    return None


def _find_header(header: str) -> bool:
    roots = [Path("/usr/include"), Path("/usr/local/include"), Path(sys.prefix) / "include"]
    roots += [Path(p) for p in os.environ.get("CPATH", "").split(os.pathsep) if p]
    multiarch = Path("/usr/include").glob("*-linux-gnu")
    return any((root / header).exists() for root in [*roots, *multiarch])


def check_build_tools() -> None:
    """Fail in a second, with the apt command, instead of after minutes of compiling."""
    missing = [pkg for header, pkg in BUILD_HEADERS.items() if not _find_header(header)]
    if not (shutil.which("g++") or shutil.which("c++")):
        missing.insert(0, "g++")
    python_h = Path(sys.base_prefix) / "include" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "Python.h"
    if not python_h.exists() and not _find_header(f"python{sys.version_info[0]}.{sys.version_info[1]}/Python.h"):
        missing.append(f"python{sys.version_info[0]}.{sys.version_info[1]}-dev")
    if missing:
        raise IceBuildError(
            "building zeroc-ice needs a C++ compiler and headers that are missing here; install them with:\n"
            f"  apt-get install -y {' '.join(missing)}\nthen run `openhcs-rules setup-omero` again"
        )


def apply_patches(src: Path) -> None:
    """Apply the two Python 3.11 fixes; refuse a tree where either fix does not match exactly once."""
    for rel, old, new in PATCHES:
        path = src / rel
        text = path.read_text(encoding="latin-1")
        if text.count(old) != 1:
            raise IceBuildError(f"{rel}: expected exactly one {old.strip()!r} in zeroc-ice {ICE_VERSION}")
        path.write_text(text.replace(old, new), encoding="latin-1")


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise IceBuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")


def _download_sdist(dest: Path, sdist: Path | None) -> Path:
    if sdist is None:
        _run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
            + [f"zeroc-ice=={ICE_VERSION}", "-d", str(dest)]
        )
        sdist = dest / SDIST_NAME
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise IceBuildError(f"{sdist.name}: sha256 {digest} is not the published zeroc-ice {ICE_VERSION} sdist")
    return sdist


def build_wheel(cache_dir: Path, sdist: Path | None = None) -> Path:
    """Download (or take) the sdist, patch it, build the wheel into ``cache_dir``; returns the wheel path.

    The build is serial: IcePy is a single extension, and setuptools only parallelises across extensions.
    """
    check_build_tools()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zeroc-ice-build-") as tmp:
        work = Path(tmp)
        archive = _download_sdist(work, sdist)
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        src = work / f"zeroc-ice-{ICE_VERSION}"
        apply_patches(src)
        out = work / "wheelhouse"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), "."], src)
        built = next(out.glob("zeroc_ice-*.whl"), None)
        if built is None:
            raise IceBuildError("pip wheel reported success but produced no zeroc_ice wheel")
        target = cache_dir / built.name
        tmp_target = cache_dir / (built.name + ".part")
        shutil.copyfile(built, tmp_target)
        os.replace(tmp_target, target)  # a half-copied wheel never looks cached
    return target


def install_wheel(wheel: Path) -> None:
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", str(wheel)])


def ice_installed() -> str | None:
    """The installed zeroc-ice version if it imports, else None."""
    try:
        import Ice  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zeroc-ice")
    except PackageNotFoundError:
        return None


def setup_omero(cache_dir: Path | None = None, rebuild: bool = False, sdist: Path | None = None) -> SetupResult:
    """Reuse the cached wheel or build it, then install it into this interpreter's environment."""
    start = time.monotonic()
    cache_dir = cache_dir or default_cache_dir()
    wheel = None if rebuild else find_cached_wheel(cache_dir)
    built = wheel is None
    if wheel is None:
        log.info("building zeroc-ice %s into %s (several minutes)", ICE_VERSION, cache_dir)
        wheel = build_wheel(cache_dir, sdist=sdist)
    install_wheel(wheel)
    return SetupResult(wheel=wheel, built=built, seconds=time.monotonic() - start)
