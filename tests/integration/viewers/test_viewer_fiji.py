"""Real ImageJ (through scyjava/JPype) in its own viewer process, fed over ZMQ; hyperstacks checked.

The viewer runs ImageJ with windows on a private Xvfb display, as it would on a desktop; the test
reads back what ImageJ holds (dimensions, bit depth, pixels) and runs macros in it.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from openhcs_rules.config.streaming import ViewerTarget
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.errors import ServerError
from openhcs_rules.messaging.instance import stop_server
from openhcs_rules.pipeline import Pipeline, Step
from openhcs_rules.pipeline.executor import RunContext, run_pipeline
from openhcs_rules.streaming.ensure import ensure_viewers, server_spec
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.hook import make_streamer
from openhcs_rules.streaming.sender import FrameSender
from openhcs_rules.viewers.imagej import find_ij_jar

pytest.importorskip("scyjava", reason="scyjava is not installed (pip install 'openhcs-rules[fiji]')")


def _ij_missing() -> bool:
    try:
        find_ij_jar()
    except FileNotFoundError:
        return True
    return shutil.which("java") is None


pytestmark = [
    pytest.mark.viewer,
    pytest.mark.skipif(_ij_missing(), reason="ImageJ is not installed (apt-get install imagej)"),
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"),
]


@pytest.fixture(scope="module")
def fiji(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        config = {"fiji": {"port": find_free_base_port(), "xvfb": True}, "start_timeout_s": 90}
        report = ensure_viewers(config)["fiji"]
    assert report["state"] == "started", report
    yield config
    stop_server(server_spec(ViewerTarget(kind="fiji", port=config["fiji"]["port"])))


@pytest.fixture
def client(fiji):
    with ControlClient("127.0.0.1", fiji["fiji"]["port"], timeout_s=30) as c:
        yield c


def _plane(client, title, **index):
    reply, payload = client.request("get_plane", layer=title, index=index)
    return np.frombuffer(payload[0], dtype=reply["result"]["dtype"]).reshape(reply["result"]["shape"])


def _stacks(client):
    return {s["title"]: s for s in client.call("hyperstacks")}


def test_a_pipeline_run_builds_channel_z_time_hyperstacks_per_well_site_and_step(fiji, client):
    rng = np.random.default_rng(2)
    planes = {
        (s, c, z, t): (rng.random((48, 40)) * 1000).astype(np.float32)
        for s in (1, 2)
        for c in (1, 2)
        for z in (1, 2, 3)
        for t in (1, 2)
    }
    pipeline = Pipeline(
        "p",
        [
            Step(name="smooth", func="denoise", kwargs={"sigma": 1.0}),
            Step(name="mip", func="project_z", kwargs={"method": "max"}),
            Step(name="segment", func="segment_nuclei", channel=1, kwargs={"diameter": 8.0}),
        ],
    )
    sent = {}
    with make_streamer(fiji, "screen", "D04", {1: "DAPI", 2: "FITC"}) as streamer:

        def on_step(step, key, plane):
            sent[(step.label, key)] = np.array(plane)
            streamer(step, key, plane)

        run_pipeline(pipeline, planes, RunContext(channel_names={1: "DAPI", 2: "FITC"}, on_step=on_step))
    stacks = _stacks(client)
    smooth = stacks["screen D04 s2 | smooth"]
    assert (smooth["channels"], smooth["slices"], smooth["frames"]) == (2, 3, 2)
    assert (smooth["width"], smooth["height"], smooth["bit_depth"], smooth["hyperstack"]) == (40, 48, 32, True)
    mip = stacks["screen D04 s1 | mip"]
    assert (mip["channels"], mip["slices"], mip["frames"]) == (2, 1, 2)
    segment = stacks["screen D04 s1 | segment"]
    assert (segment["channels"], segment["slices"], segment["frames"]) == (1, 1, 2)
    for (step, (site, channel, z, t)), plane in sent.items():
        got = _plane(client, f"screen D04 s{site} | {step}", channel=channel, z=z, t=t)
        np.testing.assert_array_equal(got, plane.astype(np.float32))


def test_hyperstacks_grow_incrementally_and_keep_what_they_showed(fiji, client):
    sender = FrameSender("127.0.0.1", fiji["fiji"]["port"])
    planes = {}

    def send(channel, z, t):
        planes[(channel, z, t)] = np.full((20, 30), 100 * channel + 10 * z + t, np.uint16)
        planes[(channel, z, t)][0, 0] = 60000  # 16-bit stays unsigned in ImageJ
        sender.send(FrameMeta("inc", "A01", 1, channel, z, t, 0, "raw"), planes[(channel, z, t)])
        assert sender.flush(10)

    send(1, 1, 1)
    first = _stacks(client)["inc A01 s1 | raw"]
    assert (first["channels"], first["slices"], first["frames"], first["bit_depth"]) == (1, 1, 1, 16)
    for position in ((1, 3, 1), (2, 1, 1), (1, 2, 2), (2, 3, 2)):  # new z, channel, time, out of order
        send(*position)
    sender.close()
    grown = _stacks(client)["inc A01 s1 | raw"]
    assert (grown["channels"], grown["slices"], grown["frames"]) == (2, 3, 2)
    assert grown["axes"] == {"channel": [1, 2], "z": [1, 2, 3], "t": [1, 2]}
    for (channel, z, t), plane in planes.items():
        np.testing.assert_array_equal(_plane(client, "inc A01 s1 | raw", channel=channel, z=z, t=t), plane)
    np.testing.assert_array_equal(
        _plane(client, "inc A01 s1 | raw", channel=2, z=2, t=1), np.zeros((20, 30), np.uint16)
    )  # a position no frame filled yet is blank


def test_macros_run_in_imagej_and_a_broken_one_is_an_error_reply(fiji, client):
    sender = FrameSender("127.0.0.1", fiji["fiji"]["port"])
    plane = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    sender.send(FrameMeta("mac", "B01", 3, 2, 1, 1, 0, "raw"), plane)
    sender.close()
    code = (
        'selectImage("mac B01 s3 | raw"); getDimensions(w, h, c, z, t);'
        'return "" + w + " " + h + " " + getPixel(5, 7) + " " + nImages;'
    )
    width, height, pixel, _ = client.call("macro", code=code).split()
    assert (int(width), int(height), int(pixel)) == (16, 12, plane[7, 5])
    with pytest.raises(ServerError, match="macro_error"):
        client.call("macro", code="this is not ( a macro")
    assert client.ping()["status"]["ready"]


def test_clear_closes_every_hyperstack(fiji, client):
    assert client.call("clear")["cleared"] >= 1
    assert client.call("hyperstacks") == []
    assert client.call("macro", code="return '' + nImages;") == "0"
