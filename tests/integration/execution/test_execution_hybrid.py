"""Hybrid execution: a run on the server streams its images to a viewer on the submitting machine.

Two "machines" on one: network namespaces made by the test, joined by veth pairs, with addresses that exist
only inside them. Namespace A holds the execution server (and so every job of its runs); namespace B holds the
client and the viewers (the headless record viewer, and napari under Xvfb). Control traffic (submit, events)
goes over one veth pair, streaming over the other, so the bytes that reach the viewer's interface measure
the frames alone: they must carry the pixels (not shared-memory names) and fewer bytes than the raw pixels
(blosc2-lz4 compressed inline frames).

Without root (or where ``ip netns`` is refused) the two-namespace test is skipped; the ZMQ tests of the
``stream_key`` request and of ``viewer_keys`` run on loopback everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
import zmq
import zmq.auth

from openhcs_rules.config.schema import schema_node
from openhcs_rules.execution.client import ExecutionClient
from openhcs_rules.execution.submission import ensure_stream_keys
from openhcs_rules.messaging.auth import AUTHORIZED, ensure_keys
from openhcs_rules.messaging.errors import MessageError, ServerError
from openhcs_rules.streaming import codec as codecs
from openhcs_rules_testkit.execution import execution_server, tiny_screen
from openhcs_rules_testkit.paths import REPO

pytestmark = pytest.mark.workflow

PYTHON = sys.executable
#: the two links: control (client <-> server) and streaming (jobs -> viewers), A's address .1, B's .2
CONTROL_NET, STREAM_NET = "10.231.1", "10.231.2"
SERVER_HOST, VIEWER_HOST = f"{CONTROL_NET}.1", f"{STREAM_NET}.2"
SERVER_PORT, RECORD_PORT, NAPARI_PORT, STRANGER_PORT = 7777, 5575, 5555, 5585
WELLS = ["B02", "C02"]


# -- loopback: the stream key and viewer_keys over ZMQ (no namespaces needed) ----------------------------
@pytest.fixture(scope="module")
def loopback_server(tmp_path_factory):
    srv = execution_server(tmp_path_factory.mktemp("hybrid-loopback"))
    srv.start()
    yield srv
    srv.stop()


def test_the_server_offers_its_stream_key_and_checks_viewer_keys(loopback_server):
    with ExecutionClient("127.0.0.1", loopback_server.port, timeout_s=20) as client:
        key = client.stream_key()
        assert key == ensure_stream_keys(loopback_server.policy.stream_keys_folder())  # made on start, stable
        remote = yaml.safe_load(tiny_screen(wells=["B02"])) | {"streaming": {"record": {"host": VIEWER_HOST}}}
        config = yaml.safe_dump(remote)
        with pytest.raises(ServerError, match=r"(?s)invalid_submission.*needs that viewer's public key"):
            client.submit(config, pipeline_name="nuclei_count")
        with pytest.raises(ServerError, match=r"(?s)invalid_submission.*viewer_keys.record: not a CURVE public key"):
            client.submit(config, pipeline_name="nuclei_count", viewer_keys={"record": "not-a-key"})
        with pytest.raises(MessageError, match="viewer_keys' must map at most 8"):  # the schema's bound
            client.submit(config, pipeline_name="nuclei_count", viewer_keys={f"k{i}": key for i in range(9)})
        assert client.runs() == []  # nothing was queued


def test_the_http_api_offers_the_stream_key_and_takes_viewer_keys(loopback_server, tmp_path):
    import httpx

    from openhcs_rules.execution.http_api import HttpServer, create_app
    from openhcs_rules.execution.tokens import TokenStore

    with TokenStore(tmp_path / "tokens.sqlite") as tokens:
        token = tokens.issue("alice")
        http = HttpServer(create_app(loopback_server.service, tokens, page_dir=tmp_path / "no-page"), port=0)
        http.bind()
        http.start()
        try:
            with httpx.Client(base_url=http.url, timeout=20) as client:
                assert client.get("/api/stream-key").status_code == 401
                auth = {"Authorization": f"Bearer {token}"}
                answer = client.get("/api/stream-key", headers=auth)
                assert answer.status_code == 200
                assert answer.json() == {"public_key": loopback_server.service.stream_public_key()}
                remote = yaml.safe_load(tiny_screen(wells=["B02"])) | {"streaming": {"record": {"host": VIEWER_HOST}}}
                body = {"config": yaml.safe_dump(remote), "pipeline_name": "nuclei_count"}
                refused = client.post("/api/runs", json={**body, "viewer_keys": {"record": "x"}}, headers=auth)
                assert refused.status_code == 422
                assert "viewer_keys.record: not a CURVE public key" in refused.json()["error"]
        finally:
            http.stop()


# -- two namespaces --------------------------------------------------------------------------------------
@dataclass
class Hosts:
    """Two network namespaces: ``a`` (the server's machine) and ``b`` (the client's)."""

    a: str
    b: str
    stream_device: str = ""  # B's end of the streaming link

    def run(self, ns: str, *command: str, timeout: float = 120, **options) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *command], capture_output=True, text=True, timeout=timeout, **options
        )

    def popen(self, ns: str, *command: str, **options) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", ns, *command], **options)

    def rx_bytes(self, ns: str, device: str) -> int:
        return int(self.run(ns, "cat", f"/sys/class/net/{device}/statistics/rx_bytes").stdout)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _kill_everything_in(ns: str) -> None:
    """End the processes this test started in ``ns`` (the server, its runs' jobs, the viewers), by id."""
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=30)
    pids = [int(pid) for pid in done.stdout.split()]
    for sig in (15, 9):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
            time.sleep(0.1)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("the ip command (iproute2) is not installed")
    tag = f"{os.getpid() % 100000}"
    pair = Hosts(a=f"ohcs-a{tag}", b=f"ohcs-b{tag}")
    made: list[str] = []
    try:
        for ns in (pair.a, pair.b):
            try:
                _ip("netns", "add", ns)
            except RuntimeError as exc:
                pytest.skip(f"cannot make a network namespace here: {exc}")
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for net, left, right in ((CONTROL_NET, f"oc{tag}a", f"oc{tag}b"), (STREAM_NET, f"os{tag}a", f"os{tag}b")):
            try:
                _ip("link", "add", left, "type", "veth", "peer", "name", right)
            except RuntimeError as exc:
                pytest.skip(f"cannot make a veth pair here: {exc}")
            _ip("link", "set", left, "netns", pair.a)
            _ip("link", "set", right, "netns", pair.b)
            for ns, device, address in ((pair.a, left, f"{net}.1/24"), (pair.b, right, f"{net}.2/24")):
                _ip("-n", ns, "addr", "add", address, "dev", device)
                _ip("-n", ns, "link", "set", device, "up")
        pair.stream_device = f"os{tag}b"
        yield pair
    finally:
        for ns in made:
            _kill_everything_in(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)  # its veth ends go too


