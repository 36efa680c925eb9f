"""The OMERO.web app (``openhcs_rules_omeroweb``) under Django's test client, against the OMERO stand-in.

How Django is set up: omero-web's own settings (``DJANGO_SETTINGS_MODULE=omeroweb.settings``) read
``$OMERODIR/etc/grid/config.xml``; the module fixture writes one in a temporary OMERODIR with omero-py's
``ConfigXml`` (what ``omero config set`` writes), enabling the app the way an administrator does
(``omero.web.apps``, ``omero.web.ui.right_plugins``, ``omero.web.openhcs.*``). So the app is installed, its
settings processed and its URLs mounted under ``/openhcs/`` by omero-web's own code. Two Django settings go
through ``omero.web.django_additional_settings``: ``LOGGING_CONFIG`` None (omero-web's logging would
reconfigure the whole test process) and ``SESSION_FILE_PATH`` (sessions in the temporary folder). Django
is set up once per test process; tests that change a setting of the app patch its settings module.

The one seam: ``omeroweb.decorators.login_required.get_connection``, which in OMERO.web joins the OMERO
session named by the browser's Django session, is patched to return a stand-in gateway logged in as a
stand-in user (or None: nobody is logged in). Everything after it is omero-web's decorator and the app's
views as they run in OMERO.web. The stand-in's gateway implements what ``openhcs_rules.omero`` calls; the
few BlitzGateway calls that OMERO.web and the app make besides (``SERVICE_OPTS`` as a ServiceOptsDict,
``getUser``, ``getObject("Plate", id)``, ``canCreate``, ``getClientSettings``, ``getEmailSettings``) are
added by :class:`WebGateway` here, answered from the stand-in's state through its query service (so a plate
the stand-in does not hold is None, as ``BlitzGateway.getObject`` returns). The stand-in has no groups or
permissions: "a plate this user cannot read" is tested as a plate that does not exist.

Last, end to end: an execution server's HTTP API in this process, sharing the app's secret, takes the
token the app's view signed (whoami, a refused foreign plate, an accepted submission for the plate).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("omero", reason="omero-py not installed: pip install '.[omero]'")
pytest.importorskip("omeroweb", reason="omero-web not installed: pip install '.[omeroweb]'")

import httpx  # noqa: E402
import omero.gateway  # noqa: E402
import omero.model  # noqa: E402
import omero.sys  # noqa: E402
from omero.rtypes import rlong, rstring  # noqa: E402

from openhcs_rules.execution.signed_tokens import create_secret, load_secret, verify_token  # noqa: E402
from openhcs_rules.omero.queries import PLATE_BY_ID  # noqa: E402
from openhcs_rules_testkit.browser import chromium  # noqa: E402
from openhcs_rules_testkit.omero_standin import StandInServer  # noqa: E402
from openhcs_rules_testkit.omero_standin.data import STANDIN_PASSWORD, random_fields  # noqa: E402
from openhcs_rules_testkit.omero_standin.gateway import StandInGateway  # noqa: E402
from openhcs_rules_testkit.paths import REPO  # noqa: E402

APP = "openhcs_rules_omeroweb"
PLUGIN = f"{APP}/webclient_plugins/right_plugin.openhcs.js.html"
SERVER_URL = "http://127.0.0.1:7780"
OMERO_ORIGIN = "https://omero.example.org"
STATIC = REPO / APP / "static" / APP


# -- Django with omero-web's settings, once per process --------------------------------------------------------
@dataclass
class Site:
    omerodir: Path
    secret_file: Path


_SITE: Site | None = None


def _write_omero_config(omerodir: Path, secret_file: Path) -> None:
    from omero.config import ConfigXml

    grid = omerodir / "etc" / "grid"
    grid.mkdir(parents=True)
    (omerodir / "var" / "sessions").mkdir(parents=True)
    config = ConfigXml(str(grid / "config.xml"))
    try:
        config["omero.web.apps"] = json.dumps([APP])
        config["omero.web.ui.right_plugins"] = json.dumps([["OpenHCS", PLUGIN, "openhcs_tab"]])
        config["omero.web.openhcs.server_url"] = SERVER_URL
        config["omero.web.openhcs.secret_file"] = str(secret_file)
        config["omero.web.openhcs.token_ttl_s"] = "600"
        config["omero.web.django_additional_settings"] = json.dumps(
            [["LOGGING_CONFIG", None], ["SESSION_FILE_PATH", str(omerodir / "var" / "sessions")]]
        )
    finally:
        config.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Django set up with omero-web's settings and this app enabled through ``omero.web.apps``."""
    global _SITE
    import django
    from django.conf import settings
    from django.test.utils import setup_test_environment

    if _SITE is None:
        if settings.configured:
            pytest.skip("Django was set up by something else in this process")
        omerodir = tmp_path_factory.mktemp("omerodir")
        secret_file = create_secret(omerodir / "openhcs.secret")
        _write_omero_config(omerodir, secret_file)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("OMERODIR", str(omerodir))
            patch.setenv("DJANGO_SETTINGS_MODULE", "omeroweb.settings")
            django.setup()
            setup_test_environment()
        _SITE = Site(omerodir, secret_file)
    yield _SITE


