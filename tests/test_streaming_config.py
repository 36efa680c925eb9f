"""The ``streaming`` config section: accepted forms, defaults and the errors a user sees."""

from __future__ import annotations

import pytest

from openhcs_rules.errors import ConfigError
from openhcs_rules.streaming.config import ViewerTarget, viewer_targets


def test_off_by_default_and_true_means_the_default_port_on_loopback():
    assert viewer_targets(None) == [] and viewer_targets({}) == []
    assert viewer_targets({"napari": False, "fiji": False}) == []
    assert viewer_targets({"napari": True, "fiji": True}) == [
        ViewerTarget(kind="napari", port=5555),
        ViewerTarget(kind="fiji", port=5565),
    ]


def test_a_viewer_can_name_host_port_transport_and_display(tmp_path):
    (target,) = viewer_targets(
        {
            "fiji": {"host": "localhost", "port": 7000, "transport": "inline", "xvfb": True, "start": False},
            "curve_keys_dir": str(tmp_path),
            "ack_timeout_s": 2,
        }
    )
    assert (target.kind, target.host, target.port, target.transport) == ("fiji", "localhost", 7000, "inline")
    assert target.xvfb and not target.start and target.keys_dir == str(tmp_path) and target.ack_timeout_s == 2.0
    assert viewer_targets({"napari": {"enabled": False}}) == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"napri": True}, "unknown key"),
        ({"napari": {"colour": "red"}}, "unknown option"),
        ({"napari": "yes"}, "true/false or a mapping"),
        ({"napari": {"port": 65000}}, "base port 65000"),
        ({"napari": {"transport": "carrier-pigeon"}}, "must be auto, shm or inline"),
        ({"napari": {"host": "0.0.0.0"}}, "set streaming.curve_keys_dir"),
        ({"napari": {"port": 6000}, "fiji": {"port": 6000}}, "share an address"),
    ],
)
def test_mistakes_are_config_errors_that_say_what_to_do(config, message):
    with pytest.raises(ConfigError, match=message):
        viewer_targets(config)
