"""Where frames land in a viewer, decided from components alone (no GUI involved)."""

from __future__ import annotations

import numpy as np
import pytest

from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.viewers.layout import NAPARI_AXES, AxisIndex, PlaneStack, hyperstack_title, layer_name


def test_names_say_plate_step_and_channel_or_well_site_and_step():
    meta = FrameMeta("plate_7", "AF48", 3, 2, 1, 1, 5, "denoise", channel_name="FITC")
    assert layer_name(meta) == "plate_7 | denoise | FITC"
    assert layer_name(FrameMeta("p", "A01", 1, 4, 1, 1, 0, "raw")) == "p | raw | w4"
    assert hyperstack_title(meta) == "plate_7 AF48 s3 | denoise"


def test_axes_keep_plate_order_for_wells_and_numeric_order_elsewhere():
    index = AxisIndex(NAPARI_AXES)
    for well, site in (("B02", 2), ("A10", 1), ("AA01", 3), ("B01", 1)):
        index.add({"well": well, "site": site, "t": 1, "z": 1})
    assert index.values["well"] == ["A10", "B01", "B02", "AA01"]  # row A, B, ... then AA (1536-well rows)
    assert index.values["site"] == [1, 2, 3]
    assert index.position({"well": "B02", "site": 3, "t": 1, "z": 1}) == (2, 2, 0, 0)
    with pytest.raises(KeyError, match="not in this stack"):
        index.position({"well": "C01", "site": 1, "t": 1, "z": 1})


def test_a_stack_grows_when_new_values_arrive_and_keeps_the_planes_it_has():
    stack = PlaneStack(("well", "z"), (2, 3), np.uint16)
    assert stack.put({"well": "B02", "z": 2}, np.full((2, 3), 7))
    assert not stack.put({"well": "B02", "z": 2}, np.full((2, 3), 8))  # same place: no growth
    assert stack.put({"well": "A01", "z": 1}, np.full((2, 3), 9))
    assert stack.data.shape == (2, 2, 2, 3) and stack.data.dtype == np.uint16
    assert stack.get({"well": "B02", "z": 2})[0, 0] == 8
    assert stack.get({"well": "A01", "z": 1})[0, 0] == 9
    assert stack.get({"well": "A01", "z": 2}).max() == 0  # not sent yet: blank
    with pytest.raises(ValueError, match="does not fit"):
        stack.put({"well": "A01", "z": 1}, np.zeros((3, 3)))