class WebGateway(StandInGateway):
    """The stand-in gateway plus the BlitzGateway calls OMERO.web's ``login_required`` and the app make."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.SERVICE_OPTS = omero.gateway.ServiceOptsDict()  # BlitzGateway's: setOmeroGroup, setOmeroShare

    def getUser(self) -> Any:  # noqa: N802 (omero-py's name)
        self._check("getEventContext")
        user = omero.model.ExperimenterI(1, True)
        user.setOmeName(rstring(self._username))
        return omero.gateway.ExperimenterWrapper(self, user)

    def getObject(self, obj_type: str, oid: int | None = None, **_: Any) -> Any:  # noqa: N802
        assert obj_type == "Plate", f"the app asked for a {obj_type}"
        params = omero.sys.ParametersI()
        params.add("pid", rlong(int(oid or 0)))
        plate = self.getQueryService().findByQuery(PLATE_BY_ID, params, self.SERVICE_OPTS)
        return None if plate is None else omero.gateway.PlateWrapper(self, plate)

    def canCreate(self) -> bool:  # noqa: N802
        return True

    def getClientSettings(self) -> dict[str, str]:  # noqa: N802
        return {}

    def getEmailSettings(self) -> bool:  # noqa: N802
        return False


@dataclass
class Omero:
    server: StandInServer
    plate_id: int
    connections: list[WebGateway]

    def log_in(self, monkeypatch: pytest.MonkeyPatch, user: str | None) -> None:
        """Every request is from ``user`` (None: from nobody logged in) -- the one seam, see the docstring."""
        from omeroweb.decorators import login_required

        def get_connection(decorator: Any, server_id: Any, request: Any) -> WebGateway | None:
            if user is None:
                return None
            gateway = WebGateway(username=user, passwd=STANDIN_PASSWORD, host="localhost", port=4064)
            assert gateway.connect()
            self.connections.append(gateway)
            return gateway

        monkeypatch.setattr(login_required, "get_connection", get_connection)


@pytest.fixture
def omero_web(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Omero:
    """A stand-in OMERO with users alice and bob and one plate; requests come from alice."""
    server = StandInServer.create(tmp_path / "omero", users={"alice": STANDIN_PASSWORD, "bob": STANDIN_PASSWORD})
    for key, value in server.environ().items():
        monkeypatch.setenv(key, value)
    plate = server.import_plate("Screen 7 plate 1", 8, 12, random_fields(["B02"], 1, (1, 1, 1, 4, 4)))
    found = Omero(server, plate.plate_id, [])
    found.log_in(monkeypatch, "alice")
    return found


@pytest.fixture
def client(site: Site) -> Any:
    from django.test import Client

    return Client()


def app_settings(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    """Change the app's settings for one test (OMERO.web reads them once, at start)."""
    from openhcs_rules_omeroweb import settings as module

    for name, value in values.items():
        monkeypatch.setattr(module, name, value)


# -- the app in OMERO.web ---------------------------------------------------------------------------------------
def test_the_app_is_enabled_through_omero_config(site: Site) -> None:
    from django.conf import settings
    from django.contrib.staticfiles import finders
    from django.urls import reverse

    from openhcs_rules_omeroweb import settings as module

    assert APP in settings.INSTALLED_APPS
    assert [label for label, _, _ in settings.RIGHT_PLUGINS] == ["OpenHCS"]
    assert (module.OPENHCS_SERVER_URL, module.OPENHCS_SECRET_FILE) == (SERVER_URL, str(site.secret_file))
    assert module.OPENHCS_TOKEN_TTL_S == "600"
    assert reverse("openhcs_plate_panel", args=[7]) == "/openhcs/plate/7/panel/"
    assert reverse("openhcs_plate_token", args=[7]) == "/openhcs/plate/7/token/"
    for name in ("panel.js", "panel.css"):
        assert finders.find(f"{APP}/{name}"), name


