"""The HTTP API with OMERO.web's signed tokens and CORS: real uvicorn on a free port.

No run starts here (what is checked is who may do what before anything runs); the OMERO.web app's own tests
(tests/integration/omero/test_omeroweb_app.py) submit through a token its view signed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from openhcs_rules.execution.http_api import HttpServer, create_app
from openhcs_rules.execution.signed_tokens import sign_token
from openhcs_rules.execution.tokens import TokenStore
from openhcs_rules_testkit.execution import execution_server, tiny_screen

SECRET = b"a-secret-of-at-least-32-characters-0000"
ORIGIN = "https://omero.example.org"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("signed")
    server = execution_server(tmp)
    tokens = TokenStore(tmp / "tokens.sqlite")
    app = create_app(server.service, tokens, tmp / "no-page", signing_secret=SECRET, cors_origins=(ORIGIN,))
    http = HttpServer(app, port=0)
    http.start()
    try:
        yield http.url
    finally:
        http.stop()
        tokens.close()
        server.store.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def omero_screen(*plate_ids: int) -> str:
    plates = {f"omero_{plate_id}": {"source": "omero", "plate_id": plate_id} for plate_id in plate_ids}
    return yaml.safe_dump({"plates": plates})


def test_a_signed_token_is_its_omero_user(api: str) -> None:
    token = sign_token(SECRET, "alice@omero", [51])
    answer = httpx.get(f"{api}/api/whoami", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.json() == {"user": "alice@omero", "operator": False}
    assert httpx.get(f"{api}/api/runs", headers=bearer(token)).json() == {"runs": []}


def test_expired_and_foreign_signed_tokens_are_unauthenticated(api: str) -> None:
    expired = sign_token(SECRET, "alice@omero", [51], ttl_s=1, now=time.time() - 10)
    foreign = sign_token(b"not-the-servers-secret-000000000000", "alice@omero", [51])
    for token in (expired, foreign, expired[:-2]):
        answer = httpx.get(f"{api}/api/whoami", headers=bearer(token))
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthenticated"


def test_a_signed_token_submits_only_on_its_own_omero_plates(api: str) -> None:
    token = sign_token(SECRET, "alice@omero", [51])
    pipeline = {"pipeline_name": "nuclei_count"}
    for config, named in ((omero_screen(52), "52"), (omero_screen(51, 52), "52"), (tiny_screen(), "tiny")):
        answer = httpx.post(f"{api}/api/runs", headers=bearer(token), json={"config": config, **pipeline})
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "forbidden"
        assert named in answer.json()["error"]
    assert httpx.get(f"{api}/api/runs", headers=bearer(token)).json() == {"runs": []}


def test_cors_is_answered_for_the_listed_origin_only(api: str) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    allowed = httpx.options(f"{api}/api/runs", headers={"Origin": ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in allowed.headers
    assert allowed.headers["x-content-type-options"] == "nosniff"  # the guard wraps CORS answers too
    refused = httpx.options(f"{api}/api/runs", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    token = sign_token(SECRET, "alice@omero", [51])
    simple = httpx.get(f"{api}/api/whoami", headers={"Origin": ORIGIN, **bearer(token)})
    assert simple.headers["access-control-allow-origin"] == ORIGIN


def test_without_the_secret_a_server_accepts_no_signed_token(tmp_path: Path) -> None:
    server = execution_server(tmp_path)
    tokens = TokenStore(tmp_path / "tokens.sqlite")
    http = HttpServer(create_app(server.service, tokens, tmp_path / "no-page"), port=0)
    http.start()
    try:
        token = sign_token(SECRET, "alice@omero", [51])
        assert httpx.get(f"{http.url}/api/whoami", headers=bearer(token)).status_code == 401
        answer = httpx.options(
            f"{http.url}/api/runs", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in answer.headers
    finally:
        http.stop()
        tokens.close()
        server.store.close()
