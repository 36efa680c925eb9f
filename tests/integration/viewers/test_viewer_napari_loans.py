"""napari shows large shared-memory frames straight from the sender's slot and gives each slot back when
its plane is replaced or the viewer is cleared (a real napari process on a private Xvfb display)."""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np
import pytest

from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.client import ControlClient
from openhcs_rules.messaging.instance import ServerSpec, ensure_server, stop_server
from openhcs_rules.streaming import shm
from openhcs_rules.streaming.frames import FrameMeta
from openhcs_rules.streaming.sender import FrameSender

pytest.importorskip("napari", reason="napari is not installed (pip install 'openhcs-rules[napari]')")
pytestmark = [
    pytest.mark.viewer,
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"),
    pytest.mark.skipif(not shm.available(), reason="POSIX shared memory is not available on this platform"),
]

SHAPE = (512, 1024)  # 2 MiB of float32: shown from the slot
LAYER = "loans | raw | w1"


@pytest.fixture(scope="module")
def napari_port(tmp_path_factory):
    port = find_free_base_port()
    log_path = tmp_path_factory.mktemp("napari") / "napari.log"
    command = [sys.executable, "-m", "openhcs_rules.viewers.napari_viewer", "--port", str(port), "--xvfb"]
    spec = ServerSpec("napari", port, command=command, log_path=log_path)
    ensure_server(spec, timeout_s=90)
    yield port
    stop_server(spec)


def _plane(client, z):
    reply, payload = client.request("get_plane", layer=LAYER, index={"well": "A01", "site": 1, "t": 1, "z": z})
    return np.frombuffer(payload[0], dtype=reply["result"]["dtype"]).reshape(reply["result"]["shape"])


def _wait(sender, condition, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        sender.poll(0.05)
    assert condition()


def test_napari_shows_planes_from_the_slot_and_gives_it_back_when_replaced_or_cleared(napari_port):
    rng = np.random.default_rng(7)
    sent = {z: (rng.random(SHAPE) * 1000 + 100 * z).astype(np.float32) for z in (1, 2, 3)}
    sender = FrameSender("127.0.0.1", napari_port)
    with ControlClient("127.0.0.1", napari_port, timeout_s=30) as client:
        for z, plane in sent.items():
            assert sender.send(FrameMeta("loans", "A01", 1, 1, z, 1, 0, "raw"), plane)
        assert sender.flush(30)
        _wait(sender, lambda: sender.held == 3)  # napari's layer holds the three slots themselves
        status = client.ping()["status"]
        assert status["slots_held"] == 3 and status["layer_bytes"] == 3 * sent[1].nbytes
        (layer,) = client.call("layers")
        assert layer["name"] == LAYER and layer["shape"] == [1, 1, 1, 3, *SHAPE] and layer["dtype"] == "float32"
        for z, plane in sent.items():
            np.testing.assert_array_equal(_plane(client, z), plane)
        reply, payload = client.request("screenshot")  # napari draws from the slots
        rgb = np.frombuffer(payload[0], np.uint8).reshape(reply["result"]["shape"])[..., :3]
        assert rgb.std() > 5

        for round_ in range(6):  # replace z=2 again and again: each old slot goes back and is reused
            sent[2] = np.full(SHAPE, 5000 + round_, np.float32)
            assert sender.send(FrameMeta("loans", "A01", 1, 1, 2, 1, 0, "raw"), sent[2])
            _wait(sender, lambda: sender.in_flight == 0 and sender.held == 3)
        assert sender.fallbacks == 0 and sender.dropped == 0
        for z, plane in sent.items():  # the held z=1 and z=3 slots were never written again
            np.testing.assert_array_equal(_plane(client, z), plane)

        assert client.call("clear")["cleared"] == 1
        _wait(sender, lambda: sender.held == 0)
        assert client.ping()["status"]["slots_held"] == 0
    sender.close()
    assert shm.our_segments(os.getpid()) == []


def test_planes_kept_from_closed_senders_do_not_stop_the_next_sender(napari_port):
    """A closed sender's planes stay shown from its (unlinked) slots, so the viewer's displays can hold more
    mappings than its reader keeps open (32): a new sender's frames must still be read and shown (each was
    once refused as read from a closed mapping, and every plane of the next well stayed black)."""
    layer = "kept | raw | w1"
    with ControlClient("127.0.0.1", napari_port, timeout_s=30) as client:
        for well, first_z in (("A01", 1), ("A02", 21)):  # two closed senders leave 20 loans each
            sender = FrameSender("127.0.0.1", napari_port)
            for z in range(first_z, first_z + 20):
                assert sender.send(FrameMeta("kept", well, 1, 1, z, 1, 0, "raw"), np.full(SHAPE, z, np.float32))
                _wait(sender, lambda sender=sender: sender.in_flight == 0)  # one at a time: each is lent
            assert sender.held == 20 and sender.rejected == 0
            sender.close()
        assert client.ping()["status"]["slots_held"] == 40
        sender = FrameSender("127.0.0.1", napari_port)
        for z in (41, 42, 43):
            assert sender.send(FrameMeta("kept", "A03", 1, 1, z, 1, 0, "raw"), np.full(SHAPE, z, np.float32))
        assert sender.flush(30)
        assert sender.rejected == 0, sender.last_error
        for well, z in (("A01", 1), ("A02", 40), ("A03", 43)):
            index = {"well": well, "site": 1, "t": 1, "z": z}
            reply, payload = client.request("get_plane", layer=layer, index=index)
            assert float(np.frombuffer(payload[0], np.float32).max()) == z, (well, z)
        assert client.call("clear")["cleared"] == 1
        _wait(sender, lambda: client.ping()["status"]["slots_held"] == 0)
        sender.close()
    assert shm.our_segments(os.getpid()) == []
