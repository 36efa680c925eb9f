"""The execution server's HTTP API end to end: real uvicorn on a free port, real Snakemake runs of a tiny
synthetic screen, three users by their tokens (``local`` the operator, ``alice`` and ``bob``).

One server (and one finished run of alice's) serves the module; the cancel/resume test runs its own screen.
Raw requests (``http.client``, a socket) are used where httpx would tidy the request first: paths with
``..`` and a body the server must refuse before it is sent.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openhcs_rules.cli import main
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution import http_api
from openhcs_rules.execution.http_api import MAX_BODY_BYTES, HttpServer, create_app
from openhcs_rules.execution.runner import RunSupervisor
from openhcs_rules.execution.server import ExecutionServer
from openhcs_rules.execution.store import RunStore
from openhcs_rules.execution.submission import ServerPolicy
from openhcs_rules.execution.tokens import TokenStore
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules_testkit.execution import TINY_WELLS, execution_server, tiny_screen
from openhcs_rules_testkit.paths import PIPELINE as PIPELINE_FILE

pytestmark = pytest.mark.workflow

PIPELINE = PIPELINE_FILE.read_text()
WELLS = list(TINY_WELLS)
PAGE = "<!doctype html><title>placeholder</title>"


class Api:
    """The module's server: its address, its store and a client per user."""

    def __init__(self, tmp: Path) -> None:
        self.zmq = execution_server(tmp, poll_s=0.1)
        self.store = self.zmq.store
        self.tokens = TokenStore(tmp / "tokens.sqlite")
        page = tmp / "page"
        page.mkdir()
        (page / "index.html").write_text(PAGE)
        (page / "app.js").write_text("console.log('page');\n")
        (page / "linked.js").symlink_to(tmp / "tokens.sqlite")
        self.http = HttpServer(create_app(self.zmq.service, self.tokens, page), port=0)
        self.token = {user: self.tokens.issue(user) for user in ("local", "alice", "bob")}
        self.clients: dict[str, httpx.Client] = {}

    def start(self) -> None:
        self.zmq.start()
        self.http.start()
        self.url = self.http.url
        for user, token in self.token.items():
            self.clients[user] = httpx.Client(
                base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
        self.anonymous = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        for client in [*self.clients.values(), self.anonymous]:
            client.close()
        self.http.stop()
        self.zmq.stop()
        self.tokens.close()

    def raw(self, method: str, path: str, user: str = "alice", body: bytes | None = None) -> tuple[int, bytes]:
        """A request sent exactly as written (no path normalisation)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.http.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers={"Authorization": f"Bearer {self.token[user]}"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    server = Api(tmp_path_factory.mktemp("http"))
    server.start()
    yield server
    server.stop()


def stream(
    client: httpx.Client,
    run_id: str,
    after: int | None = None,
    headers: dict[str, str] | None = None,
    until: str | None = None,
) -> list[dict[str, Any]]:
    """The SSE messages of a run's stream, parsed (``id``, ``event``, ``data``), until it ends (or, with
    ``until``, the first event of that type: the client then hangs up)."""
    url = f"/api/runs/{run_id}/stream" + ("" if after is None else f"?after={after}")
    messages: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if fields:
                message = {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
                assert message["id"] == message["data"]["seq"] and message["event"] == message["data"]["type"]
                messages.append(message)
                fields = {}
                if until is not None and message["event"] == until:
                    break
    return messages


@pytest.fixture(scope="module")
def finished(api: Api) -> dict[str, Any]:
    """Alice's screen, submitted over HTTP and streamed to its end: the run and every message of the stream."""
    response = api.clients["alice"].post("/api/runs", json={"config": tiny_screen(), "pipeline": PIPELINE})
    assert response.status_code == 201, response.text
    run = response.json()
    assert run["owner"] == "alice" and run["state"] in ("queued", "running")
    return {"run": run, "messages": stream(api.clients["alice"], run["run_id"])}