# the viewer's frames, read inside B (the test process is in neither namespace): frames, status, pixels
_DUMP = """
import json, sys
import numpy as np
from openhcs_rules.messaging.client import ControlClient
host, port, keys, out = sys.argv[1:5]
with ControlClient(host, int(port), keys_dir=keys, timeout_s=20) as client:
    frames = client.call("frames")
    status = client.ping()["status"]
    arrays = {}
    for i, f in enumerate(frames):
        index = {k: f[k] for k in ("plate", "well", "site", "channel", "z", "t")}
        reply, payload = client.request("get_plane", layer=f["step"], index=index)
        arrays[f"f{i}"] = np.frombuffer(payload[0], reply["result"]["dtype"]).reshape(reply["result"]["shape"])
np.savez(out, **arrays)
json.dump({"frames": frames, "status": status}, open(out + ".json", "w"))
"""

_NAPARI_PLANE = """
import json, sys
import numpy as np
from openhcs_rules.messaging.client import ControlClient
host, port, keys, prefix, index, out = sys.argv[1:7]
with ControlClient(host, int(port), keys_dir=keys, timeout_s=30) as client:
    layers = client.call("layers")
    json.dump({"layers": layers}, open(out + ".json", "w"))
    layer = next(layer["name"] for layer in layers if layer["name"].startswith(prefix))  # "plate | step | channel"
    reply, payload = client.request("get_plane", layer=layer, index=json.loads(index))
np.save(out, np.frombuffer(payload[0], reply["result"]["dtype"]).reshape(reply["result"]["shape"]))
"""


