"""The well's image writer: its zarr group is made in the writer's thread, other work runs there in order, and
the caller takes back work that has not started rather than wait for it."""

from __future__ import annotations

import errno
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from openhcs_rules.io import zarr_plate
from openhcs_rules.io.well_folder import WellFolder, take
from openhcs_rules.pipeline.executor import LabelKey, PlaneKey, WellResult


def _result(site: int) -> WellResult:
    planes = {PlaneKey(site, c, 1, 1): np.full((8, 10), site * 10 + c, np.uint16) for c in (1, 2)}
    return WellResult(planes, {LabelKey(site, 1, 1): np.ones((8, 10), np.int32)}, raw=planes)


def test_the_group_is_made_and_written_in_the_writer_s_thread(tmp_path, monkeypatch):
    threads = []
    opened = zarr_plate.open_well_group

    def recorded(folder):
        threads.append(threading.current_thread().name)
        return opened(folder)

    monkeypatch.setattr(zarr_plate, "open_well_group", recorded)
    folder = WellFolder(tmp_path / "B02")
    with folder.image_writer(pyramid_levels=2, images="raw") as writer:
        for site in (1, 2):
            writer.submit(_result(site))
        order = [writer.run(lambda: threading.current_thread().name)]
    assert len(threads) == 1 and threads[0].startswith("writer") and order[0].result().startswith("writer")
    fields = folder.read_fields()
    assert sorted(fields) == [1, 2] and int(fields[2].image[0, 1, 0, 0, 0]) == 22


def test_a_group_that_cannot_be_made_fails_the_well_and_leaves_nothing(tmp_path, monkeypatch):
    def full(folder):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder))

    monkeypatch.setattr(zarr_plate, "open_well_group", full)
    folder = WellFolder(tmp_path / "B02")
    with pytest.raises(OSError, match="No space left"), folder.image_writer(pyramid_levels=2, images="raw") as writer:
        for site in (1, 2, 3):
            writer.submit(_result(site))
    assert not folder.images.exists()
    assert not any(p.name.startswith(".images.zarr") for p in (tmp_path / "B02").iterdir())


def test_take_does_work_that_has_not_started_in_the_caller_s_thread():
    gate = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool:
        pool.submit(gate.wait, 5)  # the writer is busy
        queued = pool.submit(lambda: threading.current_thread().name)
        assert take(queued, lambda: threading.current_thread().name) == threading.current_thread().name
        assert queued.cancelled()
        gate.set()
        done = pool.submit(lambda: "from the writer")
        done.result()
        assert take(done, lambda: "again") == "from the writer"


def test_a_writer_that_falls_behind_holds_at_most_its_limit_of_sites(tmp_path, monkeypatch):
    """Its thread runs at a helper's priority and can fall behind the kernels: the next submit then waits."""
    from openhcs_rules.io import well_folder

    gate, written = threading.Event(), []
    write_field = zarr_plate.write_field

    def slow(group, index, data, levels, describe):
        gate.wait(30)
        write_field(group, index, data, levels, describe)
        written.append(index)

    monkeypatch.setattr(zarr_plate, "write_field", slow)
    folder = WellFolder(tmp_path / "B02")
    with folder.image_writer(pyramid_levels=1, images="raw") as writer:
        for site in range(1, well_folder.MAX_UNWRITTEN_SITES + 1):
            writer.submit(_result(site))  # room for these: no wait
        one_more = threading.Thread(target=writer.submit, args=(_result(well_folder.MAX_UNWRITTEN_SITES + 1),))
        one_more.start()
        one_more.join(timeout=0.5)
        assert one_more.is_alive() and written == []  # waits for the oldest site's write
        gate.set()
        one_more.join(timeout=30)
        assert not one_more.is_alive()
    assert sorted(folder.read_fields()) == list(range(1, well_folder.MAX_UNWRITTEN_SITES + 2))
