"""Real napari in its own process on a private Xvfb display, fed by a real pipeline run over ZMQ.

Qt's offscreen platform has no OpenGL here, so the viewer starts its own Xvfb (``xvfb: true``); the test
talks to it only over the control channel, as a user's workflow would.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from openhcs_rules.config.streaming import ViewerTarget
from openhcs_rules.demo.synthetic import generate_imagexpress_plate
from openhcs_rules.formats.registry import discover_plate
from openhcs_rules.jobs.process_well import iter_site_results
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import stop_server
from openhcs_rules.pipeline import Pipeline, Step
from openhcs_rules.pipeline.executor import RunContext
from openhcs_rules.streaming.ensure import ensure_viewers, server_spec
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.hook import make_streamer
from openhcs_rules.streaming.sender import FrameSender
from openhcs_rules_testkit.frames import inline_frame_header

pytest.importorskip("napari", reason="napari is not installed (pip install 'openhcs-rules[napari]')")
pytestmark = [
    pytest.mark.viewer,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"),
]

WELLS = ["B02", "C03"]
PIPELINE = Pipeline(
    "live",
    [
        Step(name="background", func="subtract_background", kwargs={"radius": 10}),
        Step(name="best_focus", func="project_z", kwargs={"method": "max"}),
        Step(name="segment", func="segment_nuclei", channel="nuclei"),
    ],
)


@pytest.fixture(scope="module")
def napari_viewer(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        config = {"napari": {"port": find_free_base_port(), "xvfb": True}, "start_timeout_s": 90}
        report = ensure_viewers(config)["napari"]
    assert report["state"] == "started", report
    yield config, report
    stop_server(server_spec(ViewerTarget(kind="napari", port=config["napari"]["port"])))


@pytest.fixture(scope="module")
def streamed_plate(napari_viewer, tmp_path_factory):
    """Run the pipeline on every well of a synthetic plate, streaming to napari; keep what was sent."""
    config, _ = napari_viewer
    folder = tmp_path_factory.mktemp("plate") / "plate"
    generate_imagexpress_plate(folder, plate_name="demo", wells=WELLS, sites=2, channels=2, z_planes=3, shape=(96, 96))
    plate = discover_plate(folder)
    names = {i: plate.channel(i).name for i in plate.channel_indices}
    sent = {}
    for well in WELLS:
        with make_streamer(config, plate.name, well, names) as streamer:

            def on_step(step, key, plane, well=well, streamer=streamer):
                sent[(step.label, well, key)] = np.array(plane)
                streamer(step, key, plane)

            for _ in iter_site_results(plate, well, PIPELINE, RunContext(channel_names=names, on_step=on_step)):
                pass
    return plate, names, sent


@pytest.fixture
def client(napari_viewer):
    config, _ = napari_viewer
    with ControlClient("127.0.0.1", config["napari"]["port"], timeout_s=30) as c:
        yield c


def _plane(client, layer, **index):
    reply, payload = client.request("get_plane", layer=layer, index=index)
    return np.frombuffer(payload[0], dtype=reply["result"]["dtype"]).reshape(reply["result"]["shape"])


def test_napari_holds_a_layer_per_step_and_channel_stacked_over_well_site_t_z(streamed_plate, client):
    plate, names, _ = streamed_plate
    layers = {layer["name"]: layer for layer in client.call("layers")}
    dapi, fitc = names[1], names[2]
    assert set(layers) == {
        f"{plate.name} | background | {dapi}",
        f"{plate.name} | background | {fitc}",
        f"{plate.name} | best_focus | {dapi}",
        f"{plate.name} | best_focus | {fitc}",
        f"{plate.name} | segment | {dapi}",
    }
    background = layers[f"{plate.name} | background | {dapi}"]
    assert background["shape"] == [2, 2, 1, 3, 96, 96] and background["dtype"] == "float32"
    assert background["axes"] == {"well": WELLS, "site": [1, 2], "t": [1], "z": [1, 2, 3]}
    assert background["axis_labels"] == ["well", "site", "t", "z", "y", "x"]
    assert layers[f"{plate.name} | best_focus | {fitc}"]["shape"] == [2, 2, 1, 1, 96, 96]
    segment = layers[f"{plate.name} | segment | {dapi}"]
    assert segment["type"] == "labels" and segment["dtype"] == "int32"


def test_napari_holds_the_pixels_the_pipeline_produced(streamed_plate, client):
    plate, names, sent = streamed_plate
    for (step, well, (site, channel, z, t)), plane in sent.items():
        got = _plane(client, f"{plate.name} | {step} | {names[channel]}", well=well, site=site, t=t, z=z)
        np.testing.assert_array_equal(got, plane)


def test_the_canvas_shows_something(streamed_plate, client):
    reply, payload = client.request("screenshot")
    image = np.frombuffer(payload[0], np.uint8).reshape(reply["result"]["shape"])
    rgb = image[..., :3].reshape(-1, 3)
    assert image.shape[2] == 4 and image.shape[0] > 100 and image.shape[1] > 100
    assert rgb.std() > 5 and len(np.unique(rgb, axis=0)) > 50  # not blank, not one flat color


def test_a_fast_producer_is_not_blocked_and_every_frame_is_shown(streamed_plate, client, napari_viewer):
    config, _ = napari_viewer
    before = client.ping()["status"]["frames_shown"]
    sender = FrameSender("127.0.0.1", config["napari"]["port"])
    frame = np.random.default_rng(0).random((512, 512)).astype(np.float32)
    started = time.perf_counter()
    for t in range(1, 5):
        for z in range(1, 51):
            assert sender.send(FrameMeta("burst", "A01", 1, 1, z, t, 0, "raw"), frame)
    send_s = time.perf_counter() - started
    assert sender.flush(30)
    sender.close()
    assert send_s < 5.0 and sender.dropped == 0  # 200 frames of 1 MB: sending never waited on the GUI
    assert sender.rejected == 0, sender.last_error  # the viewer read every frame
    deadline = time.monotonic() + 30
    while client.ping()["status"]["frames_shown"] < before + 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    layers = {layer["name"]: layer for layer in client.call("layers")}
    assert layers["burst | raw | w1"]["shape"] == [1, 1, 4, 50, 512, 512]
    np.testing.assert_array_equal(_plane(client, "burst | raw | w1", well="A01", site=1, t=4, z=50), frame)


def test_clear_empties_the_viewer_and_it_keeps_serving(streamed_plate, client):
    assert client.call("clear")["cleared"] >= 5
    assert client.call("layers") == []
    status = client.ping()["status"]
    assert status["ready"] and status["layers"] == 0


# -- bounded layers: a flood of frames for new layers is refused, and clear gives the memory back -------------

SMALL_LIMIT = 4


@pytest.fixture(scope="module")
def small_napari(tmp_path_factory):
    """A napari viewer started with ``--max-layers 4``, so the bound is reached with a handful of frames."""
    import sys

    from openhcs_rules.messaging.instance import ServerSpec, ensure_server

    port = find_free_base_port()
    log_path = tmp_path_factory.mktemp("small") / "napari.log"
    command = [sys.executable, "-m", "openhcs_rules.viewers.napari_viewer", "--port", str(port), "--xvfb"]
    spec = ServerSpec("napari", port, command=[*command, "--max-layers", str(SMALL_LIMIT)], log_path=log_path)
    pong = ensure_server(spec, timeout_s=90)["pong"]
    yield spec, pong
    stop_server(spec)


def _send_inline(sock, frame_id, plate, array):
    from openhcs_rules.messaging import messages

    header = inline_frame_header(frame_id, array.shape, dtype=array.dtype.name, codec="raw", plate=plate)
    sock.send_multipart([header, np.ascontiguousarray(array).tobytes()])
    return messages.decode(sock.recv())


def test_frames_for_layers_past_the_limit_are_refused_and_clear_frees_them(small_napari):
    import zmq

    from openhcs_rules.messaging.addresses import data_port

    spec, pong = small_napari
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 30_000)
    sock.connect(f"tcp://127.0.0.1:{data_port(spec.port)}")
    plane = np.arange(64, dtype=np.uint16).reshape(8, 8)
    replies = [_send_inline(sock, i, f"plate_{i:03d}", plane) for i in range(SMALL_LIMIT + 20)]
    assert [r["type"] for r in replies] == ["ack"] * SMALL_LIMIT + ["error"] * 20
    assert {r["code"] for r in replies[SMALL_LIMIT:]} == {"too_many_layers"}
    assert f"holds {SMALL_LIMIT} napari layers, its limit" in replies[-1]["error"]
    assert "viewer clear" in replies[-1]["error"]
    with ControlClient("127.0.0.1", spec.port, timeout_s=30) as client:
        assert _send_inline(sock, 99, "plate_000", plane + 1)["type"] == "ack"  # a known layer still fills
        layers = client.call("layers")  # runs on the GUI thread after every frame sent before it
        assert sorted(layer["name"] for layer in layers) == [f"plate_{i:03d} | raw | w1" for i in range(SMALL_LIMIT)]
        status = client.ping()["status"]
        assert status["layers"] == SMALL_LIMIT and status["max_layers"] == SMALL_LIMIT and status["layer_bytes"] > 0
        assert client.call("clear")["cleared"] == SMALL_LIMIT
        assert client.call("layers") == []
        status = client.ping()["status"]
        assert status["layers"] == 0 and status["layer_bytes"] == 0 and status["queued_bytes"] == 0
        assert _send_inline(sock, 100, "plate_new", plane)["type"] == "ack"  # room again after clear
        assert [layer["name"] for layer in client.call("layers")] == ["plate_new | raw | w1"]
        client.call("clear")
    sock.close()
