"""A well job's options are defined once (WellJobOptions): the CLI, the rule and the resume key follow from it."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from openhcs_rules.cli import build_parser
from openhcs_rules.cli.plates import FORMATS
from openhcs_rules.config import validate_screen_config
from openhcs_rules.config.schema import ANY_KEY, schema_choices, schema_default
from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.formats.registry import registered_handlers
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.options import WellJobOptions, option
from openhcs_rules.jobs.process_wells import process_wells, well_run_key
from openhcs_rules_testkit.paths import REPO
from openhcs_rules_testkit.workflow import PIPELINE


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    """A one-well plate, its plate.json and illumination profiles (and a copy of them with other values)."""
    tmp = tmp_path_factory.mktemp("plate")
    folder = tmp / "plate"
    generate_imagexpress_plate(folder, "p", wells=["B02"], sites=1, channels=1, z_planes=1, shape=(128, 128), seed=5)
    plate_json = tmp / "plate.json"
    estimate_plate_illumination(discover("p", folder, plate_json), tmp / "illumination.npz", 8)
    with np.load(tmp / "illumination.npz") as profiles:
        np.savez(tmp / "other.npz", **{name: profiles[name] * 1.01 for name in profiles.files})
    (tmp / "same.npz").write_bytes((tmp / "illumination.npz").read_bytes())  # same bytes, another path
    return plate_json, tmp


#: per run-key field: a value other than BASE's. A field added to WellJobOptions without a case here fails.
def _changes(files: Path) -> dict[str, object]:
    return {
        "illumination": str(files / "other.npz"),
        "nuclei_channel": 1,
        "gpu": "auto",
        "backend": "disk",
        "pyramid_levels": 1,
        "images": "processed",
    }


#: per field that must not affect results: a value other than BASE's
NO_EFFECT = {"streaming": {"napari": False}}


def _base(files: Path) -> WellJobOptions:
    return WellJobOptions(illumination=str(files / "illumination.npz"), gpu="numpy")


def _run(plate_json: Path, out: Path, options: WellJobOptions) -> float:
    """Run the one-well chunk; the summary's mtime (changes exactly when the well was processed)."""
    process_wells(plate_json, "B02", PIPELINE, out / "wells", out / "m.json", options=options)
    return (out / "wells" / "B02" / "summary.json").stat().st_mtime_ns


@pytest.mark.parametrize("name", WellJobOptions.run_key_fields())
def test_changing_any_run_key_option_redoes_the_well(tmp_path, plate, name):
    plate_json, files = plate
    base = _base(files)
    first = _run(plate_json, tmp_path, base)
    assert _run(plate_json, tmp_path, base) == first  # same options: skipped
    changed = WellJobOptions(**{**base.__dict__, name: _changes(files)[name]})
    assert changed != base
    assert well_run_key(plate_json, PIPELINE, changed) != well_run_key(plate_json, PIPELINE, base)
    assert _run(plate_json, tmp_path, changed) != first  # processed again
    summary = json.loads((tmp_path / "wells" / "B02" / "summary.json").read_text())
    assert summary["run_key"] == well_run_key(plate_json, PIPELINE, changed)


@pytest.mark.parametrize("name", [n for n in WellJobOptions.field_names() if n not in WellJobOptions.run_key_fields()])
def test_an_option_marked_as_not_changing_results_never_redoes_a_well(tmp_path, plate, name):
    plate_json, files = plate
    base = _base(files)
    first = _run(plate_json, tmp_path, base)
    changed = WellJobOptions(**{**base.__dict__, name: NO_EFFECT[name]})
    assert changed != base and _run(plate_json, tmp_path, changed) == first


def test_a_file_option_counts_by_its_bytes_not_its_path(plate):
    plate_json, files = plate
    base = _base(files)
    same = WellJobOptions(**{**base.__dict__, "illumination": str(files / "same.npz")})
    assert well_run_key(plate_json, PIPELINE, same) == well_run_key(plate_json, PIPELINE, base)


def test_every_run_key_field_has_a_change_case(tmp_path):
    assert set(_changes(tmp_path)) == set(WellJobOptions.run_key_fields())
    assert set(NO_EFFECT) == set(WellJobOptions.field_names()) - set(WellJobOptions.run_key_fields())


@dataclass(frozen=True)
class Extended(WellJobOptions):
    """The one definition with a field added, as a developer would add an option."""

    threshold: float = option("a new option", default=0.5, parse=float)


