"""Frames from a pipeline to a real viewer process (the headless record viewer) over shm and inline frames.

Covers what must hold whatever the GUI: exact pixels and components on arrival, one owner of every
shared-memory segment (nothing left in /dev/shm, also when the viewer is killed mid-stream), warnings
said once, two viewers on two ports at once, and the instance manager's check -> connect -> start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from openhcs_rules.config.streaming import ViewerTarget
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.auth import ensure_keys
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import ensure_server, stop_server
from openhcs_rules.pipeline import Pipeline, Step
from openhcs_rules.pipeline.executor import RunContext, run_pipeline
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.ensure import ensure_viewers, server_spec, viewer_command
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.hook import make_streamer
from openhcs_rules.streaming.sender import FrameSender
from openhcs_rules.viewers.viewer_server import ZERO_COPY_QUEUE, ViewerServer
from openhcs_rules_testkit.frames import inline_frame_header
from openhcs_rules_testkit.paths import PIPELINE

pytestmark = pytest.mark.skipif(not shm.available(), reason="POSIX shared memory is not available on this platform")


def start_record_viewer(tmp_path, port=None):
    """A real record-viewer process on a free port: (spec, pid)."""
    target = ViewerTarget(kind="record", port=port or find_free_base_port())
    spec = server_spec(target)
    spec.log_path = tmp_path / f"record-{target.port}.log"
    result = ensure_server(spec, timeout_s=30)
    return spec, result["pong"]["server"]["pid"]


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    spec, pid = start_record_viewer(tmp_path_factory.mktemp("record"))
    yield spec
    stop_server(spec)


@pytest.fixture
def client(viewer):
    with ControlClient(viewer.host, viewer.port, timeout_s=10) as c:
        c.call("clear")
        yield c


def _plane(client, step, **component):
    reply, payload = client.request("get_plane", layer=step, index=component)
    return np.frombuffer(payload[0], dtype=reply["result"]["dtype"]).reshape(reply["result"]["shape"])


@pytest.mark.parametrize(("transport", "codec"), [("shm", "raw"), ("inline", "raw"), ("inline", "blosc2-lz4")])
def test_frames_arrive_with_exact_pixels_and_components(client, viewer, transport, codec):
    rng = np.random.default_rng(3)
    sent = {}
    sender = FrameSender(viewer.host, viewer.port, transport=transport, codec=codec)
    for channel, dtype in ((1, np.uint16), (2, np.float32), (3, np.int32)):
        for z in (1, 2):
            array = (rng.random((96, 80)) * 5000).astype(dtype)
            sent[(channel, z)] = array
            meta = FrameMeta("plate_1", "C03", 2, channel, z, 1, 4, "denoise", "image", f"ch{channel}")
            assert sender.send(meta, array)
    assert sender.flush(10)
    sender.close()
    assert sender.transport == transport and sender.acked == 6 and sender.dropped == 0
    frames = client.call("frames")
    assert {(f["channel"], f["z"], f["dtype"], f["channel_name"]) for f in frames} == {
        (c, z, np.dtype(d).name, f"ch{c}") for c, d in ((1, np.uint16), (2, np.float32), (3, np.int32)) for z in (1, 2)
    }
    assert {(f["plate"], f["well"], f["site"], f["t"], f["step"], f["step_index"]) for f in frames} == {
        ("plate_1", "C03", 2, 1, "denoise", 4)
    }
    for (channel, z), array in sent.items():
        got = _plane(client, "denoise", plate="plate_1", well="C03", site=2, channel=channel, z=z, t=1)
        np.testing.assert_array_equal(got, array)
    assert shm.our_segments(os.getpid()) == []


def test_a_pipeline_streams_every_steps_output_through_the_hook(client, viewer):
    rng = np.random.default_rng(0)
    planes = {(1, c, z, 1): (rng.random((64, 64)) * 1000).astype(np.float32) for c in (1, 2) for z in (1, 2, 3)}
    pipeline = Pipeline(
        "p",
        [
            Step(name="smooth", func="denoise", kwargs={"sigma": 1.0}),
            Step(name="mip", func="project_z", kwargs={"method": "max"}),
            Step(name="segment", func="segment_nuclei", channel=1, kwargs={"diameter": 8.0}),
        ],
    )
    config = {"record": {"port": viewer.port}}
    shown = {}
    with make_streamer(config, "plate_1", "B02", {1: "DAPI", 2: "FITC"}) as streamer:

        def on_step(step, key, plane):
            shown[(step.label, key)] = np.array(plane)
            streamer(step, key, plane)

        run_pipeline(pipeline, planes, RunContext(channel_names={1: "DAPI", 2: "FITC"}, on_step=on_step))
    frames = client.call("frames")
    assert sorted((f["step"], f["channel"], f["z"]) for f in frames) == sorted(
        (step, key[1], key[2]) for step, key in shown
    )
    roles = {f["step"]: f["role"] for f in frames}
    assert roles == {"smooth": "image", "mip": "image", "segment": "labels"}
    assert {f["step"]: f["step_index"] for f in frames} == {"smooth": 0, "mip": 1, "segment": 2}
    labels = _plane(client, "segment", plate="plate_1", well="B02", site=1, channel=1, z=1, t=1)
    np.testing.assert_array_equal(labels, shown[("segment", (1, 1, 1, 1))])
    assert shm.our_segments(os.getpid()) == []


def test_streaming_is_off_without_viewers_and_a_missing_viewer_is_warned_once(caplog):
    assert make_streamer({}, "p", "B02") is None
    assert make_streamer({"napari": False, "fiji": False}, "p", "B02") is None
    caplog.set_level(logging.WARNING)
    streamer = make_streamer({"record": {"port": find_free_base_port()}}, "p", "B02")
    started = time.perf_counter()
    for z in range(1, 51):
        streamer(Step(func="denoise"), (1, 1, z, 1), np.zeros((32, 32), np.float32))
    streamer.close()
    assert time.perf_counter() - started < 2.0  # a missing viewer costs the pipeline next to nothing
    warnings = [r for r in caplog.records if "record at" in r.getMessage()]
    assert len(warnings) == 1 and "no viewer" in warnings[0].getMessage()


def test_a_viewer_killed_mid_stream_leaves_the_pipeline_finishing_and_no_segment_behind(tmp_path, caplog):
    spec, pid = start_record_viewer(tmp_path)
    caplog.set_level(logging.WARNING)
    config = {"record": {"port": spec.port}, "ack_timeout_s": 1.0}
    rng = np.random.default_rng(1)
    planes = {(1, 1, z, 1): rng.random((256, 256)).astype(np.float32) for z in range(1, 41)}
    calls = []
    with make_streamer(config, "plate_1", "B02") as streamer:

        def on_step(step, key, plane):
            calls.append(key)
            if len(calls) == 10:
                os.kill(pid, signal.SIGKILL)
            streamer(step, key, plane)

        started = time.perf_counter()
        result = run_pipeline(
            Pipeline("p", [Step(func="denoise", kwargs={"sigma": 1.0}), Step(func="denoise", kwargs={"sigma": 2.0})]),
            planes,
            RunContext(channel_names={1: "DAPI"}, on_step=on_step),
        )
    assert len(result.images) == 40 and len(calls) == 80  # the pipeline ran to the end
    assert time.perf_counter() - started < 10
    assert shm.our_segments(os.getpid()) == []
    dead = [r for r in caplog.records if "stopped answering" in r.getMessage()]
    assert len(dead) == 1


def test_segments_of_a_killed_sender_are_swept(tmp_path):
    code = (
        "import os, signal; from openhcs_rules.streaming.shm import SegmentPool; "
        "s = SegmentPool().acquire(4096); print(s.name, flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    name = child.stdout.strip()
    assert child.returncode == -signal.SIGKILL and name in shm.our_segments()
    assert name in shm.sweep_orphans()
    assert name not in shm.our_segments()


def test_two_viewers_on_two_ports_at_once_each_get_the_stream(tmp_path):
    first, _ = start_record_viewer(tmp_path)
    second, _ = start_record_viewer(tmp_path)
    try:
        senders = [FrameSender("127.0.0.1", spec.port) for spec in (first, second)]
        for value, sender in enumerate(senders, start=1):
            sender.send(FrameMeta("p", "A01", 1, 1, 1, 1, 0, "raw"), np.full((8, 8), value, np.uint16))
            sender.close()
        for value, spec in enumerate((first, second), start=1):
            with ControlClient("127.0.0.1", spec.port) as client:
                assert client.ping()["server"]["port"] == spec.port
                assert [f["sum"] for f in client.call("frames")] == [64.0 * value]
    finally:
        stop_server(first)
        stop_server(second)


def test_ensure_viewers_starts_once_then_connects_and_reports_a_blocked_port(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    port = find_free_base_port()
    config = {"record": {"port": port}}
    first = ensure_viewers(config)["record"]
    try:
        assert first["state"] == "started" and first["start_s"] > 0
        assert (tmp_path / "openhcs-rules" / "viewers" / f"record-{port}.log").is_file()
        again = ensure_viewers(config)["record"]
        assert again["state"] == "connected" and again["pid"] == first["pid"]
    finally:
        stop_server(server_spec(ViewerTarget(kind="record", port=port)))
    blocked = find_free_base_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", blocked))
    holder.listen()
    try:
        report = ensure_viewers({"record": {"port": blocked}})["record"]
        assert report["state"] == "unavailable" and f"pid {os.getpid()}" in report["error"]
    finally:
        holder.close()


def test_the_start_command_is_this_interpreter_running_the_viewer_module():
    target = ViewerTarget(kind="napari", port=5555, xvfb=True, keys_dir="/k")
    assert viewer_command(target) == [
        sys.executable,
        *("-m", "openhcs_rules.viewers.napari_viewer", "--port", "5555", "--host", "127.0.0.1"),
        *("--keys-dir", "/k", "--xvfb"),
    ]


def _primary_address() -> str | None:
    """This machine's non-loopback address (no packet is sent: UDP connect only picks a route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_a_viewer_beyond_loopback_requires_curve_and_takes_compressed_inline_frames(tmp_path, caplog):
    address = _primary_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    keys = ensure_keys(tmp_path / "keys")
    intruder = ensure_keys(tmp_path / "intruder")
    (intruder / "server.key").write_bytes((keys / "server.key").read_bytes())
    port = find_free_base_port(address)
    caplog.set_level(logging.WARNING)
    assert make_streamer({"record": {"host": address, "port": port}}, "p", "B02") is None  # no keys: off, warned
    assert "set streaming.curve_keys_dir" in caplog.text
    spec = server_spec(ViewerTarget(kind="record", host=address, port=port, keys_dir=str(keys)))
    spec.log_path = tmp_path / "record.log"
    pong = ensure_server(spec, timeout_s=30)["pong"]
    try:
        assert pong["server"]["auth"] == "curve" and pong["server"]["bind"] == address
        remote = {"record": {"host": address, "port": port, "transport": "inline"}, "curve_keys_dir": str(keys)}
        plane = (np.random.default_rng(4).random((128, 128)) * 4000).astype(np.uint16)
        with make_streamer(remote, "p", "B02") as streamer:
            assert streamer.links[0].sender.transport == "inline"
            assert streamer.links[0].sender.codec == "blosc2-lz4"
            streamer(Step(func="denoise"), (1, 1, 1, 1), plane)
        with make_streamer({**remote, "curve_keys_dir": str(intruder)}, "p", "B02") as streamer:
            streamer(Step(func="denoise"), (1, 1, 1, 1), plane)  # refused: warned, never raised
        assert any("refused this client's CURVE key" in r.getMessage() for r in caplog.records)
        with ControlClient(address, port, keys_dir=keys) as client:
            frames = client.call("frames")
            assert len(frames) == 1 and frames[0]["sum"] == float(plane.sum())
    finally:
        stop_server(spec)