def test_the_right_hand_plugin_loads_the_panel_of_a_selected_plate(site: Site) -> None:
    from django.template.loader import render_to_string

    html = render_to_string(PLUGIN, {"rt": {"plugin_id": "openhcs_tab"}, "forloop": {"counter": 3}})
    assert '$("#openhcs_tab").omeroweb_right_plugin(' in html
    assert "plugin_index: 3," in html
    assert 'supported_obj_types: ["plate"]' in html
    assert '"/openhcs/plate/1/panel/"' in html  # the script puts the selected plate's id in place of 1
    assert f"/static/{APP}/panel.js" in html and f"/static/{APP}/panel.css" in html


def test_panel_of_a_readable_plate(omero_web: Omero, client: Any) -> None:
    answer = client.get(f"/openhcs/plate/{omero_web.plate_id}/panel/")
    assert answer.status_code == 200, answer.content[:500]
    html = answer.content.decode()
    assert f'data-server-url="{SERVER_URL}"' in html
    assert f'data-token-url="/openhcs/plate/{omero_web.plate_id}/token/"' in html
    assert f'data-plate-key="omero_{omero_web.plate_id}"' in html
    assert "Screen 7 plate 1" in html
    assert f"omero_{omero_web.plate_id}:\n    source: omero\n    plate_id: {omero_web.plate_id}\n" in html
    assert 'data-role="problem"' not in html
    assert "ohcs1." not in html  # the token is fetched by the script, never written into the page
    assert "no-store" in answer["Cache-Control"]
    assert all(not gateway.isConnected() for gateway in omero_web.connections)  # login_required closed them

    page = client.get(f"/openhcs/plate/{omero_web.plate_id}/")
    assert page.status_code == 200
    assert f'src="/static/{APP}/panel.js"' in page.content.decode()
    assert "data-autostart" in page.content.decode()


def test_a_plate_that_cannot_be_read_is_not_found(omero_web: Omero, client: Any) -> None:
    missing = omero_web.plate_id + 1000
    for path in (f"/openhcs/plate/{missing}/panel/", f"/openhcs/plate/{missing}/token/", "/openhcs/plate/0/token/"):
        assert client.get(path).status_code == 404, path