# -- users and tokens -----------------------------------------------------------------------------------------
def test_whoami_names_the_token_user_and_operators(api):
    assert api.clients["alice"].get("/api/whoami").json() == {"user": "alice", "operator": False}
    assert api.clients["local"].get("/api/whoami").json() == {"user": "local", "operator": True}
    assert api.clients["bob"].get("/api/pipelines").json() == {"pipelines": ["cell_profile", "nuclei_count"]}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic YWxpY2U6eA=="}, {"Authorization": "Bearer"}],
)
def test_without_a_valid_token_every_api_route_is_401(api, headers):
    for method, path in [
        ("GET", "/api/whoami"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/x/stream"),
        ("GET", "/api/runs/x/files/results/a.csv"),
        ("POST", "/api/runs/x/cancel"),
    ]:
        response = api.anonymous.request(method, path, headers=headers)
        assert response.status_code == 401, (method, path)
        assert response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "Bearer"
        assert "access-control-allow-origin" not in response.headers and "set-cookie" not in response.headers
    assert api.anonymous.get("/api/openapi.json").status_code == 200


def test_a_revoked_token_stops_working_at_once(api):
    token = api.tokens.issue("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert api.anonymous.get("/api/whoami", headers=headers).json()["user"] == "carol"
    api.tokens.revoke("carol")
    assert api.anonymous.get("/api/whoami", headers=headers).status_code == 401


# -- a run, start to end ----------------------------------------------------------------------------------------
def test_the_stream_carries_every_event_in_order_to_the_end(api, finished):
    messages = finished["messages"]
    seqs = [message["id"] for message in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    assert messages[0]["event"] == "run_queued" and messages[-1]["data"]["body"]["state"] == "succeeded"
    finished_wells = sorted(m["data"]["body"]["well"] for m in messages if m["event"] == "well_finished")
    assert finished_wells == WELLS
    run_id = finished["run"]["run_id"]
    stored = api.clients["alice"].get(f"/api/runs/{run_id}/events").json()
    assert [event["seq"] for event in stored["events"]] == seqs and stored["last_seq"] == seqs[-1]
    assert [m["data"] for m in messages] == stored["events"]
    run = api.clients["alice"].get(f"/api/runs/{run_id}").json()
    assert run["state"] == "succeeded" and run["exit_code"] == 0


def test_a_late_stream_gets_the_rest_from_last_event_id(api, finished):
    run_id, seqs = finished["run"]["run_id"], [m["id"] for m in finished["messages"]]
    client = api.clients["alice"]
    assert [m["id"] for m in stream(client, run_id, headers={"Last-Event-ID": "5"})] == seqs[5:]
    assert [m["id"] for m in stream(client, run_id, after=3)] == seqs[3:]
    # a reconnecting EventSource keeps its first URL and sends the last id it saw: the header wins
    assert [m["id"] for m in stream(client, run_id, after=1, headers={"Last-Event-ID": str(seqs[-2])})] == seqs[-1:]
    assert stream(client, run_id, after=seqs[-1]) == []
    bad = client.get(f"/api/runs/{run_id}/stream", headers={"Last-Event-ID": "soon"})
    assert bad.status_code == 422 and bad.json()["code"] == "bad_request"


def test_events_page_by_after_and_limit(api, finished):
    run_id, seqs = finished["run"]["run_id"], [m["id"] for m in finished["messages"]]
    page = api.clients["alice"].get(f"/api/runs/{run_id}/events", params={"after": 2, "limit": 3}).json()
    assert [event["seq"] for event in page["events"]] == seqs[2:5] and page["last_seq"] == seqs[-1]


def test_the_plates_show_every_well_done_with_its_count(api, finished):
    run_id = finished["run"]["run_id"]
    plates = api.clients["alice"].get(f"/api/runs/{run_id}/plates").json()["plates"]
    assert list(plates) == ["tiny"]
    tiny = plates["tiny"]
    assert tiny["rows"] == list("ABCDEFGH") and tiny["columns"] == list(range(1, 13))
    assert sorted(tiny["wells"]) == WELLS
    counts = {
        m["data"]["body"]["well"]: m["data"]["body"]["objects"]
        for m in finished["messages"]
        if m["event"] == "well_finished"
    }
    for name, cell in tiny["wells"].items():
        assert cell == {"state": "done", "objects": counts[name]} and isinstance(cell["objects"], int)


def test_results_are_listed_and_downloaded(api, finished):
    run_id = finished["run"]["run_id"]
    client = api.clients["alice"]
    files = {entry["path"]: entry for entry in client.get(f"/api/runs/{run_id}/results").json()["files"]}
    assert files["results/tiny/wells.csv"]["kind"] == "file"
    response = client.get(f"/api/runs/{run_id}/files/results/tiny/wells.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-security-policy"] == "sandbox"
    folder = Path(client.get(f"/api/runs/{run_id}").json()["folder"])
    assert response.content == (folder / "results" / "tiny" / "wells.csv").read_bytes()
    assert response.content.startswith(b"Metadata_Plate,Metadata_Well,")
    log = client.get(f"/api/runs/{run_id}/logs", params={"tail": 5}).json()["log"]
    assert isinstance(log, str) and len(log.splitlines()) <= 5


def test_no_download_escapes_the_results(api, finished):
    run_id = finished["run"]["run_id"]
    folder = Path(api.clients["alice"].get(f"/api/runs/{run_id}").json()["folder"])
    (folder / "results" / "tiny" / "linked.csv").symlink_to(folder / "screen.yaml")
    (folder / "results" / "root").symlink_to("/")
    base = f"/api/runs/{run_id}/files/"
    for path in [
        "../screen.yaml",
        "results/../screen.yaml",
        "results/tiny/../../screen.yaml",
        "%2e%2e/screen.yaml",
        "results/%2E%2E/screen.yaml",
        "results%2f..%2fscreen.yaml",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
        "screen.yaml",
        "pipeline.py",
        ".openhcs/snakemake.log",
        "results/tiny/linked.csv",
        "results/root/etc/passwd",
        "results",
        "results/tiny/plate.ome.zarr",
        "results/tiny/%00.csv",
        "results/" + "x" * 5000,
    ]:
        status, body = api.raw("GET", base + path)
        assert status == 404, (path, status, body[:200])
        assert json.loads(body)["code"] in ("unknown_run", "not_found"), path
    assert api.raw("GET", base + "results/tiny/wells.csv")[0] == 200


# -- refusals -------------------------------------------------------------------------------------------------
def test_a_bad_submission_is_422_naming_the_line(api):
    client = api.clients["alice"]
    response = client.post("/api/runs", json={"config": tiny_screen(), "pipeline": '"""doc"""\n\nimport os\n'})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_submission" and "pipeline.py:3" in response.json()["error"]
    response = client.post("/api/runs", json={"config": "plates:\n  a: [\n", "pipeline_name": "nuclei_count"})
    assert response.status_code == 422 and "line" in response.json()["error"]
    response = client.post("/api/runs", json={"pipeline": PIPELINE})
    assert response.status_code == 422
    assert response.json() == {"code": "bad_request", "error": "body.config: Field required"}


def test_bodies_over_one_mib_are_413(api):
    client = api.clients["alice"]
    big = b"x" * (2 * MAX_BODY_BYTES)
    response = client.post("/api/runs", content=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(32):
            yield b"y" * 65536

    response = client.post("/api/runs", content=chunks())
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    # refused from the declared length alone: the answer comes before a byte of the body is sent
    with socket.create_connection(("127.0.0.1", api.http.port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {api.token['alice']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {2 * MAX_BODY_BYTES}\r\n\r\n".encode()
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    assert client.get("/api/whoami").status_code == 200


def test_each_user_sees_only_their_runs_and_operators_see_all(api, finished):
    run_id = finished["run"]["run_id"]
    bob = api.clients["bob"]
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/stream"),
        ("GET", "/logs"),
        ("GET", "/results"),
        ("GET", "/plates"),
        ("GET", "/files/results/tiny/wells.csv"),
        ("POST", "/cancel"),
        ("POST", "/resume"),
    ]:
        response = bob.request(method, f"/api/runs/{run_id}{path}")
        unknown = bob.request(method, f"/api/runs/no-such-run{path}")
        assert response.status_code == unknown.status_code == 404, path
        assert response.json()["code"] == unknown.json()["code"] == "unknown_run"
    assert bob.get("/api/runs", params={"all": "true"}).json() == {"runs": []}
    alice_runs = api.clients["alice"].get("/api/runs", params={"all": "true"}).json()["runs"]
    assert {run["owner"] for run in alice_runs} == {"alice"} and run_id in {run["run_id"] for run in alice_runs}
    operator = api.clients["local"]
    assert run_id in {run["run_id"] for run in operator.get("/api/runs", params={"all": "true"}).json()["runs"]}
    assert run_id not in {run["run_id"] for run in operator.get("/api/runs").json()["runs"]}
    assert operator.get(f"/api/runs/{run_id}").json()["owner"] == "alice"
    assert operator.get(f"/api/runs/{run_id}/plates").status_code == 200


def test_cancel_and_resume_over_http(api):
    client = api.clients["alice"]
    wells = ["B02", "B03", "C02", "C03", "D02", "D03"]
    run = client.post("/api/runs", json={"config": tiny_screen(seed=3, wells=wells), "pipeline_name": "nuclei_count"})
    run_id = run.json()["run_id"]
    seen = stream(client, run_id, until="well_started")  # the client hangs up mid-run
    bad = client.post(f"/api/runs/{run_id}/cancel", json={"mode": "later"})
    assert bad.status_code == 422 and bad.json()["code"] == "bad_request"
    assert client.post(f"/api/runs/{run_id}/cancel", json={"mode": "drain"}).json()["state"] in (
        "draining",
        "cancelled",
    )
    rest = stream(client, run_id, after=seen[-1]["id"])
    assert rest[-1]["data"]["body"]["state"] == "cancelled"
    refused = client.post(f"/api/runs/{run_id}/cancel", json={"mode": "abort"})
    assert refused.status_code == 409 and refused.json()["code"] == "refused"
    resumed = client.post(f"/api/runs/{run_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["state"] in ("queued", "running")
    again = client.post(f"/api/runs/{run_id}/resume")
    assert again.status_code == 409 and again.json()["code"] == "refused"
    # from the first event: the cancel in its history does not end the stream, the run's real end does
    everything = stream(client, run_id, after=0)
    assert [m["id"] for m in everything] == list(range(1, len(everything) + 1))
    states = [m["data"]["body"]["state"] for m in everything if m["event"] == "run_state"]
    assert "cancelled" in states and states[-1] == "succeeded"
    cells = client.get(f"/api/runs/{run_id}/plates").json()["plates"]["tiny"]["wells"]
    assert sorted(cells) == wells and {cell["state"] for cell in cells.values()} == {"done"}


# -- junk -----------------------------------------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(
        st.sampled_from(["config", "pipeline", "pipeline_name", "mode", "extra"]), JSON_VALUES, max_size=4
    ).map(lambda value: json.dumps(value).encode()),
)
PARAMS = st.dictionaries(st.sampled_from(["after", "limit", "tail", "all"]), st.text(max_size=30), max_size=3)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(
        [
            ("POST", "/api/runs"),
            ("GET", "/api/runs"),
            ("GET", "/api/runs/{run}"),
            ("GET", "/api/runs/{run}/events"),
            ("GET", "/api/runs/{run}/stream"),
            ("GET", "/api/runs/{run}/logs"),
            ("GET", "/api/runs/{run}/plates"),
            ("GET", "/api/runs/{run}/results"),
            ("GET", "/api/runs/{run}/files/{path}"),
            ("POST", "/api/runs/{run}/cancel"),
            ("POST", "/api/runs/{run}/resume"),
        ]
    ),
    run=st.one_of(st.text(max_size=40), st.just("FINISHED")),
    path=st.text(max_size=40),
    body=BODIES,
    params=PARAMS,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
)
def test_junk_gets_json_4xx_and_the_server_serves_on(api, finished, route, run, path, body, params, content_type):
    method, template = route
    run_id = finished["run"]["run_id"] if run == "FINISHED" else run
    url = template.format(run=quote(run_id, safe=""), path=quote(path, safe="/"))
    headers = {"Content-Type": content_type} if content_type else {}
    # on the finished run (alice's): cancel and resume are refused (409), a stream ends after the stored events
    response = api.clients["bob" if run != "FINISHED" else "alice"].request(
        method, url, content=body if method == "POST" else None, params=params, headers=headers
    )
    assert response.status_code < 500, (method, url, response.text)
    if response.status_code >= 400 or response.headers.get("content-type", "").startswith("application/json"):
        answer = response.json()
        if response.status_code >= 400:
            assert set(answer) == {"code", "error"} and isinstance(answer["error"], str), answer
    assert response.status_code != 201, "junk was accepted as a run"


def test_the_server_still_answers_after_the_junk(api):
    assert api.clients["alice"].get("/api/whoami").status_code == 200


# -- the document and the page -----------------------------------------------------------------------------------
def test_the_openapi_document_lists_every_route(api):
    document = api.anonymous.get("/api/openapi.json").json()
    assert document["info"]["title"] and document["info"]["version"]
    routes = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert routes == {
        ("GET", "/api/whoami"),
        ("GET", "/api/pipelines"),
        ("GET", "/api/stream-key"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/{run_id}"),
        ("GET", "/api/runs/{run_id}/events"),
        ("GET", "/api/runs/{run_id}/stream"),
        ("POST", "/api/runs/{run_id}/cancel"),
        ("POST", "/api/runs/{run_id}/resume"),
        ("GET", "/api/runs/{run_id}/logs"),
        ("GET", "/api/runs/{run_id}/results"),
        ("GET", "/api/runs/{run_id}/files/{path}"),
        ("GET", "/api/runs/{run_id}/plates"),
    }
    assert any(scheme.get("scheme") == "bearer" for scheme in document["components"]["securitySchemes"].values())
    assert api.anonymous.get("/api/docs").status_code == 404  # no unauthenticated page under /api


def test_the_page_is_served_without_a_token(api):
    index = api.anonymous.get("/")
    assert index.status_code == 200 and index.text == PAGE and index.headers["content-type"].startswith("text/html")
    assert api.anonymous.get("/static/app.js").text == "console.log('page');\n"
    assert api.raw("GET", "/static/../../tokens.sqlite")[0] == 404
    assert api.anonymous.get("/static/missing.js").status_code == 404
    assert api.anonymous.get("/static/linked.js").status_code == 404  # links in the page folder are not followed


# -- the CLI --------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_serve_prints_the_page_address_once_and_serve_token_adds_users(tmp_path):
    runs_dir, port, http_port = tmp_path / "served", find_free_base_port(), _free_port()
    command = [sys.executable, "-m", "openhcs_rules", "serve", "--port", str(port), "--runs-dir", str(runs_dir)]
    command += ["--http-port", str(http_port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        first = json.loads(server.stdout.readline())
        assert first["http"] == f"http://127.0.0.1:{http_port}" and first["server"] == "execution"
        page = server.stdout.readline().strip()
        assert page.startswith(f"http://127.0.0.1:{http_port}/#token=")
        token = page.partition("#token=")[2]
        local = httpx.get(f"{first['http']}/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert local.json() == {"user": "local", "operator": True}
        # a token issued while the server runs works at once, and stops when revoked
        issued = subprocess.run(
            [sys.executable, "-m", "openhcs_rules", "serve-token", "dave", "--runs-dir", str(runs_dir)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        dave = {"Authorization": f"Bearer {issued.stdout.strip()}"}
        assert issued.returncode == 0 and issued.stdout.count("\n") == 1
        assert httpx.get(f"{first['http']}/api/whoami", headers=dave).json()["user"] == "dave"
        assert main(["serve-token", "dave", "--runs-dir", str(runs_dir), "--revoke"]) == 0
        assert httpx.get(f"{first['http']}/api/whoami", headers=dave).status_code == 401
    finally:
        server.terminate()
        server.wait(30)
    # a restart keeps the token (and does not print a new one)
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        assert json.loads(server.stdout.readline())["http"] == f"http://127.0.0.1:{http_port}"
        local = httpx.get(f"http://127.0.0.1:{http_port}/api/whoami", headers={"Authorization": f"Bearer {token}"})
        assert local.status_code == 200
    finally:
        server.terminate()
        rest, _ = server.communicate(timeout=30)
    assert "#token=" not in rest


def test_serve_refuses_http_beyond_loopback_in_clear_and_a_taken_port(tmp_path, capsys):
    runs_dir = str(tmp_path / "runs")
    assert main(["serve", "--runs-dir", runs_dir, "--http-host", "0.0.0.0"]) == 2
    assert "--http-insecure" in capsys.readouterr().err
    assert main(["serve", "--runs-dir", runs_dir, "--http-cert", "c.pem"]) == 2
    assert "go together" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--runs-dir", runs_dir, "--port", str(find_free_base_port()), "--http-port", str(port)])
        assert code == 2
        assert f"127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve-token", "x", "--runs-dir", str(tmp_path / "nowhere")]) == 2


def test_idle_streams_keep_alive_end_on_revocation_and_on_stop(tmp_path, monkeypatch):
    monkeypatch.setattr(http_api, "KEEPALIVE_S", 0.3)
    store = RunStore(tmp_path / "runs.sqlite")
    store.create_run("r1", "local", tmp_path / "r1")  # queued, never started: its stream stays open
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    policy = ServerPolicy(runs_root=tmp_path / "runs")
    service = ExecutionServer(policy, store, RunSupervisor(store), port=find_free_base_port()).service
    server = HttpServer(create_app(service, tokens, tmp_path / "no-page"), port=0)
    server.start()

    def open_stream(token: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.stream("GET", f"{server.url}/api/runs/r1/stream", headers=headers, timeout=30)

    try:
        for path in ("/", "/static/app.js"):  # no page installed
            assert httpx.get(f"{server.url}{path}").json() == {"code": "not_found", "error": "no web page installed"}
        with open_stream(tokens.issue("local")) as response:
            lines = response.iter_lines()
            assert next(lines) == "id: 1"  # the queued run's first event; the stream stays open
            assert ": keepalive" in [next(lines) for _ in range(4)]
            tokens.revoke("local")
            started = time.monotonic()
            assert ": keepalive" not in list(lines)  # the stream ends at the next keepalive
            assert time.monotonic() - started < 5
        with open_stream(tokens.issue("local")) as response:
            lines = response.iter_lines()
            assert next(lines) == "id: 1"
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 6
            list(lines)  # ended by the server
    finally:
        server.stop()
        tokens.close()
        store.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (it makes the test certificate)")
def test_with_a_certificate_the_api_speaks_tls_only(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert)]
        + ["-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    store, tokens = RunStore(tmp_path / "runs.sqlite"), TokenStore(tmp_path / "tokens.sqlite")
    policy = ServerPolicy(runs_root=tmp_path / "runs")
    service = ExecutionServer(policy, store, RunSupervisor(store), port=find_free_base_port()).service
    app = create_app(service, tokens)
    with pytest.raises(OpenHCSError, match="TLS certificate or key"):
        HttpServer(app, port=0, ssl_certfile=tmp_path / "missing.pem", ssl_keyfile=key).bind()
    server = HttpServer(app, port=0, ssl_certfile=cert, ssl_keyfile=key)
    server.start()
    try:
        assert server.url.startswith("https://")
        headers = {"Authorization": f"Bearer {tokens.issue('local')}"}
        context = ssl.create_default_context(cafile=str(cert))
        assert httpx.get(f"{server.url}/api/whoami", headers=headers, verify=context).json()["user"] == "local"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/api/whoami", headers=headers)
    finally:
        server.stop()
        tokens.close()
        store.close()