def _viewer_frames(hosts: Hosts, port: int, keys: Path, out: Path) -> tuple[list[dict], dict, list[np.ndarray]]:
    done = hosts.run(hosts.b, PYTHON, "-c", _DUMP, VIEWER_HOST, str(port), str(keys), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads(Path(f"{out}.json").read_text())
    with np.load(out) as arrays:
        planes = [arrays[f"f{i}"] for i in range(len(meta["frames"]))]
    return meta["frames"], meta["status"], planes


def _viewer_report(run_folder: Path, kind: str, port: int) -> dict:
    """What the run's ensure_viewer job found (connected, or unavailable and why)."""
    return json.loads((run_folder / ".openhcs" / "viewers" / f"{kind}-{port}.json").read_text())[kind]


def _user_keys(server_keys: Path, folder: Path, name: str) -> Path:
    """A user's keys on the client's machine (own pair + the server's public key), authorized on the server."""
    folder.mkdir(parents=True)
    public, _ = zmq.auth.create_certificates(folder, "client")
    shutil.copy(server_keys / "server.key", folder / "server.key")
    shutil.copy(public, server_keys / AUTHORIZED / f"{name}.key")
    return folder


def _start_viewer(hosts: Hosts, kind: str, port: int, keys: Path, env: dict, *extra: str) -> subprocess.Popen:
    """``openhcs-rules viewer start`` in B, beyond loopback with CURVE (it makes the viewer's keys)."""
    command = [PYTHON, "-m", "openhcs_rules", "viewer", "start", "--kind", kind, "--host", VIEWER_HOST]
    command += ["--port", str(port), "--keys-dir", str(keys), "--timeout", "90", *extra]
    return hosts.popen(hosts.b, *command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _started(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    answer = json.loads(out.strip().splitlines()[-1])
    assert answer["auth"] == "curve", answer
    return answer


def _wait_listening(server: subprocess.Popen) -> None:
    """Until ``serve`` prints its address (log lines come first); its output so far if it ends instead."""
    assert server.stdout is not None
    seen = []
    for line in server.stdout:
        seen.append(line)
        if line.startswith("{") and '"server": "execution"' in line:
            return
    raise AssertionError("serve ended before listening:\n" + "".join(seen)[-4000:])


def _submit(hosts: Hosts, env: dict, client_keys: Path, config: Path) -> subprocess.CompletedProcess:
    command = [PYTHON, "-m", "openhcs_rules", "submit", "--server", f"{SERVER_HOST}:{SERVER_PORT}"]
    command += ["--keys-dir", str(client_keys), "--config", str(config), "--pipeline-name", "nuclei_count"]
    return hosts.run(hosts.b, *command, "--wait", "--quiet", timeout=180, env=env)


def _screen(folder: Path, wells: list[str], seed: int, streaming: dict) -> Path:
    """The tiny screen, written as TIFFs holding the pipeline's output (what the viewer's pixels are checked on)."""
    output = {"backend": "disk"}
    if "images" in schema_node("output")["properties"]:  # raw planes are the default where the choice exists
        output["images"] = "processed"
    config = yaml.safe_load(tiny_screen(seed=seed, wells=wells)) | {"output": output}
    path = folder / f"screen-{seed}.yaml"
    path.write_text(yaml.safe_dump({**config, "streaming": streaming}, sort_keys=False))
    return path


def test_a_server_run_streams_to_viewers_on_the_submitting_machine(hosts, tmp_path):
    use_napari = shutil.which("Xvfb") is not None and _importable("napari")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    server_side, client_side = tmp_path / "server", tmp_path / "client"
    server_keys = ensure_keys(server_side / "keys")
    alice = _user_keys(server_keys, client_side / "alice", "alice")
    viewer_keys = client_side / "viewer-keys"
    started = time.monotonic()

    # the viewers first (napari takes longest), then the server; nothing in B authorizes the server yet
    viewers = [_start_viewer(hosts, "record", RECORD_PORT, viewer_keys, env)]
    if use_napari:
        viewers.append(_start_viewer(hosts, "napari", NAPARI_PORT, viewer_keys, env, "--xvfb"))
    stranger_keys = client_side / "stranger-keys"  # a viewer started with a folder the client never names
    viewers.append(_start_viewer(hosts, "record", STRANGER_PORT, stranger_keys, env))
    serve = [PYTHON, "-m", "openhcs_rules", "serve", "--host", SERVER_HOST, "--port", str(SERVER_PORT)]
    serve += ["--keys-dir", str(server_keys), "--runs-dir", str(server_side / "runs"), "--http-port", "0"]
    serve += ["--pipelines", str(REPO / "config" / "pipelines"), "--max-runs", "2", "--cores", "2"]
    # A is not a node of the test session's Slurm (slurmctld listens on the host's loopback, out of A's reach):
    # an empty Slurm config there makes `scontrol show config`, which snakemake-executor-plugin-slurm runs when
    # every Snakemake process starts (each run, each `run:` job), fail at once instead of after its 10 s timeout
    no_slurm = tmp_path / "no-slurm.conf"
    no_slurm.write_text("")
    server_env = {**env, "SLURM_CONF": str(no_slurm)}
    server = hosts.popen(hosts.a, *serve, env=server_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(server)
        answers = [_started(process) for process in viewers]

        # the client in B: its viewers' keys folder in the config; submit sends the key and authorizes the server
        streaming = {"record": {"host": VIEWER_HOST, "port": RECORD_PORT}, "curve_keys_dir": str(viewer_keys)}
        if use_napari:
            streaming["napari"] = {"host": VIEWER_HOST, "port": NAPARI_PORT}
        rx_before = hosts.rx_bytes(hosts.b, hosts.stream_device)
        done = _submit(hosts, env, alice, _screen(client_side, WELLS, 11, streaming))
        rx_after = hosts.rx_bytes(hosts.b, hosts.stream_device)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        assert '"state": "succeeded"' in done.stdout
        assert "authorized the execution server's streaming key" in done.stderr
        stream_public = ensure_stream_keys(server_side / "runs" / "stream-keys")
        authorized = viewer_keys / AUTHORIZED / f"execution-server-{SERVER_HOST}.key"
        assert zmq.auth.load_certificate(authorized) == (stream_public.encode(), None)  # public key only

        run_folder = next((server_side / "runs" / "runs").iterdir())
        assert _viewer_report(run_folder, "record", RECORD_PORT)["state"] == "connected"  # found, never started
        written = yaml.safe_load((run_folder / "screen.yaml").read_text())["streaming"]
        assert written["curve_keys_dir"] == str(run_folder / ".openhcs" / "stream-keys")  # not the client's path
        assert written["record"]["start"] is False and str(client_side) not in (run_folder / "screen.yaml").read_text()

        frames, status, planes = _viewer_frames(hosts, RECORD_PORT, viewer_keys, tmp_path / "record.npz")
        assert {f["well"] for f in frames} == set(WELLS) and status["frames_received"] == len(frames)
        assert {"denoise", "segment"} <= {f["step"] for f in frames}
        # inline frames: the pixels crossed the streaming link (a shared-memory frame carries a name), compressed
        raw = sum(plane.nbytes for plane in planes) * (2 if use_napari else 1)
        compressed = sum(len(codecs.encode(plane, "blosc2-lz4")) for plane in planes) * (2 if use_napari else 1)
        received = rx_after - rx_before
        assert compressed <= received < raw, (compressed, received, raw)
        # pixel-identical to what the run wrote: the last image step and the labels, per well
        by_key = {(f["step"], f["well"]): plane for f, plane in zip(frames, planes, strict=True)}
        for well in WELLS:
            tiffs = sorted((run_folder / "results" / "tiny" / "wells" / well).rglob("*.tif*"))
            labels = [path for path in tiffs if "_labels_" in path.name]
            processed = [tifffile.imread(p) for p in tiffs if "_labels_" not in p.name]
            processed = [image for image in processed if image.dtype == np.float32]  # not the raw planes
            assert len(labels) == 1 and len(processed) == 1, tiffs
            np.testing.assert_array_equal(by_key[("denoise", well)], processed[0])
            np.testing.assert_array_equal(by_key[("segment", well)], tifffile.imread(labels[0]))
        if use_napari:
            index = json.dumps({"well": WELLS[0], "site": 1, "t": 1, "z": 1})
            out = tmp_path / "napari.npy"
            got = hosts.run(
                hosts.b, PYTHON, "-c", _NAPARI_PLANE, VIEWER_HOST, str(NAPARI_PORT), str(viewer_keys),
                "tiny | denoise | ", index, str(out), env=env,
            )  # fmt: skip
            assert got.returncode == 0, got.stderr[-3000:]
            np.testing.assert_array_equal(np.load(out), by_key[("denoise", WELLS[0])])

        # a viewer whose keys folder does not authorize the server: no frames, and the run still succeeds
        elsewhere = client_side / "stranger-copy"  # the config names a copy; the viewer reads the original
        shutil.copytree(stranger_keys, elsewhere)
        streaming = {"record": {"host": VIEWER_HOST, "port": STRANGER_PORT}, "curve_keys_dir": str(elsewhere)}
        refused = _submit(hosts, env, alice, _screen(client_side, ["B02"], 12, streaming))
        assert refused.returncode == 0, (refused.stdout + refused.stderr)[-4000:]
        assert '"state": "succeeded"' in refused.stdout
        frames, status, _ = _viewer_frames(hosts, STRANGER_PORT, stranger_keys, tmp_path / "stranger.npz")
        assert frames == [] and status["frames_received"] == 0
        second = next(folder for folder in (server_side / "runs" / "runs").iterdir() if folder != run_folder)
        report = _viewer_report(second, "record", STRANGER_PORT)
        assert report["state"] == "unavailable" and "CURVE" in report["error"], report  # refused, not absent
        assert [answer["kind"] for answer in answers][-1] == "record"
        print(
            f"hybrid test: {time.monotonic() - started:.1f} s, napari {'on' if use_napari else 'off'}; streaming "
            f"link {received} bytes for {raw} bytes of pixels ({compressed} compressed)"
        )
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