def test_a_field_added_to_the_definition_reaches_the_cli_the_argv_and_the_key(plate):
    plate_json, _ = plate
    parser = argparse.ArgumentParser()
    Extended.add_arguments(parser)
    options = Extended(gpu="numpy", threshold=0.7)
    assert options.to_argv()[-2:] == ["--threshold", "0.7"]
    assert Extended.from_args(parser.parse_args(options.to_argv())) == options
    assert parser.parse_args([]).threshold == 0.5
    assert "threshold" in Extended.run_key_fields()
    assert well_run_key(plate_json, PIPELINE, options) != well_run_key(plate_json, PIPELINE, Extended(gpu="numpy"))


def _screen() -> dict:
    return validate_screen_config(
        {
            "plates": {"a": {"source": "synthetic", "nuclei_channel": "Hoechst"}, "b": {"source": "synthetic"}},
            "nuclei_channel": 2,
            "gpu": "numpy",
            "output": {"backend": "disk", "pyramid_levels": 2},
            "streaming": {"napari": True},
        }
    )


def test_the_rule_argv_is_what_the_cli_parses_back(tmp_path):
    screen = _screen()
    parser = build_parser()
    for plate, channel in (("a", "Hoechst"), ("b", 2)):
        options = WellJobOptions.from_screen(screen, plate, illumination="x/illumination.npz")
        assert (options.nuclei_channel, options.gpu, options.backend, options.pyramid_levels) == (
            channel,
            "numpy",
            "disk",
            2,
        )
        assert options.streaming is None  # the viewers rule's file gives it, never a param of the well jobs
        argv = ["process-wells", "--plate-json", "p", "--chunk", "B02", "--pipeline", "f.py"]
        args = parser.parse_args([*argv, "--wells-dir", "w", "--manifest", "m", *options.to_argv()])
        assert WellJobOptions.from_args(args) == options


def test_defaults_come_from_the_schema():
    options = WellJobOptions()
    assert options.gpu == schema_default("gpu") and options.backend == schema_default("output", "backend")
    assert options.pyramid_levels == schema_default("output", "pyramid_levels")
    assert options.nuclei_channel == schema_default("nuclei_channel")
    assert (
        WellJobOptions.from_screen(validate_screen_config({"plates": {"p": {"source": "synthetic"}}}), "p") == options
    )
    for item, _ in WellJobOptions.specs():  # an unset option is left out of the argv: only where that is the default
        if item.name not in ("gpu", "backend", "pyramid_levels", "images"):
            assert item.default is None, item.name


def test_the_old_positional_call_still_means_the_same_options():
    assert WellJobOptions.of(None, "i.npz", None, "numpy", "disk", 1) == WellJobOptions(
        illumination="i.npz", gpu="numpy", backend="disk", pyramid_levels=1
    )
    with pytest.raises(TypeError):
        WellJobOptions.of(WellJobOptions(), gpu="numpy")
    with pytest.raises(ValueError, match="backend must be one of"):
        WellJobOptions(backend="tape")


def _flags(subcommand: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {flag for action in sub.choices[subcommand]._actions for flag in action.option_strings}


def test_both_job_commands_take_exactly_the_defined_options_and_the_rule_names_none_by_hand():
    defined = {WellJobOptions.flag(name) for name in WellJobOptions.field_names()}
    assert _flags("process-wells") >= defined and _flags("process-well") >= defined
    rule = (REPO / "workflow" / "rules" / "process.smk").read_text()
    assert "{params.options:q}" in rule
    from_config = {
        WellJobOptions.flag(item.name) for item, spec in WellJobOptions.specs() if spec.config or spec.key == "file"
    }
    assert [flag for flag in from_config if re.search(rf"{flag}\b", rule)] == []


def test_format_choices_are_the_registry_and_the_schema_agrees():
    names = ["auto", *(handler.name for handler in registered_handlers())]
    assert list(FORMATS) == names and "opera_phenix" in FORMATS and "nonsense" not in FORMATS
    assert sorted(schema_choices("plates", ANY_KEY, "format") or []) == sorted(names)
    specs = {item.name: spec for item, spec in WellJobOptions.specs()}
    assert specs["backend"].choices == tuple(schema_choices("output", "backend") or ())


def test_the_run_key_is_the_one_earlier_versions_wrote(plate):
    """Finished wells of a run before WellJobOptions existed are still recognised (and skipped)."""
    from openhcs_rules.jobs.process_wells import run_key

    plate_json, files = plate
    options = WellJobOptions(
        illumination=str(files / "illumination.npz"), nuclei_channel=1, gpu="numpy", images="processed"
    )
    earlier = {"nuclei_channel": 1, "gpu": "numpy", "backend": "zarr", "pyramid_levels": 3}
    assert well_run_key(plate_json, PIPELINE, options) == run_key([plate_json, PIPELINE, options.illumination], earlier)
