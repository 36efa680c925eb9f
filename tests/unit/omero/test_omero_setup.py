"""setup-omero: the zeroc-ice patch, the wheel cache, the build-tool check and the CLI wiring.

The full build (minutes) is not repeated here; these tests pin the decisions around it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from openhcs_rules.cli.omero import add_parsers as add_omero_parser
from openhcs_rules.omero import ice_wheel
from openhcs_rules.omero.ice_wheel import IceBuildError, apply_patches, find_cached_wheel, setup_omero


def _fake_sdist_tree(root: Path, eval_lines: int = 1) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "Slice.cpp").write_text("#include <Python.h>\n" + "#include <eval.h>\n" * eval_lines + "int x;\n")
    (root / "src" / "Util.cpp").write_text("PyFrameObject *f = PyThreadState_GET()->frame;\n")
    return root


def test_patches_apply_exactly(tmp_path: Path) -> None:
    tree = _fake_sdist_tree(tmp_path)
    apply_patches(tree)
    assert "eval.h" not in (tree / "src" / "Slice.cpp").read_text()
    assert (tree / "src" / "Util.cpp").read_text() == "PyFrameObject *f = PyEval_GetFrame();\n"


def test_patch_refuses_an_unexpected_tree(tmp_path: Path) -> None:
    tree = _fake_sdist_tree(tmp_path, eval_lines=2)
    with pytest.raises(IceBuildError, match="expected exactly one"):
        apply_patches(tree)


def _wheel_name(tag: str) -> str:
    return f"zeroc_ice-3.6.5-{tag}.whl"


def test_cached_wheel_is_found_only_for_this_interpreter(tmp_path: Path) -> None:
    tag = next(iter(sys_tags()))
    (tmp_path / _wheel_name("cp27-cp27mu-linux_x86_64")).write_bytes(b"")
    (tmp_path / "zeroc_ice-3.7.0-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    assert find_cached_wheel(tmp_path) is None
    good = tmp_path / _wheel_name(f"{tag.interpreter}-{tag.abi}-{tag.platform}")
    good.write_bytes(b"")
    assert find_cached_wheel(tmp_path) == good


def test_setup_reuses_the_cached_wheel_without_building(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = next(iter(sys_tags()))
    cached = tmp_path / _wheel_name(f"{tag.interpreter}-{tag.abi}-{tag.platform}")
    cached.write_bytes(b"")
    installed: list[Path] = []
    monkeypatch.setattr(ice_wheel, "build_wheel", lambda *a, **k: pytest.fail("must not build"))
    monkeypatch.setattr(ice_wheel, "install_wheel", installed.append)
    result = setup_omero(tmp_path)
    assert (result.wheel, result.built, installed) == (cached, False, [cached])


def test_setup_builds_when_the_cache_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = tmp_path / "zeroc_ice-3.6.5-cpXY.whl"
    calls: list[Path] = []
    monkeypatch.setattr(ice_wheel, "build_wheel", lambda cache, sdist=None: calls.append(cache) or built)
    monkeypatch.setattr(ice_wheel, "install_wheel", lambda wheel: None)
    result = setup_omero(tmp_path / "cache")
    assert result.built and result.wheel == built and calls == [tmp_path / "cache"]


def test_a_tampered_sdist_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice_wheel, "check_build_tools", lambda: None)
    fake = tmp_path / ice_wheel.SDIST_NAME
    fake.write_bytes(b"not the real sdist")
    with pytest.raises(IceBuildError, match="sha256"):
        ice_wheel.build_wheel(tmp_path / "cache", sdist=fake)


def test_missing_build_tools_name_the_apt_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ice_wheel, "_find_header", lambda header: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(IceBuildError) as info:
        ice_wheel.check_build_tools()
    assert "apt-get install -y g++ libssl-dev libbz2-dev" in str(info.value)


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ice_wheel.default_cache_dir() == tmp_path / "openhcs-rules" / "wheels"


def test_cli_parser_wiring() -> None:
    parser = argparse.ArgumentParser()
    add_omero_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["setup-omero", "--rebuild", "--cache-dir", "/tmp/x"])
    assert (args.command, args.rebuild, args.cache_dir) == ("setup-omero", True, "/tmp/x")
    args = parser.parse_args(["omero-server", "check", "--port", "4444"])
    assert (args.action, args.port) == ("check", 4444)
