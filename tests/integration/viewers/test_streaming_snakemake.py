"""Streaming through the real Snakemake CLI: the workflow's ensure_viewer rule starts napari and every well job
streams to it (the rules themselves, with the headless record viewer: test_viewer_rules.py)."""

from __future__ import annotations

import json
import socket

import pytest

from openhcs_rules_testkit.workflow import snakemake, write_config

pytestmark = [pytest.mark.workflow, pytest.mark.viewer]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_workflow_starts_napari_and_wells_stream_every_step(tmp_path):
    pytest.importorskip("napari", reason="napari not installed: pip install '.[napari]'")
    from openhcs_rules.messaging.client import ControlClient

    port = _free_port()
    streaming = {"napari": {"port": port, "xvfb": True}, "start_timeout_s": 120}
    spec = {"wells": ["B02", "C03"], "sites": 1, "z_planes": 2, "size": 128, "seed": 1}
    config = write_config(
        tmp_path, {"plates": {"demo": {"source": "synthetic", "synthetic": spec}}, "streaming": streaming}
    )
    done = snakemake(tmp_path, config)
    try:
        assert done.returncode == 0, done.stderr[-4000:]
        log = done.stdout + done.stderr
        assert log.index("localrule ensure_viewer:") < log.index("localrule process_wells:")
        record = json.loads((tmp_path / ".openhcs" / "viewers" / f"napari-{port}.json").read_text())["napari"]
        assert record["state"] == "started"
        with ControlClient("127.0.0.1", port, timeout_s=30) as client:
            layers = {layer["name"]: layer for layer in client.call("layers")}
            assert "demo | segment | DAPI" in layers and "demo | best_focus | FITC" in layers
            assert layers["demo | best_focus | FITC"]["shape"][-2:] == [128, 128]
            reply, payload = client.request("screenshot")
            assert payload is not None and len(payload) > 0
    finally:
        with ControlClient("127.0.0.1", port, timeout_s=10) as client:
            client.call("shutdown")