def test_the_token_names_the_user_and_only_that_plate(
    omero_web: Omero, client: Any, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_settings(monkeypatch, OPENHCS_TOKEN_TTL_S="120")
    before = time.time()
    answer = client.get(f"/openhcs/plate/{omero_web.plate_id}/token/", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert answer.status_code == 200, answer.content
    assert "no-store" in answer["Cache-Control"]
    data = answer.json()
    assert set(data) == {"token", "expires", "ttl_s", "user", "plates"}
    claims = verify_token(load_secret(site.secret_file), data["token"])
    assert claims is not None
    assert claims.user == data["user"] == "alice@omero"
    assert claims.omero_plates == frozenset({omero_web.plate_id}) and data["plates"] == [omero_web.plate_id]
    assert claims.expires == data["expires"] and data["ttl_s"] == 120
    assert before < claims.expires <= time.time() + 120
    assert verify_token(b"another-secret-0123456789abcdef0123", data["token"]) is None

    omero_web.log_in(monkeypatch, "bob")
    bobs = client.get(f"/openhcs/plate/{omero_web.plate_id}/token/").json()
    assert verify_token(load_secret(site.secret_file), bobs["token"]).user == "bob@omero"  # type: ignore[union-attr]


def test_nobody_logged_in_is_not_served(omero_web: Omero, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    omero_web.log_in(monkeypatch, None)
    panel = client.get(f"/openhcs/plate/{omero_web.plate_id}/panel/")
    assert panel.status_code == 302 and "/login/" in panel["Location"]
    token = client.get(f"/openhcs/plate/{omero_web.plate_id}/token/", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert token.status_code == 403 and b"ohcs1." not in token.content
    assert client.get(f"/openhcs/plate/{omero_web.plate_id}/token/").status_code == 302


def test_only_get_is_answered(omero_web: Omero, client: Any) -> None:
    assert client.post(f"/openhcs/plate/{omero_web.plate_id}/token/").status_code == 405


@pytest.mark.parametrize(
    ("values", "setting", "says"),
    [
        ({"OPENHCS_SECRET_FILE": "{missing}"}, "omero.web.openhcs.secret_file", "cannot be read"),
        ({"OPENHCS_SECRET_FILE": ""}, "omero.web.openhcs.secret_file", "no signing secret is configured"),
        ({"OPENHCS_SECRET_FILE": "{world_readable}"}, "omero.web.openhcs.secret_file", "readable by every user"),
        ({"OPENHCS_SERVER_URL": ""}, "omero.web.openhcs.server_url", "no execution server is configured"),
        ({"OPENHCS_SERVER_URL": "javascript:alert(1)"}, "omero.web.openhcs.server_url", "not an http(s) address"),
        ({"OPENHCS_TOKEN_TTL_S": "a week"}, "omero.web.openhcs.token_ttl_s", "number of seconds"),
        ({"OPENHCS_TOKEN_TTL_S": "86400"}, "omero.web.openhcs.token_ttl_s", "at most 3600"),
    ],
)
def test_a_misconfigured_app_says_which_setting(
    omero_web: Omero,
    client: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, str],
    setting: str,
    says: str,
) -> None:
    world_readable = tmp_path / "shared.secret"
    world_readable.write_text("ab" * 32)
    world_readable.chmod(0o644)
    paths = {"missing": str(tmp_path / "nowhere.secret"), "world_readable": str(world_readable)}
    app_settings(monkeypatch, **{name: value.format(**paths) for name, value in values.items()})

    panel = client.get(f"/openhcs/plate/{omero_web.plate_id}/panel/")
    assert panel.status_code == 200
    html = panel.content.decode()
    assert f'data-setting="{setting}"' in html and f"<code>{setting}</code>" in html
    assert says in html.replace("&#x27;", "'")
    assert "data-server-url" not in html  # the script stays idle: nothing to reach

    token = client.get(f"/openhcs/plate/{omero_web.plate_id}/token/", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert token.status_code == 503
    assert token.json()["code"] == "not_configured" and token.json()["setting"] == setting
    assert "token" not in token.json()


def test_an_omero_name_the_server_cannot_take_is_said(
    omero_web: Omero, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = omero_web.server.db()
    db.execute("INSERT INTO users VALUES ('carol smith', ?)", (STANDIN_PASSWORD,))
    db.close()
    omero_web.log_in(monkeypatch, "carol smith")
    panel = client.get(f"/openhcs/plate/{omero_web.plate_id}/panel/").content.decode()
    assert 'data-role="problem"' in panel and "cannot be an execution-server user" in panel
    token = client.get(f"/openhcs/plate/{omero_web.plate_id}/token/", HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert token.status_code == 403 and token.json()["code"] == "bad_user"


def test_the_panel_script_writes_text_only() -> None:
    lines = (STATIC / "panel.js").read_text().splitlines()
    script = "\n".join(line for line in lines if not line.strip().startswith("//"))  # code, not its comments
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    assert "localStorage" not in script and "sessionStorage" not in script  # the token lives in memory only
    node = shutil.which("node")
    if node is not None:
        checked = subprocess.run([node, "--check", str(STATIC / "panel.js")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


# -- end to end: the app's token at an execution server ---------------------------------------------------------
@dataclass
class ExecutionApi:
    url: str
    service: Any  # the RunService behind it


@contextlib.contextmanager
def execution_api_for(
    site: Site, root: Path, monkeypatch: pytest.MonkeyPatch, origins: list[str]
) -> Iterator[ExecutionApi]:
    """An execution server's HTTP API (no supervisor running: runs stay queued) that trusts the app's secret,
    has an OMERO block and answers ``origins`` cross-origin; the app pointed at it."""
    from openhcs_rules.execution.http_api import HttpServer, create_app
    from openhcs_rules.execution.runner import RunSupervisor
    from openhcs_rules.execution.service import RunService
    from openhcs_rules.execution.store import RunStore
    from openhcs_rules.execution.submission import ServerPolicy
    from openhcs_rules.execution.tokens import TokenStore

    if "signing_secret" not in inspect.signature(create_app).parameters:
        pytest.skip("this execution server does not take signed tokens yet")
    omero_block = {"host": "localhost", "port": 4064, "user": "root", "password_env": "OMERO_PASSWORD"}
    policy = ServerPolicy(runs_root=root / "runs", pipeline_library=REPO / "config" / "pipelines", omero=omero_block)
    store = RunStore(root / "runs.sqlite")
    service = RunService(policy, store, RunSupervisor(store), lambda user: False)
    tokens = TokenStore(root / "tokens.sqlite")
    secret = load_secret(site.secret_file)
    http = HttpServer(
        create_app(service, tokens, root / "no-page", signing_secret=secret, cors_origins=origins), port=0
    )
    http.start()
    app_settings(monkeypatch, OPENHCS_SERVER_URL=http.url + "/")
    try:
        yield ExecutionApi(http.url, service)
    finally:
        http.stop()
        tokens.close()
        store.close()


@pytest.fixture
def execution_api(site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with execution_api_for(site, tmp_path, monkeypatch, [OMERO_ORIGIN]) as api:
        yield api.url


def test_the_apps_token_works_at_the_execution_server(omero_web: Omero, client: Any, execution_api: str) -> None:
    plate_id = omero_web.plate_id
    panel = client.get(f"/openhcs/plate/{plate_id}/panel/").content.decode()
    assert f'data-server-url="{execution_api}"' in panel  # the trailing slash of the setting dropped
    token = client.get(f"/openhcs/plate/{plate_id}/token/", HTTP_X_REQUESTED_WITH="XMLHttpRequest").json()["token"]

    with httpx.Client(base_url=execution_api, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
        assert api.get("/api/whoami").json() == {"user": "alice@omero", "operator": False}
        pipelines = api.get("/api/pipelines").json()["pipelines"]
        assert pipelines

        foreign = plate_id + 1
        assert "nuclei_count" in pipelines
        refused = api.post("/api/runs", json={"config": _screen(foreign), "pipeline_name": "nuclei_count"})
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", refused.text

        accepted = api.post("/api/runs", json={"config": _screen(plate_id), "pipeline_name": "nuclei_count"})
        assert accepted.status_code == 201, accepted.text
        run = accepted.json()
        assert run["owner"] == "alice@omero" and run["plates"] == [f"omero_{plate_id}"]
        # the panel's list: the user's runs whose plates name this plate
        listed = api.get("/api/runs").json()["runs"]
        assert [r["run_id"] for r in listed if f"omero_{plate_id}" in r["plates"]] == [run["run_id"]]
        cancelled = api.post(f"/api/runs/{run['run_id']}/cancel", json={"mode": "drain"})
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"

    # the browser's preflight from OMERO.web's origin, as the panel's cross-origin POST sends it
    preflight = httpx.options(
        f"{execution_api}/api/runs",
        headers={
            "Origin": OMERO_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == OMERO_ORIGIN


def _screen(plate_id: int) -> str:
    """The config the panel's form starts from (views.screen_config)."""
    from openhcs_rules_omeroweb.views import screen_config

    return screen_config(plate_id)


# -- the panel's script in a real browser ------------------------------------------------------------------------
UI_TIMEOUT_MS = 20_000


@contextlib.contextmanager
def omero_web_served(pages: dict[str, str] | None = None) -> Iterator[str]:
    """The Django site (omero-web's settings, this app, its static files) over HTTP on a free loopback port,
    as runserver serves it, plus ``pages`` (path: HTML) of the test's own; yields its origin."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            pass

    django_app = StaticFilesHandler(WSGIHandler())
    own = dict(pages or {})

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        page = own.get(environ.get("PATH_INFO", ""))
        if page is None:
            return django_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [page.encode()]

    httpd = ThreadedWSGIServer(("127.0.0.1", 0), Quiet)
    httpd.set_app(app)
    thread = threading.Thread(target=httpd.serve_forever, name="omero-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@contextlib.contextmanager
def chromium_page() -> Iterator[tuple[Any, list[str], list[str]]]:
    """A page of headless Chromium, the URLs it requested and its script errors; skips without a browser."""
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 900, "height": 1000})
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        requested: list[str] = []
        errors: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        yield page, requested, errors
        context.close()


def submit(role: Any) -> str:
    """Press the panel's Submit; the new run's id."""
    before = role("submit-status").text_content()
    role("submit-button").click()
    status = role("submit-status").filter(has_text="Submitted: run ")
    status.wait_for()
    if before == status.text_content():  # the previous run's line: wait for the new one
        role("submit-status").filter(has_not_text=before).filter(has_text="Submitted: run ").wait_for()
    return (role("submit-status").text_content() or "").removeprefix("Submitted: run ")


@pytest.mark.web
def test_the_panel_in_a_browser(omero_web: Omero, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The panel's page on OMERO.web's origin, its script calling the execution server on another origin
    (CORS) with the tokens it fetches: lists, submits, shows refusals, cancels, renews its token."""
    plate_id = omero_web.plate_id
    app_settings(monkeypatch, OPENHCS_TOKEN_TTL_S="8")  # renewed about every 3 s
    with (
        chromium_page() as (page, requested, errors),
        omero_web_served() as origin,
        execution_api_for(site, tmp_path, monkeypatch, [origin]) as api,
    ):
        # a run of alice's on another plate (submitted past the token's scope): not this panel's
        other = api.service.submit("alice@omero", _screen(plate_id + 1), pipeline_name="nuclei_count")
        page.goto(f"{origin}/openhcs/plate/{plate_id}/")
        panel = page.locator("[data-openhcs-panel]")
        role = lambda name: panel.locator(f'[data-role="{name}"]')  # noqa: E731
        role("who").filter(has_text="as alice@omero").wait_for()
        assert role("server-link").text_content() == api.url
        role("pipeline-name").locator("option[value='nuclei_count']").wait_for(state="attached")
        assert role("pipeline-name").locator("option").all_text_contents() == ["cell_profile", "nuclei_count"]
        assert role("pipeline-name").input_value() == "nuclei_count"  # the standard pipeline preselected

        run_id = submit(role)
        row = role("runs").locator(f'tr[data-run-id="{run_id}"]')
        row.locator("text=queued").wait_for()
        assert role("runs").locator("tr").count() == 1, "a run of another plate is listed"
        assert other["run_id"] not in (role("runs").text_content() or "")
        assert role("detail").is_visible() and role("run-id").text_content() == run_id

        # the run starts and its wells go by (the store written as the supervisor and the jobs would): the
        # panel follows them on the run's event stream
        store = api.service.store
        key = f"omero_{plate_id}"
        store.update(run_id, state="running")
        store.append_events(
            run_id,
            [
                ("well_started", {"plate": key, "well": "B02"}, None),
                ("well_finished", {"plate": key, "well": "B02", "objects": 7}, None),
                ("well_started", {"plate": key, "well": "C03"}, None),
            ],
        )
        role("plate-map").locator('[data-well="C03"][data-state="running"]').wait_for()
        assert role("plate-map").locator('[data-well="B02"]').get_attribute("data-state") == "done"
        assert "B02: done, 7 objects" in (role("plate-map").locator('[data-well="B02"]').get_attribute("title") or "")
        role("run-progress").filter(has_text="1 of 2 wells done, 1 running").wait_for()
        store.append_events(run_id, [("well_finished", {"plate": key, "well": "C03", "objects": 3}, None)])
        store.update(run_id, state="succeeded", exit_code=0)
        role("run-state").filter(has_text="succeeded").wait_for()
        role("run-progress").filter(has_text="2 of 2 wells done").wait_for()
        row.locator("text=succeeded").wait_for()
        assert row.locator("button").count() == 0  # nothing to cancel
        page.set_viewport_size({"width": 380, "height": 900})  # about the webclient's right-hand column
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        page.set_viewport_size({"width": 900, "height": 1000})

        # a second run, cancelled while queued
        second = submit(role)
        cancel_row = role("runs").locator(f'tr[data-run-id="{second}"]')
        cancel_row.locator("button:has-text('Cancel')").click()
        role("runs").locator(f'tr[data-run-id="{second}"][data-state="cancelled"]').wait_for()
        assert api.service.run("alice@omero", second)["state"] == "cancelled"
        assert role("runs").locator("tr").count() == 2

        # another plate than the token's: the server's refusal, shown
        panel.locator("summary").click()
        role("config-text").fill(_screen(plate_id + 1))
        role("submit-button").click()
        role("submit-error").wait_for()
        assert role("submit-error-title").text_content() == "The server does not let this token submit that"
        assert "not one your token allows" in (role("submit-error-text").text_content() or "")

        # a bad pasted pipeline: the server's error with the line it names
        role("config-text").fill(_screen(plate_id))
        role("src-text").check()
        role("pipeline-text").fill('"""Mine."""\nimport os\n')
        role("submit-button").click()
        role("submit-error-context").filter(has_text="pipeline line 2: import os").wait_for()
        assert role("submit-error-title").text_content() == "The server refused the submission"
        page.screenshot(path=str(tmp_path / "panel.png"), full_page=True)

        # the token is renewed before it expires, and never travels in an address
        page.wait_for_timeout(4000)
        token_url = f"{origin}/openhcs/plate/{plate_id}/token/"
        assert requested.count(token_url) >= 2, requested
        assert not [url for url in requested if "ohcs1." in url]
        role("who").filter(has_text="as alice@omero").wait_for()
        assert role("notice").is_hidden(), role("notice-text").text_content()
    # the refusals above are answered 403/422, which the browser logs as failed loads; nothing else
    assert not [error for error in errors if "Failed to load resource" not in error], errors


#: the webclient's right-hand tabs, reduced to what its plugins need: jQuery, jQuery UI tabs and omero-web's
#: own ``omeroweb_right_plugin`` (ome.popup.js), the "General" tab and one plugin tab, rendered as the
#: webclient renders each plugin's include (inside its loop: ``rt``, ``forloop``)
WEBCLIENT_TABS = """<!doctype html><html><head><meta charset="utf-8"><title>webclient tabs</title>
<script src="/static/3rdparty/jquery-3.6.2.min.js"></script>
<script src="/static/3rdparty/jquery-ui-1.13.2/js/jquery-ui.js"></script>
<script src="/static/webgateway/js/ome.popup.js"></script>
</head><body>
<div id="annotation_tabs">
<ul><li><a href="#metadata_general">General</a></li><li><a href="#openhcs_tab">OpenHCS</a></li></ul>
<div id="metadata_general"></div><div id="openhcs_tab"></div></div>
%(plugin)s
<script>$(function () { $("#annotation_tabs").tabs({active: 1}); window.tabsReady = true; });</script>
</body></html>"""


def select_in_tree(page: Any, obj_id: str) -> None:
    """What the webclient's tree does on a click: the selection in body's data, then selection_change.ome."""
    script = (
        '(id) => { $("body").data("selected_objects.ome", [{id: id}]); $("body").trigger("selection_change.ome"); }'
    )
    page.evaluate(script, obj_id)


@pytest.mark.web
def test_the_webclient_tab_loads_the_panel_of_a_selected_plate(
    omero_web: Omero, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The right-hand plugin's include, run by omero-web's own plugin code (ome.popup.js, jQuery, jQuery UI):
    selecting the plate loads and starts the panel; selecting something else empties the tab and the panel
    stops talking to the execution server."""
    from django.template.loader import render_to_string

    plate_id = omero_web.plate_id
    plugin = render_to_string(PLUGIN, {"rt": {"plugin_id": "openhcs_tab"}, "forloop": {"counter": 1}})
    # served from OMERO.web's origin (Chromium lets only a loopback page call the loopback execution server)
    with (
        chromium_page() as (page, requested, errors),
        omero_web_served({"/webclient-tabs/": WEBCLIENT_TABS % {"plugin": plugin}}) as origin,
        execution_api_for(site, tmp_path, monkeypatch, [origin]) as api,
    ):
        page.goto(f"{origin}/webclient-tabs/")
        page.wait_for_function("window.tabsReady === true")
        tab = page.locator("#openhcs_tab")

        select_in_tree(page, f"plate-{plate_id}")
        tab.locator('[data-openhcs-panel] [data-role="who"]').filter(has_text="as alice@omero").wait_for()
        assert tab.locator("[data-openhcs-panel]").get_attribute("data-plate-key") == f"omero_{plate_id}"

        select_in_tree(page, "image-5")  # not a plate: the tab is emptied and disabled
        page.wait_for_function("document.querySelector('#openhcs_tab').childElementCount === 0")
        page.wait_for_timeout(500)
        calls = len([url for url in requested if url.startswith(api.url)])
        page.wait_for_timeout(4000)  # more than the panel's polling period
        assert len([url for url in requested if url.startswith(api.url)]) == calls, "the emptied panel still polls"

        select_in_tree(page, f"plate-{plate_id + 1000}")  # a plate this user cannot read
        tab.locator("text=This plate cannot be read.").wait_for()
        select_in_tree(page, f"plate-{plate_id}")
        tab.locator('[data-role="who"]').filter(has_text="as alice@omero").wait_for()
    assert not [error for error in errors if "Failed to load resource" not in error], errors


def test_omerodir_is_not_left_in_the_environment(site: Site) -> None:
    assert os.environ.get("OMERODIR") != str(site.omerodir)