def test_zero_copy_frames_are_acked_only_after_the_viewer_copied_them():
    """While the viewer keeps up, shm frames are views acked after show(); a backlog is copied and acked at once."""
    server = ViewerServer("record", find_free_base_port())
    server.start()
    try:
        sender = FrameSender("127.0.0.1", server.port)
        planes = [np.full((64, 64), value, np.uint16) for value in range(10)]
        for value, plane in enumerate(planes):
            assert sender.send(FrameMeta("p", "A01", 1, 1, value + 1, 1, 0, "raw"), plane)
        deadline = time.monotonic() + 10
        while server.frames_received < 10 and time.monotonic() < deadline:
            sender.poll(0.05)
        sender.poll(0.2)
        deferred = ZERO_COPY_QUEUE  # the first frames wait for the viewer's copy, the backlog does not
        assert sender.in_flight == deferred and sender.acked == 10 - deferred
        held = []
        server.pump(lambda batch: held.extend(np.array(f.array) for f in batch), budget_s=5)
        assert sender.flush(5) and sender.in_flight == 0
        for value, array in enumerate(held):
            np.testing.assert_array_equal(array, planes[value])
        sender.close()
    finally:
        server.stop()
    assert shm.our_segments(os.getpid()) == []


@pytest.mark.gpu
def test_gpu_planes_are_streamed_as_host_arrays(client, viewer):
    from openhcs_rules.core.arrays import gpu_available

    if not gpu_available():
        pytest.skip("no usable CUDA device")
    import cupy

    plane = (np.random.default_rng(5).random((64, 64)) * 100).astype(np.float32)
    with make_streamer({"record": {"port": viewer.port}}, "p", "A01") as streamer:
        streamer(Step(func="denoise"), (1, 1, 1, 1), cupy.asarray(plane))
    np.testing.assert_array_equal(_plane(client, "denoise", plate="p", well="A01", site=1, channel=1, z=1, t=1), plane)


