"""A remote run's ``streaming`` section: the server starts no viewer, and reaches the client's viewer with CURVE.

The submission's rewrite (prepare_run), the server's streaming keypair, the client's half (the config it
sends, the key it authorizes), and the two places outside the execution server that a hybrid run relies on:
a viewer accepts a key authorized while it runs, and a run's keys folder is never given a new server key.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
import zmq
import zmq.auth

from openhcs_rules.config.streaming import ViewerTarget
from openhcs_rules.errors import ConfigError
from openhcs_rules.execution.client import hybrid_streaming
from openhcs_rules.execution.submission import (
    RUN_STREAM_KEYS,
    SCREEN_FILE,
    ServerPolicy,
    SubmissionError,
    check_public_key,
    ensure_stream_keys,
    prepare_run,
)
from openhcs_rules.messaging.addresses import find_free_base_port
from openhcs_rules.messaging.auth import AuthorizedKeys, ensure_keys, load_client_keys
from openhcs_rules_testkit.execution import tiny_screen
from openhcs_rules_testkit.paths import PIPELINE

VIEWER_KEY, _ = (key.decode("ascii") for key in zmq.curve_keypair())
OTHER_KEY, _ = (key.decode("ascii") for key in zmq.curve_keypair())
REMOTE = "10.231.0.2"  # an address of no interface here: "another machine"


@pytest.fixture
def policy(tmp_path: Path) -> ServerPolicy:
    return ServerPolicy(runs_root=tmp_path / "runs")


def _screen(streaming: dict) -> str:
    return yaml.safe_dump({**yaml.safe_load(tiny_screen()), "streaming": streaming}, sort_keys=False)


def _prepare(policy: ServerPolicy, streaming: dict, viewer_keys=None, run_id: str = "r1"):
    return prepare_run(policy, run_id, _screen(streaming), pipeline=PIPELINE.read_text(), viewer_keys=viewer_keys)


def _runs(policy: ServerPolicy) -> list[str]:
    return sorted(p.name for p in policy.runs_root.iterdir()) if policy.runs_root.exists() else []


def test_a_remote_viewer_gets_a_run_keys_folder_and_the_server_starts_no_viewer(policy, tmp_path):
    streaming = {
        "record": {"host": REMOTE, "port": 6100, "xvfb": True},
        "napari": {"host": REMOTE, "port": 6200},
        "curve_keys_dir": "/home/alice/.config/openhcs-rules/curve",  # a path on the client's machine
    }
    run = _prepare(policy, streaming, {"record": VIEWER_KEY, "napari": VIEWER_KEY})
    written = yaml.safe_load((run.folder / SCREEN_FILE).read_text())["streaming"]
    keys = run.folder / RUN_STREAM_KEYS
    assert written["curve_keys_dir"] == str(keys)
    assert written["record"] == {"host": REMOTE, "port": 6100, "xvfb": False, "start": False}
    assert written["napari"] == {"host": REMOTE, "port": 6200, "start": False, "xvfb": False}
    # the layout a sender loads: the server's streaming pair as the client pair, the viewer's key as server.key
    loaded = load_client_keys(keys)
    assert loaded.server_public.decode() == VIEWER_KEY
    assert loaded.public.decode() == ensure_stream_keys(policy.stream_keys_folder())
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / "client.key_secret").stat().st_mode) == 0o600
    assert not (keys / "server.key_secret").exists()
    assert policy.stream_keys_folder() == policy.runs_root.parent / "stream-keys"


def test_a_loopback_viewer_needs_no_key_and_keeps_no_client_path(policy):
    run = _prepare(policy, {"napari": True, "fiji": False, "curve_keys_dir": "/home/alice/keys"})
    written = yaml.safe_load((run.folder / SCREEN_FILE).read_text())["streaming"]
    assert written == {"napari": {"start": False, "xvfb": False}, "fiji": False}
    assert not (run.folder / RUN_STREAM_KEYS).exists()
    disabled = _prepare(policy, {"record": {"host": REMOTE, "enabled": False}}, run_id="r2")
    assert yaml.safe_load((disabled.folder / SCREEN_FILE).read_text())["streaming"] == {
        "record": {"host": REMOTE, "enabled": False}
    }


def test_a_remote_viewer_without_its_key_is_refused_saying_how_to_fix_it(policy):
    with pytest.raises(
        SubmissionError, match=r"(?s)streaming\.record\.host '10\.231\.0\.2'.*curve_keys_dir.*viewer_keys"
    ):
        _prepare(policy, {"record": {"host": REMOTE}, "curve_keys_dir": "/home/alice/keys"})
    with pytest.raises(SubmissionError, match="streaming.napari.host"):  # a key for another viewer is no key
        _prepare(policy, {"napari": {"host": REMOTE}}, {"record": VIEWER_KEY})
    assert _runs(policy) == []


@pytest.mark.parametrize(
    ("viewer_keys", "problem"),
    [
        ({"record": VIEWER_KEY[:-1]}, "viewer_keys.record: not a CURVE public key"),
        ({"record": VIEWER_KEY + "x"}, "viewer_keys.record: not a CURVE public key"),
        ({"record": VIEWER_KEY[:-1] + '"'}, "viewer_keys.record: not a CURVE public key"),
        ({"record": VIEWER_KEY[:-1] + "\n"}, "viewer_keys.record: not a CURVE public key"),
        ({"record": "#" * 40}, "does not decode to 32 bytes"),  # Z85 characters, but past 2**32 per 5
        ({"record": 12}, "viewer_keys.record: not a CURVE public key"),
        ({"gimp": VIEWER_KEY}, "'gimp' is not a viewer kind"),
        (["record", VIEWER_KEY], "viewer_keys: must map a viewer kind"),
    ],
)
def test_bad_viewer_keys_are_refused_and_leave_nothing(policy, viewer_keys, problem):
    with pytest.raises(SubmissionError, match=problem):
        _prepare(policy, {"record": {"host": REMOTE}}, viewer_keys)
    assert _runs(policy) == []


def test_remote_viewers_of_one_run_share_one_key(policy):
    two = {"record": {"host": REMOTE, "port": 6100}, "napari": {"host": REMOTE, "port": 6200}}
    with pytest.raises(SubmissionError, match="have different public keys"):
        _prepare(policy, two, {"record": VIEWER_KEY, "napari": OTHER_KEY})
    assert _runs(policy) == []


def test_the_server_streaming_keypair_is_made_once_and_shared_by_its_runs(policy, tmp_path):
    folder = tmp_path / "identity"
    public = ensure_stream_keys(folder)
    assert check_public_key(public, "key") == public
    assert ensure_stream_keys(folder) == public  # made once
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "client.key_secret").stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == ["client.key", "client.key_secret"]
    own = ServerPolicy(runs_root=tmp_path / "runs2", stream_keys_dir=folder)
    runs = [_prepare(own, {"record": {"host": REMOTE}}, {"record": VIEWER_KEY}, run_id=f"r{i}") for i in (1, 2)]
    assert {load_client_keys(run.folder / RUN_STREAM_KEYS).public.decode() for run in runs} == {public}


# -- the client's half ---------------------------------------------------------------------------------
def test_the_client_sends_its_viewer_key_but_not_its_local_path(tmp_path):
    keys = ensure_keys(tmp_path / "viewer-keys")
    public, _ = zmq.auth.load_certificate(keys / "server.key")
    streaming = {"record": {"host": REMOTE, "port": 6100}, "napari": True, "curve_keys_dir": str(keys)}
    hybrid = hybrid_streaming(_screen(streaming))
    assert hybrid.keys_dir == keys
    assert hybrid.viewer_keys == {"napari": public.decode(), "record": public.decode()}
    sent = yaml.safe_load(hybrid.config)
    assert "curve_keys_dir" not in sent["streaming"] and str(tmp_path) not in hybrid.config
    assert sent["streaming"]["record"] == {"host": REMOTE, "port": 6100}
    assert sent["plates"] == yaml.safe_load(tiny_screen())["plates"]
    # relative to the folder submit runs in
    relative = hybrid_streaming(_screen({**streaming, "curve_keys_dir": "viewer-keys"}), base=tmp_path)
    assert relative.keys_dir == tmp_path / "viewer-keys"


def test_a_config_without_a_keys_folder_goes_as_written_and_a_folder_without_the_viewer_key_is_named(tmp_path):
    text = "# my screen\n" + _screen({"napari": True})
    assert hybrid_streaming(text).config == text and hybrid_streaming(text).keys_dir is None
    with pytest.raises(ConfigError, match=r"no viewer key at .*empty/server\.key.*viewer start"):
        hybrid_streaming(_screen({"record": {"host": REMOTE}, "curve_keys_dir": str(tmp_path / "empty")}))


# -- what the hybrid run relies on outside the execution server ----------------------------------------
def test_a_key_authorized_while_a_server_runs_is_accepted(tmp_path):
    folder = tmp_path / "authorized_clients"
    folder.mkdir()
    keys = AuthorizedKeys(folder)
    newcomer, _ = zmq.curve_keypair()
    assert not keys.callback("*", newcomer)
    (folder / "execution-server-a.key").write_text(f'curve\n    public-key = "{newcomer.decode()}"\n')
    assert keys.callback("*", newcomer)  # the folder changed: read again
    (folder / "execution-server-a.key").unlink()
    assert not keys.callback("*", newcomer)  # and a removed key is refused again


def test_ensuring_a_viewer_the_run_may_not_start_never_replaces_the_viewer_key(policy):
    from openhcs_rules.streaming.ensure import ensure_viewer

    run = _prepare(policy, {"record": {"host": REMOTE}}, {"record": VIEWER_KEY})
    keys = run.folder / RUN_STREAM_KEYS
    before = (keys / "server.key").read_bytes()
    target = ViewerTarget(
        kind="record", port=find_free_base_port(), keys_dir=str(keys), start=False, connect_timeout_s=0.3
    )
    assert ensure_viewer(target)["state"] == "unavailable"  # nothing answers; not started
    assert (keys / "server.key").read_bytes() == before and not (keys / "server.key_secret").exists()
