"""The execution server end to end: real Snakemake runs submitted over ZMQ, watched, refused, cancelled.

One server (loopback, no CURVE) serves the module's tests of the happy path; the CURVE tests start their own
server beyond loopback with two users' keys. Screens are tiny synthetic plates (a run takes seconds).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.execution.client import ExecutionClient
from openhcs_rules.execution.server import ExecutionServer
from openhcs_rules.messaging import messages
from openhcs_rules.messaging.addresses import data_port, find_free_base_port
from openhcs_rules.messaging.auth import AUTHORIZED, ensure_keys, load_client_keys, secure_client_socket
from openhcs_rules.messaging.errors import AuthenticationError, ServerError
from openhcs_rules_testkit.execution import TINY_WELLS, execution_server, tiny_screen
from openhcs_rules_testkit.paths import PIPELINE as PIPELINE_FILE
from openhcs_rules_testkit.paths import REPO

pytestmark = pytest.mark.workflow

PIPELINE = PIPELINE_FILE.read_text()
WELLS = list(TINY_WELLS)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = execution_server(tmp_path_factory.mktemp("execution"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server):
    with ExecutionClient("127.0.0.1", server.port, timeout_s=20) as c:
        yield c


def test_a_submitted_screen_runs_and_every_event_arrives_in_order(server, client):
    run = client.submit(tiny_screen(), pipeline=PIPELINE)
    assert run["state"] in ("queued", "running") and run["owner"] == "local"
    events = list(client.watch(run["run_id"]))
    seqs = [event["seq"] for event in events]
    assert seqs == list(range(1, len(seqs) + 1))  # numbered from 1 without gaps
    kinds = [event["type"] for event in events]
    assert kinds[0] == "run_queued" and events[-1]["body"]["state"] == "succeeded"
    finished = sorted(e["body"]["well"] for e in events if e["type"] == "well_finished")
    assert finished == WELLS
    assert "workflow_started" in kinds and "progress" in kinds
    # a late client replays the same events from the store, and one that saw some gets the rest
    assert [e["seq"] for e in client.watch(run["run_id"])] == seqs
    assert [e["seq"] for e in client.watch(run["run_id"], after=5)] == seqs[5:]
    state = client.run(run["run_id"])
    assert state["state"] == "succeeded" and state["exit_code"] == 0
    files = {entry["path"] for entry in client.results(run["run_id"])}
    assert "results/tiny/wells.csv" in files
    assert "Finished" in client.logs(run["run_id"], tail=50) or client.logs(run["run_id"])


def test_two_screens_run_side_by_side_in_their_own_folders(server, client):
    first = client.submit(tiny_screen(seed=1), pipeline_name="nuclei_count")
    second = client.submit(tiny_screen(seed=2, wells=["D04"]), pipeline=PIPELINE)
    results = [list(client.watch(run["run_id"]))[-1]["body"]["state"] for run in (first, second)]
    assert results == ["succeeded", "succeeded"], [client.run(run["run_id"])["message"] for run in (first, second)]
    folders = {client.run(run["run_id"])["folder"] for run in (first, second)}
    assert len(folders) == 2


def test_refusals_name_the_problem_and_unknown_runs_are_unknown(server, client):
    with pytest.raises(ServerError, match="(?s)invalid_submission.*Import statement is not allowed"):
        client.submit(tiny_screen(), pipeline="import os\nos.system('true')\n")
    with pytest.raises(ServerError, match="(?s)invalid_submission.*outside the allowed folders"):
        client.submit("plates: {p: {source: disk, path: /etc}}\n", pipeline=PIPELINE)
    for run_id in ("no-such-run", "../../etc"):
        with pytest.raises(ServerError, match="unknown_run"):
            client.run(run_id)
        with pytest.raises(ServerError, match="unknown_run"):
            client.cancel(run_id)
    assert client.pipelines() == ["cell_profile", "nuclei_count"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.dictionaries(st.sampled_from(["v", "type", "run_id", "config", "after", "mode"]), st.from_type(int)),
        st.builds(
            lambda kind, run_id: {"v": 1, "type": kind, "run_id": run_id},
            st.sampled_from(["run", "events", "cancel", "resume", "logs", "results", "watch", "submit"]),
            st.text(max_size=80),
        ),
    )
)
def test_malformed_messages_get_an_error_on_both_channels_and_the_server_serves_on(server, message):
    raw = message if isinstance(message, bytes) else messages.encode(message) if "v" in message else b"{}"
    context = zmq.Context.instance()
    for port, kind in ((server.port, zmq.REQ), (data_port(server.port), zmq.DEALER)):
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"tcp://127.0.0.1:{port}")
        try:
            sock.send(raw)
            assert sock.poll(5000), "no answer"
            reply = messages.decode(sock.recv())
            assert reply["type"] in ("error", "reply")
            if reply["type"] == "reply":  # a valid request about nothing that exists still refers to no run
                assert kind == zmq.REQ and reply["result"] is not None
        finally:
            sock.close(linger=0)


def test_twenty_clients_at_once_are_all_answered(server):
    answers: list[int] = []

    def ask() -> None:
        with ExecutionClient("127.0.0.1", server.port, timeout_s=20) as c:
            answers.extend(len(c.runs()) >= 0 for _ in range(10))

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 200


def test_drain_finishes_running_wells_and_resume_completes_the_run(server, client):
    run = client.submit(tiny_screen(seed=3, wells=["B02", "B03", "C02", "C03", "D02", "D03"]), pipeline=PIPELINE)
    run_id = run["run_id"]
    for event in client.watch(run_id, stop_when_done=False):
        if event["type"] == "well_started":
            break
    assert client.cancel(run_id, mode="drain")["state"] in ("draining", "cancelled")
    assert list(client.watch(run_id))[-1]["body"]["state"] == "cancelled"
    resumed = client.resume(run_id)
    assert resumed["state"] in ("queued", "running")
    last = client.run(run_id)["last_seq"]
    final = list(client.watch(run_id, after=last))
    assert final[-1]["body"]["state"] == "succeeded"


# -- users and CURVE ------------------------------------------------------------------------------------
def _user_keys(keys: Path, tmp_path: Path, name: str) -> Path:
    """A keys folder for user ``name``: their own keypair plus the server's public key; authorized."""
    folder = tmp_path / f"{name}-keys"
    folder.mkdir()
    public, secret = zmq.auth.create_certificates(folder, "client")
    (folder / "server.key").write_bytes((keys / "server.key").read_bytes())
    (keys / AUTHORIZED / f"{name}.key").write_bytes(Path(public).read_bytes())
    return folder