def test_a_chunk_job_streams_all_its_wells_over_one_connection(tmp_path, client, viewer, caplog):
    from openhcs_rules.demo.synthetic import generate_imagexpress_plate
    from openhcs_rules.jobs.discover import discover
    from openhcs_rules.jobs.illumination import estimate_plate_illumination
    from openhcs_rules.jobs.process_wells import process_wells
    from openhcs_rules.streaming import hook

    folder = tmp_path / "plate"
    generate_imagexpress_plate(
        folder, "p", wells=["B02", "B03", "C02"], sites=1, channels=1, z_planes=1, shape=(96, 96)
    )
    plate = discover("p", folder, tmp_path / "plate.json")
    estimate_plate_illumination(plate, tmp_path / "illum.npz", 8)
    pipeline = str(PIPELINE)
    connections = []
    real_connect = hook._connect

    def counting_connect(target):
        connections.append(target.port)
        return real_connect(target)

    hook._connect = counting_connect
    try:
        args = (tmp_path / "plate.json", "B02-C02", pipeline, tmp_path / "wells", tmp_path / "m.json")
        process_wells(*args, tmp_path / "illum.npz", gpu="numpy", streaming={"record": {"port": viewer.port}})
        assert {f["well"] for f in client.call("frames")} == {"B02", "B03", "C02"}
        assert connections == [viewer.port]  # one connection for the job's three wells

        caplog.set_level(logging.WARNING)  # no viewer there: one warning for the job, not one per well
        missing = {"record": {"port": find_free_base_port()}}
        process_wells(
            *args[:3], tmp_path / "wells2", tmp_path / "m2.json", tmp_path / "illum.npz", gpu="numpy", streaming=missing
        )
    finally:
        hook._connect = real_connect
    assert len([r for r in caplog.records if "no viewer" in r.getMessage()]) == 1
    assert shm.our_segments(os.getpid()) == []


