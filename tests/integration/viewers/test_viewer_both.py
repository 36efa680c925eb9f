"""napari and Fiji at once, on two ports, fed by one streamer; both gone (with their Xvfb) after stop."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from openhcs_rules.config.streaming import viewer_targets
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import stop_server
from openhcs_rules.pipeline import Step
from openhcs_rules.streaming.ensure import ensure_viewers, server_spec
from openhcs_rules.streaming.hook import make_streamer
from openhcs_rules.viewers.imagej import find_ij_jar

psutil = pytest.importorskip("psutil")
pytest.importorskip("napari", reason="napari is not installed (pip install 'openhcs-rules[napari]')")
pytest.importorskip("scyjava", reason="scyjava is not installed (pip install 'openhcs-rules[fiji]')")
pytestmark = [
    pytest.mark.viewer,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"),
]


def test_one_streamer_feeds_napari_and_fiji_on_two_ports(tmp_path, monkeypatch):
    find_ij_jar()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    config = {
        "napari": {"port": find_free_base_port(), "xvfb": True},
        "fiji": {"port": find_free_base_port(), "xvfb": True},
        "start_timeout_s": 90,
    }
    report = ensure_viewers(config)
    processes = {kind: psutil.Process(r["pid"]) for kind, r in report.items()}
    family = [p for proc in processes.values() for p in (proc, *proc.children(recursive=True))]
    try:
        assert {kind: r["state"] for kind, r in report.items()} == {"napari": "started", "fiji": "started"}
        assert any(p.name() == "Xvfb" for p in family)
        plane = (np.arange(40 * 50).reshape(40, 50) % 4096).astype(np.uint16)
        with make_streamer(config, "duo", "E05", {1: "DAPI"}) as streamer:
            assert [link.sender.transport for link in streamer.links] == ["shm", "shm"]
            streamer(Step(name="raw", func="denoise"), (2, 1, 1, 1), plane)
        with ControlClient("127.0.0.1", config["napari"]["port"], timeout_s=30) as napari:
            reply, payload = napari.request(
                "get_plane", layer="duo | raw | DAPI", index={"well": "E05", "site": 2, "t": 1, "z": 1}
            )
            np.testing.assert_array_equal(np.frombuffer(payload[0], reply["result"]["dtype"]).reshape(40, 50), plane)
        with ControlClient("127.0.0.1", config["fiji"]["port"], timeout_s=30) as fiji:
            reply, payload = fiji.request("get_plane", layer="duo E05 s2 | raw", index={"channel": 1, "z": 1, "t": 1})
            np.testing.assert_array_equal(np.frombuffer(payload[0], reply["result"]["dtype"]).reshape(40, 50), plane)
    finally:
        for target in viewer_targets(config):
            stop_server(server_spec(target))
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], f"left running: {[p.name() for p in alive]}"