def _raw_watch(srv: ExecutionServer, keys_dir: Path, run_id: str) -> dict[str, Any]:
    """The progress channel's first answer to a watch sent with these client keys."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    secure_client_socket(sock, load_client_keys(keys_dir))
    sock.connect(f"tcp://127.0.0.1:{data_port(srv.port)}")
    try:
        sock.send(messages.encode(messages.make("watch", run_id=run_id, after=0)))
        assert sock.poll(10_000), "no answer on the progress channel"
        return messages.decode(sock.recv())
    finally:
        sock.close(linger=0)


def test_with_curve_each_user_sees_only_their_runs_and_strangers_are_refused(tmp_path):
    keys = ensure_keys(tmp_path / "server-keys")
    alice, bob = _user_keys(keys, tmp_path, "alice"), _user_keys(keys, tmp_path, "bob")
    srv = execution_server(tmp_path, host="0.0.0.0", keys=keys, operators=("client",))
    srv.start()
    try:
        with ExecutionClient("127.0.0.1", srv.port, keys_dir=alice, timeout_s=20) as as_alice:
            run = as_alice.submit(tiny_screen(seed=4, wells=["B02"]), pipeline=PIPELINE)
            assert run["owner"] == "alice"
            with ExecutionClient("127.0.0.1", srv.port, keys_dir=bob, timeout_s=20) as as_bob:
                assert as_bob.runs() == []
                for request in (as_bob.run, as_bob.cancel, as_bob.resume, as_bob.logs):
                    with pytest.raises(ServerError, match="unknown_run"):
                        request(run["run_id"])
                with pytest.raises(ServerError, match="unknown_run"):
                    list(as_bob.watch(run["run_id"], stop_when_done=False))
                # and on the progress channel itself: a watch for alice's run pushes nothing to bob
                assert _raw_watch(srv, bob, run["run_id"])["code"] == "unknown_run"
                assert _raw_watch(srv, alice, run["run_id"])["type"] == "reply"
            with ExecutionClient("127.0.0.1", srv.port, keys_dir=keys, timeout_s=20) as operator:
                assert [r["run_id"] for r in operator.runs(everyone=True)] == [run["run_id"]]
            assert list(as_alice.watch(run["run_id"]))[-1]["body"]["state"] == "succeeded"
        with ExecutionClient("127.0.0.1", srv.port, timeout_s=5) as anonymous:
            with pytest.raises(AuthenticationError):
                anonymous.runs()
    finally:
        srv.stop()


# -- the CLI --------------------------------------------------------------------------------------------
def test_the_cli_serves_submits_waits_and_lists(tmp_path):
    port = find_free_base_port()
    cli = [sys.executable, "-m", "openhcs_rules"]
    server = subprocess.Popen(
        [
            *cli,
            "serve",
            "--port",
            str(port),
            "--runs-dir",
            str(tmp_path / "served"),
            "--pipelines",
            str(REPO / "config" / "pipelines"),
            "--http-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()  # the server's address: it is listening
        config = tmp_path / "screen.yaml"
        config.write_text(tiny_screen(seed=5, wells=["B02"]))
        address = f"127.0.0.1:{port}"
        submitted = subprocess.run(
            [
                *cli,
                "submit",
                "--server",
                address,
                "--config",
                str(config),
                "--pipeline-name",
                "nuclei_count",
                "--wait",
                "--quiet",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        assert '"state": "succeeded"' in submitted.stdout
        listed = subprocess.run(
            [*cli, "runs", "list", "--server", address, "--json"], capture_output=True, text=True, timeout=60
        )
        assert listed.returncode == 0 and '"succeeded"' in listed.stdout
        unknown = subprocess.run(
            [*cli, "runs", "status", "nope", "--server", address], capture_output=True, text=True, timeout=60
        )
        assert unknown.returncode == 2 and "unknown_run" in unknown.stderr
    finally:
        server.terminate()
        server.wait(30)
    unreachable = subprocess.run(
        [*cli, "runs", "list", "--server", f"127.0.0.1:{port}", "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 4
