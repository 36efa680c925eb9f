"""A well job overlaps its fixed costs: reads ahead across wells, finishes a well while the next one runs,
measures image quality in the writer's thread, and still writes what the plain sequence of steps writes."""

from __future__ import annotations

import json
import threading
import time

import pytest

from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.jobs import process_well, process_wells
from openhcs_rules.jobs.discover import discover
from openhcs_rules.jobs.illumination import estimate_plate_illumination
from openhcs_rules.jobs.image_quality import SUMMARY_KEY, measure_images
from openhcs_rules.jobs.options import WellJobOptions
from openhcs_rules.jobs.process_well import WellJobInputs, read_well_planes
from openhcs_rules.plate.model import PlateStructure
from openhcs_rules_testkit.workflow import PIPELINE

WELLS = ["B02", "B03", "C02"]


@pytest.fixture
def plate(tmp_path):
    folder = tmp_path / "plate"
    generate_imagexpress_plate(folder, "p", wells=WELLS, sites=2, channels=2, z_planes=2, shape=(96, 96), seed=5)
    plate_json = tmp_path / "out" / "plate.json"
    estimate_plate_illumination(discover("p", folder, plate_json), tmp_path / "out" / "illumination.npz", 8)
    return plate_json


def _run(tmp_path, plate_json, name="out"):
    out = tmp_path / name
    return process_wells.process_wells(
        plate_json, "B02-C02", PIPELINE, out / "wells", out / "m.json", tmp_path / "out" / "illumination.npz",
        gpu="numpy",
    )  # fmt: skip


def test_a_well_ends_while_the_next_one_is_processed(tmp_path, plate, monkeypatch):
    spans: dict[str, dict[str, float]] = {well: {} for well in WELLS}
    threads: dict[str, str] = {}
    begin, finish = process_wells.begin_well, process_wells.finish_well

    def timed_begin(inputs, well, out_dir, next_well=None):
        spans[well]["begin"] = time.perf_counter()
        return begin(inputs, well, out_dir, next_well=next_well)

    def slow_finish(progress, extra=None):
        time.sleep(0.3)  # a well's last writes, made long
        summary = finish(progress, extra)
        spans[progress.well]["finished"] = time.perf_counter()
        threads[progress.well] = threading.current_thread().name
        return summary

    monkeypatch.setattr(process_wells, "begin_well", timed_begin)
    monkeypatch.setattr(process_wells, "finish_well", slow_finish)
    manifest = _run(tmp_path, plate)
    assert manifest["wells"] == WELLS
    for well, after in zip(WELLS, WELLS[1:], strict=False):
        assert spans[after]["begin"] < spans[well]["finished"]  # the next well did not wait for this one's end
        assert threads[well].startswith("finish")
    for well in WELLS:
        assert (tmp_path / "out" / "wells" / well / "summary.json").is_file()


def test_the_next_well_s_first_site_is_read_during_the_last_site_of_the_one_before(tmp_path, plate, monkeypatch):
    reads: list[tuple[str, int | None, str, float]] = []
    begins: dict[str, float] = {}
    begin = process_wells.begin_well

    def recorded(plate_structure, well, site=None, backend=None):
        reads.append((well.name, site, threading.current_thread().name, time.perf_counter()))
        return read_well_planes(plate_structure, well, site, backend)

    def timed_begin(inputs, well, out_dir, next_well=None):
        begins[well] = time.perf_counter()
        return begin(inputs, well, out_dir, next_well=next_well)

    monkeypatch.setattr(process_well, "read_well_planes", recorded)
    monkeypatch.setattr(process_wells, "begin_well", timed_begin)
    _run(tmp_path, plate)
    assert [(well, site) for well, site, _, _ in reads] == [(w, s) for w in WELLS for s in (1, 2)]  # each once
    assert all(thread.startswith("prefetch") for _, _, thread, _ in reads)  # never in the processing thread
    first_reads = {well: at for well, site, _, at in reads if site == 1}
    for well in WELLS:  # every well's first site was under way before the well began (the first: at set-up)
        assert first_reads[well] < begins[well]


