"""The plate map of the web page: well states from a run's events, the grid from the plate's structure."""

from __future__ import annotations

import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from openhcs_rules.execution.plate_map import PlateLayout, load_layout, plate_map, run_layouts
from openhcs_rules.execution.states import Event

LETTERS_96 = list("ABCDEFGH")
COLUMNS_96 = list(range(1, 13))


def events(*items: tuple[str, dict]) -> list[Event]:
    return [Event("r1", seq, float(seq), kind, body) for seq, (kind, body) in enumerate(items, start=1)]


def well(kind: str, name: str, plate: str = "p1", **extra: object) -> tuple[str, dict]:
    return kind, {"plate": plate, "well": name, **extra}


def test_the_latest_event_of_a_well_decides_its_state():
    found = plate_map(
        events(
            ("run_queued", {}),
            ("run_started", {}),
            well("well_started", "B02"),
            well("well_finished", "B02", objects=12, seconds=0.5),
            well("well_started", "B03"),
            well("well_failed", "B03", error="boom"),
            well("well_started", "C02"),
            well("well_skipped", "C03"),
        ),
        plates=["p1"],
    )
    assert found["p1"]["wells"] == {
        "B02": {"state": "done", "objects": 12},
        "B03": {"state": "failed", "objects": None},
        "C02": {"state": "running", "objects": None},
        "C03": {"state": "skipped", "objects": None},
    }
    # no plate.json yet: the smallest standard plate holding the wells seen (12 wells: 3 x 4)
    assert found["p1"]["rows"] == ["A", "B", "C"] and found["p1"]["columns"] == [1, 2, 3, 4]
    assert plate_map(events(well("well_started", "H12")))["p1"]["rows"] == LETTERS_96


def test_a_resumed_run_keeps_finished_wells_done_and_ended_attempts_stop_running():
    found = plate_map(
        events(
            ("run_started", {}),
            well("well_started", "A01"),
            well("well_finished", "A01", objects=3),
            well("well_started", "A02"),  # cancelled (abort) while it ran
            ("run_state", {"state": "aborting"}),
            ("run_state", {"state": "cancelled"}),
            ("run_state", {"state": "queued"}),
            ("run_started", {}),
            well("well_skipped", "A01"),  # done by the first attempt: still done, count kept
        )
    )
    assert found["p1"]["wells"]["A01"] == {"state": "done", "objects": 3}
    assert found["p1"]["wells"]["A02"] == {"state": "pending", "objects": None}


def test_a_draining_run_keeps_its_running_wells_running():
    found = plate_map(events(well("well_started", "A01"), ("run_state", {"state": "draining"})))
    assert found["p1"]["wells"]["A01"]["state"] == "running"


def test_the_layout_lists_every_well_and_spans_the_plate_format():
    layout = PlateLayout(16, 24, ("A01", "A02", "P24"))
    found = plate_map(events(well("well_finished", "A02", objects=7)), {"p1": layout}, ["p1"])
    plate = found["p1"]
    assert len(plate["rows"]) == 16 and plate["rows"][-1] == "P" and plate["columns"] == list(range(1, 25))
    assert plate["wells"] == {
        "A01": {"state": "pending", "objects": None},
        "A02": {"state": "done", "objects": 7},
        "P24": {"state": "pending", "objects": None},
    }


def test_a_well_outside_the_layout_grows_the_grid_and_wells_are_in_plate_order():
    found = plate_map(events(well("well_started", "J15")), {"p1": PlateLayout(8, 12, ("H12", "A01"))})
    plate = found["p1"]
    assert plate["rows"][-1] == "J" and plate["columns"][-1] == 15
    assert list(plate["wells"]) == ["A01", "H12", "J15"]


def test_plates_come_in_the_given_order_then_as_events_name_them():
    found = plate_map(
        events(well("well_started", "A01", plate="late"), well("well_started", "A01", plate="second")),
        {"layout_only": PlateLayout(2, 3, ("A01",))},
        ["first", "second"],
    )
    assert list(found) == ["first", "second", "late", "layout_only"]
    assert found["first"] == {"rows": [], "columns": [], "wells": {}}
    assert found["layout_only"]["rows"] == ["A", "B"] and found["layout_only"]["columns"] == [1, 2, 3]