# -- bounded memory: a frame's declared size and a viewer's queue are capped before anything is allocated ------


def _zero_chunk(nbytes):
    """A 32-byte Blosc2 chunk that decompresses to ``nbytes`` zeros (a 'special value' chunk: no data at all)."""
    import imagecodecs

    header = bytearray(imagecodecs.blosc2_encode(np.zeros(16, np.uint16), level=1, compressor="lz4", typesize=2))
    header[4:8] = nbytes.to_bytes(4, "little")
    header[8:12] = min(nbytes, 1 << 20).to_bytes(4, "little")
    return bytes(header[:32])


def _data_socket(port):
    import zmq

    from openhcs_rules.messaging.addresses import data_port

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(f"tcp://127.0.0.1:{data_port(port)}")
    return sock


def test_a_tiny_payload_declaring_a_huge_frame_is_refused_before_it_is_decompressed():
    from openhcs_rules.messaging import messages
    from openhcs_rules.viewers import viewer_server

    shape = (16384, 16384)  # 512 MiB of uint16, announced by a 32-byte chunk that really decodes to that
    assert int(np.prod(shape)) * 2 > viewer_server.MAX_FRAME_BYTES
    server = ViewerServer("record", find_free_base_port())
    server.start()
    try:
        sock = _data_socket(server.port)
        sock.send_multipart([inline_frame_header(1, shape), _zero_chunk(int(np.prod(shape)) * 2)])
        reply = messages.decode(sock.recv())
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "too_large", 1)
        assert f"limit {viewer_server.MAX_FRAME_BYTES} bytes" in reply["error"]
        assert server.bytes_received == 0 and server.status()["queued"] == 0  # nothing decoded, nothing held
        small = (64, 64)
        sock.send_multipart([inline_frame_header(2, small), _zero_chunk(64 * 64 * 2)])
        assert messages.decode(sock.recv()) == messages.make("ack", id=2)  # a frame within the limit still is
        sock.close()
        with ControlClient("127.0.0.1", server.port) as client:
            assert client.ping()["status"]["ready"]
    finally:
        server.stop()


