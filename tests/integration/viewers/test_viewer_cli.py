"""``openhcs-rules viewer start|status|stop|keys|ensure`` end to end, with real viewer processes."""

from __future__ import annotations

import json
import os
import socket

import pytest

from openhcs_rules.cli import main
from openhcs_rules.messaging.addresses import find_free_base_port


@pytest.fixture(autouse=True)
def _logs_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


def _run(capsys, *argv):
    status = main(["viewer", *argv])
    captured = capsys.readouterr()
    return status, (json.loads(captured.out) if captured.out.strip() else None), captured.err


def test_start_status_stop_a_viewer(capsys, tmp_path):
    port = str(find_free_base_port())
    status, out, _ = _run(capsys, "start", "--kind", "record", "--port", port)
    assert status == 0 and out["state"] == "started" and out["auth"] == "none"
    assert out["log"] == str(tmp_path / "openhcs-rules" / "viewers" / f"record-{port}.log")
    pid = out["pid"]
    status, out, _ = _run(capsys, "start", "--kind", "record", "--port", port)
    assert status == 0 and out["state"] == "connected" and out["pid"] == pid  # reused, not started twice
    status, out, _ = _run(capsys, "status", "--kind", "record", "--port", port)
    assert status == 0 and out["state"] == "running" and out["server"]["pid"] == pid
    status, out, _ = _run(capsys, "clear", "--kind", "record", "--port", port)
    assert status == 0 and out["cleared"] == 0
    status, out, _ = _run(capsys, "stop", "--kind", "record", "--port", port)
    assert status == 0 and out["state"] == "stopped"
    status, out, _ = _run(capsys, "status", "--kind", "record", "--port", port)
    assert status == 1 and out["state"] == "not running" and "ports_held_by" not in out


def test_a_port_held_by_another_program_is_reported_not_killed(capsys):
    port = find_free_base_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", port))
    holder.listen()
    try:
        status, out, _ = _run(capsys, "status", "--kind", "napari", "--port", str(port))
        assert status == 1 and f"pid {os.getpid()}" in out["ports_held_by"][str(port)]
        status, _, err = _run(capsys, "stop", "--kind", "napari", "--port", str(port))
        assert status == 2 and "not stopping a process this tool did not identify" in err
        status, _, err = _run(capsys, "start", "--kind", "napari", "--port", str(port))
        assert status == 2 and "left alone" in err
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # still alive
    finally:
        holder.close()


def test_keys_and_ensure(capsys, tmp_path):
    status, out, _ = _run(capsys, "keys", "--keys-dir", str(tmp_path / "keys"))
    assert status == 0
    assert {p.name for p in (tmp_path / "keys").iterdir()} == {
        "server.key",
        "server.key_secret",
        "client.key",
        "client.key_secret",
        "authorized_clients",
    }
    assert oct((tmp_path / "keys" / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    port = find_free_base_port()
    report_path = tmp_path / "viewers.json"
    streaming = json.dumps({"record": {"port": port}})
    status, out, _ = _run(capsys, "ensure", "--streaming", streaming, "--out", str(report_path))
    assert status == 0 and out["record"]["state"] == "started"
    assert json.loads(report_path.read_text()) == out
    assert _run(capsys, "stop", "--kind", "record", "--port", str(port))[0] == 0


def test_a_bad_streaming_config_is_a_clear_error(capsys):
    status, _, err = _run(capsys, "ensure", "--streaming", '{"napari": {"colour": "red"}}')
    assert status == 2 and "unknown key 'streaming.napari.colour'" in err
    status, _, err = _run(capsys, "ensure", "--streaming", '{"napari": {"host": "0.0.0.0"}}')
    assert status == 2 and "curve_keys_dir" in err


@pytest.mark.parametrize("host", ["*", "0.0.0.0", "::", "192.0.2.1"])
def test_starting_a_viewer_beyond_loopback_without_keys_is_the_insecure_bind_message(capsys, host):
    port = str(find_free_base_port())
    status, out, err = _run(capsys, "start", "--kind", "record", "--port", port, "--host", host)
    assert status == 2 and out is None
    assert "without authentication" in err and "--keys-dir" in err
    assert "Traceback" not in err and "ZMQError" not in err


@pytest.mark.parametrize("host", ["*", "0.0.0.0", "::"])
def test_status_of_a_wildcard_host_asks_this_machine(capsys, host):
    port = str(find_free_base_port())
    status, out, err = _run(capsys, "status", "--kind", "record", "--port", port, "--host", host)
    assert status == 1 and out["state"] == "not running" and "ZMQError" not in err