def test_a_backend_that_saves_wells_elsewhere_ends_each_well_before_the_next(tmp_path, plate, monkeypatch):
    spans: dict[str, float] = {}
    begin, finish = process_wells.begin_well, process_wells.finish_well

    def timed_begin(inputs, well, out_dir, next_well=None):
        assert next_well is None  # nothing read ahead while a well is being saved
        spans[f"{well} begin"] = time.perf_counter()
        return begin(inputs, well, out_dir, next_well=next_well)

    def timed_finish(progress, extra=None):
        summary = finish(progress, extra)
        spans[f"{progress.well} finished"] = time.perf_counter()
        return summary

    monkeypatch.setattr(process_wells, "saves_wells_elsewhere", lambda backend: True)
    monkeypatch.setattr(process_wells, "begin_well", timed_begin)
    monkeypatch.setattr(process_wells, "finish_well", timed_finish)
    _run(tmp_path, plate)
    assert spans["B02 finished"] < spans["B03 begin"] and spans["B03 finished"] < spans["C02 begin"]


def test_outputs_are_those_of_the_steps_done_one_after_the_other(tmp_path, plate):
    """Image quality, objects and images of an overlapped job equal a direct, sequential computation."""
    import numpy as np
    import zarr

    _run(tmp_path, plate)
    structure = PlateStructure.load_json(plate)
    options = WellJobOptions(str(tmp_path / "out" / "illumination.npz"), gpu="numpy")
    inputs = WellJobInputs.load(plate, PIPELINE, options)
    try:
        for well in WELLS:
            summary = json.loads((tmp_path / "out" / "wells" / well / "summary.json").read_text())
            expected = []
            for site in structure.wells[well].sites:
                planes = read_well_planes(structure, structure.wells[well], site, inputs.backend)
                expected.extend(measure_images(planes, inputs.context.channel_names))
                images = tmp_path / "out" / "wells" / well / "images.zarr"
                stored = np.asarray(zarr.open_array(str(images / str(site - 1) / "0"), mode="r")[:])
                for (_, c, z, t), plane in planes.items():
                    np.testing.assert_array_equal(stored[t - 1, c - 1, z - 1], plane)
            assert summary[SUMMARY_KEY] == json.loads(json.dumps(expected))
    finally:
        inputs.close()


def test_each_site_is_measured_once_as_it_is_read(tmp_path, plate, monkeypatch):
    measured: list[tuple[tuple[int, ...], str]] = []

    def recorded(planes, names):
        measured.append((tuple(sorted({key[0] for key in planes})), threading.current_thread().name))
        return measure_images(planes, names)

    monkeypatch.setattr(process_well, "measure_images", recorded)
    _run(tmp_path, plate)
    assert sorted(sites for sites, _ in measured) == [(1,), (1,), (1,), (2,), (2,), (2,)]  # 3 wells x 2 sites
    # in the reader's thread, but for a site whose measuring had not started when its well ended (done there)
    assert sum(thread.startswith("prefetch") for _, thread in measured) >= len(WELLS)


def test_the_run_key_of_plate_json_s_bytes_is_that_of_the_file(tmp_path, plate):
    """The job reads plate.json once, parses those bytes and keys them: the same key as from the file."""
    options = WellJobOptions(str(tmp_path / "out" / "illumination.npz"), gpu="numpy")
    from_file = process_wells.well_run_key(plate, PIPELINE, options)
    assert process_wells.well_run_key(plate.read_bytes(), PIPELINE, options) == from_file
    manifest = _run(tmp_path, plate)
    assert manifest["run_key"] == from_file


def test_the_kernels_libraries_are_imported_in_the_read_ahead_thread(plate, monkeypatch):
    """After the first read, not by the first step that needs them; one that does not import fails nothing."""
    import sys

    threads: dict[str, str] = {}
    load = process_well.importlib.import_module

    def recorded(name):
        threads[name] = threading.current_thread().name
        return load(name)

    monkeypatch.setattr(process_well.importlib, "import_module", recorded)
    monkeypatch.setattr(process_well, "KERNEL_MODULES", ("colorsys", "json:no_such_attribute", "no_such_module_x"))
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    inputs = WellJobInputs.load(plate, PIPELINE, WellJobOptions(gpu="numpy"), first_well="B02")
    inputs.close()  # waits for the read-ahead thread's work
    assert "colorsys" in sys.modules
    warmed = {name: threads.get(name, "not imported") for name in ("colorsys", "json", "no_such_module_x")}
    assert all(thread.startswith("prefetch") for thread in warmed.values()), warmed