def test_a_viewer_that_falls_behind_refuses_frames_past_its_queue_limit_and_recovers_once_it_shows_them():
    from openhcs_rules.messaging import messages

    frame_bytes = 64 * 64 * 2
    server = ViewerServer("record", find_free_base_port(), max_queued_bytes=3 * frame_bytes)
    server.start()
    try:
        sock = _data_socket(server.port)
        replies = []
        for frame_id in range(5):  # the GUI never pumps: frames pile up in the queue
            sock.send_multipart([inline_frame_header(frame_id, (64, 64), codec="raw"), bytes(frame_bytes)])
            replies.append(messages.decode(sock.recv()))
        assert [r["type"] for r in replies] == ["ack", "ack", "ack", "error", "error"]
        assert replies[3]["code"] == "queue_full"
        assert f"{3 * frame_bytes} bytes queued, limit {3 * frame_bytes}" in replies[3]["error"]
        assert "slow down" in replies[3]["error"]
        assert server.status()["queued_bytes"] == 3 * frame_bytes
        server.pump(lambda batch: None, budget_s=5)  # the viewer catches up
        assert server.status()["queued_bytes"] == 0
        sock.send_multipart([inline_frame_header(9, (64, 64), codec="raw"), bytes(frame_bytes)])
        assert messages.decode(sock.recv()) == messages.make("ack", id=9)
        sock.close()
    finally:
        server.stop()