def test_well_names_are_normalised_and_malformed_bodies_ignored():
    found = plate_map(
        events(
            well("well_finished", "b2", objects=True),  # a bool is not a count
            well("well_finished", "A1", objects=-4),
            ("well_started", {"plate": 3, "well": "A01"}),
            ("well_started", {"plate": "p1", "well": "not a well"}),
            ("well_started", {"plate": "p1"}),
            ("well_started", {"well": "A03"}),
            ("well_started", {"plate": "", "well": "A03"}),
            ("job_started", {"plate": "p1", "well": "A04"}),
        )
    )
    assert found == {
        "p1": {
            "rows": ["A", "B"],
            "columns": [1, 2, 3],
            "wells": {"A01": {"state": "done", "objects": None}, "B02": {"state": "done", "objects": None}},
        }
    }


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["well_started", "well_finished", "well_failed", "well_skipped", "run_state", "run_started"]
            ),
            st.dictionaries(
                st.sampled_from(["plate", "well", "objects", "state"]),
                JSONISH | st.sampled_from(["p1", "A01", "b3", "AF48", "ZZ999", "running", "failed"]),
                max_size=4,
            ),
        ),
        max_size=20,
    )
)
def test_whatever_the_bodies_the_map_is_drawn(items):
    found = plate_map(events(*items), {"p1": PlateLayout(8, 12, ("A01",))}, ["p1"])
    json.dumps(found)
    for plate in found.values():
        assert set(plate) == {"rows", "columns", "wells"}
        for cell in plate["wells"].values():
            assert cell["state"] in {"pending", "running", "done", "failed", "skipped"}
            assert cell["objects"] is None or (isinstance(cell["objects"], int) and cell["objects"] >= 0)


# -- plate.json in a run folder -------------------------------------------------------------------------------
def _plate_json(path, rows=8, columns=12, wells=("B02", "B03")):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"schema_version": 1, "rows": rows, "columns": columns, "wells": dict.fromkeys(wells, [])})
    )


def test_layouts_are_read_from_the_run_output_folder(tmp_path):
    (tmp_path / "screen.yaml").write_text(yaml.safe_dump({"output": {"dir": "results/sub"}}))
    _plate_json(tmp_path / "results" / "sub" / "p1" / "plate.json", 16, 24, ("A01", "C07"))
    _plate_json(tmp_path / "results" / "p2" / "plate.json")  # not in output.dir: not this run's layout
    found = run_layouts(tmp_path, ["p1", "p2", "../p1", "", "p1/../p1"])
    assert found == {"p1": PlateLayout(16, 24, ("A01", "C07"))}


def test_without_a_screen_file_or_with_an_escaping_output_dir_results_is_used(tmp_path):
    _plate_json(tmp_path / "results" / "p1" / "plate.json")
    assert run_layouts(tmp_path, ["p1"]) == {"p1": PlateLayout(8, 12, ("B02", "B03"))}
    (tmp_path / "screen.yaml").write_text(yaml.safe_dump({"output": {"dir": "../../elsewhere"}}))
    assert run_layouts(tmp_path, ["p1"]) == {"p1": PlateLayout(8, 12, ("B02", "B03"))}


def test_unreadable_or_implausible_plate_files_give_no_layout(tmp_path):
    path = tmp_path / "plate.json"
    assert load_layout(path) is None
    for text in (
        "{",
        "[]",
        '{"rows": 8}',
        '{"rows": 0, "columns": 12, "wells": {}}',
        '{"rows": 8, "columns": 9999, "wells": {}}',
    ):
        path.write_text(text)
        assert load_layout(path) is None, text
    _plate_json(path, wells=("A01",))
    assert load_layout(path) == PlateLayout(8, 12, ("A01",))
    _plate_json(path, wells=("A01", "A02"))  # rewritten: the cache notices
    assert load_layout(path) == PlateLayout(8, 12, ("A01", "A02"))
