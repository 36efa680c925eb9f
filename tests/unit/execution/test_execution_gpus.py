"""GPUs the execution server lends: detection, the --gpus option, and what a config needs."""

from __future__ import annotations

import pytest

from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.gpus import detect_gpus, gpu_demand, parse_gpus


def test_visible_devices_win_and_cuda_stops_at_the_first_invalid_entry() -> None:
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "0,2"}) == ("0", "2")
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": ""}) == ()
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == ()
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "1,x,2"}) == ("1",)
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8d1f2c3a-aaaa-bbbb"}) == ("GPU-8d1f2c3a-aaaa-bbbb",)


def test_the_gpus_option() -> None:
    assert parse_gpus("none") == ()
    assert parse_gpus("0,1") == ("0", "1")
    assert parse_gpus(" 3 ") == ("3",)
    with pytest.raises(ConfigError, match="not a device"):
        parse_gpus("0;rm -rf")
    with pytest.raises(ConfigError, match="twice"):
        parse_gpus("1,1")


@pytest.mark.parametrize(
    ("config", "has_gpus", "needed"),
    [
        ({}, False, 0),
        ({}, True, 1),  # gpu: auto (the default) uses a device when there is one
        ({"gpu": "numpy"}, True, 0),
        ({"gpu": "cupy"}, False, 1),
        ({"gpu": "numpy", "resources": {"gpu": 2}}, True, 2),  # the jobs ask the scheduler for 2
        ({"resources": {"gpu": 0}}, False, 0),
        ({"resources": "junk", "gpu": "numpy"}, True, 0),
    ],
)
def test_what_a_run_needs(config: dict, has_gpus: bool, needed: int) -> None:
    assert gpu_demand(config, has_gpus) == needed
