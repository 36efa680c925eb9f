"""The console script builds only the parser of the command it runs: a job's process imports what it uses."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from openhcs_rules.cli.app import COMMAND_MODULES, COMMANDS, build_parser, command_module, main, requested_command


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_is_listed_with_the_module_that_registers_it():
    assert list(_commands(build_parser())) == list(COMMANDS)  # in --help order, none missing, none extra
    for name in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        command_module(name).add_parsers(sub)
        assert {command for command, module in COMMANDS.items() if module == name} == set(sub.choices)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_alone_parses_as_in_the_whole_parser(command):
    alone, whole = _commands(build_parser(command)), _commands(build_parser())
    assert command in alone and set(alone) <= set(whole)
    assert alone[command].format_help() == whole[command].format_help()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["process-wells", "--plate-json", "p"], "process-wells"),
        (["-v", "inspect", "x"], "inspect"),
        (["--verbose", "viewer", "status"], "viewer"),
        (["-h"], None),
        (["--help", "inspect"], None),
        ([], None),
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(argv, command):
    assert requested_command(argv) == command


def test_an_unknown_command_gets_the_whole_parser_s_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["no-such-command"])
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice" in error and "process-wells" in error and "inspect" in error


def _modules_after(argv: list[str]) -> set[str]:
    """Top-level packages imported by ``python -m openhcs_rules ARGV`` (run to its exit) in a fresh process."""
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['openhcs-rules', *{argv!r}]\n"
        "try:\n    runpy.run_module('openhcs_rules', run_name='__main__', alter_sys=True)\n"
        "except SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("command", ["process-wells", "assemble", "illumination"])
def test_a_job_command_s_help_imports_no_image_or_array_library(command):
    modules = _modules_after([command, "--help"])
    heavy = {"dask", "ome_zarr", "scipy", "skimage", "zarr", "numpy", "tifffile", "matplotlib", "pyarrow"}
    assert not {m.split(".")[0] for m in modules} & heavy
    assert not any(m.startswith(("openhcs_rules.formats", "openhcs_rules.cli.execution")) for m in modules)
