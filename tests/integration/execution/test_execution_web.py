"""The execution server's web page in a real headless Chromium, against the real HTTP API and real runs.

One execution server (tiny synthetic screens, real Snakemake), one HTTP server serving the page, and one
browser per module. The page is driven as a person would: the token arrives in the address's fragment, a
screen is submitted through the form, its plate map fills in from the event stream, a result is
downloaded, a bad pipeline's error is shown with its line, a longer run is cancelled and resumed.

Screenshots (1280 x 900, full page) land in the test's tmp folder; the finished run's also in
docs/images/execution-page.png, the picture docs/execution.md shows.

Needs Debian's ``chromium`` (/usr/bin/chromium) and the ``playwright`` Python package (its own browser
downloads are not used); skipped with the reason when either is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openhcs_rules.execution import http_api
from openhcs_rules.execution.states import RunState
from openhcs_rules.execution.tokens import TokenStore
from openhcs_rules_testkit.browser import CHROMIUM, chromium
from openhcs_rules_testkit.execution import execution_server, tiny_screen
from openhcs_rules_testkit.paths import REPO

if not CHROMIUM.exists():
    pytest.skip(
        "the web page tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the web page tests need the playwright package (pip install playwright)"
)

pytestmark = [pytest.mark.workflow, pytest.mark.web]

PAGE_DIR = REPO / "openhcs_rules" / "execution" / "web"
DOCS_SCREENSHOT = REPO / "docs" / "images" / "execution-page.png"
#: set to refresh docs/images/execution-page.png from the finished-run screenshot (a plain test run leaves the
#: checkout as it found it; CI's checkout too)
UPDATE_DOCS_ENV = "OPENHCS_UPDATE_DOCS_SCREENSHOT"
VIEWPORT = {"width": 1280, "height": 900}
#: a run of the tiny screen takes seconds; generous for a loaded CI machine
RUN_TIMEOUT_MS = 240_000
UI_TIMEOUT_MS = 20_000
USER, OPERATOR = "alice", "facility"


class Served:
    """The execution server, its HTTP API with the page, and the tokens of a user and an operator."""

    def __init__(self, root: Path) -> None:
        self.execution = execution_server(root, operators=(OPERATOR,))
        self.tokens = TokenStore(root / "tokens.sqlite")
        self.token = self.tokens.issue(USER)
        self.operator_token = self.tokens.issue(OPERATOR)
        app = http_api.create_app(self.execution.service, self.tokens, PAGE_DIR)
        self.http = http_api.HttpServer(app, "127.0.0.1", 0)  # port 0: a free one, known once started
        self.url = ""

    def start(self) -> None:
        self.execution.start()
        self.http.start()
        self.url = self.http.url

    def stop(self) -> None:
        self.http.stop()
        self.execution.stop()
        self.tokens.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("execution-web"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as started:
        yield started


@pytest.fixture
def page(browser) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    # a failed request the test provoked logs a console error; a script error never belongs here
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def open_page(page: Any, served: Served, token: str | None = None) -> None:
    page.goto(f"{served.url}/#token={token or served.token}")
    page.locator("#who-user").wait_for(state="visible")


def submit_form(page: Any, config: str, pipeline: str | None = None, pipeline_name: str = "nuclei_count") -> str:
    """Fill the form and submit; the new run's id, once the page has selected it."""
    page.fill("#config-text", config)
    if pipeline is None:
        page.check("#src-library")
        page.select_option("#pipeline-name", pipeline_name)
    else:
        page.check("#src-text")
        page.fill("#pipeline-text", pipeline)
    page.click("#submit-button")
    page.wait_for_function("document.querySelector('#run-id').textContent.length > 0")
    page.wait_for_selector("#submit-status:has-text('Submitted')")
    return page.text_content("#run-id")


def wells(page: Any) -> list[dict[str, Any]]:
    return page.eval_on_selector_all(
        "#plates td.well[data-state]:not([data-state=none])",
        """cells => cells.map(c => ({well: c.dataset.well, state: c.dataset.state,
            objects: c.dataset.objects === undefined ? null : Number(c.dataset.objects),
            colour: getComputedStyle(c).backgroundColor, title: c.title}))""",
    )


def wait_for_wells(page: Any, count: int, state: str, timeout: int = RUN_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "([n, s]) => document.querySelectorAll(`#plates td.well[data-state=${s}]`).length >= n",
        arg=[count, state],
        timeout=timeout,
    )


def wait_for_state(page: Any, run_state: str, timeout: int = RUN_TIMEOUT_MS) -> None:
    page.wait_for_function(
        "s => document.querySelector('#run-state').textContent === s", arg=run_state, timeout=timeout
    )


def screenshot(page: Any, folder: Path, name: str) -> Path:
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    return path


# -- the tests --------------------------------------------------------------------------------------------
def test_a_page_without_a_token_asks_for_one_and_the_token_leaves_the_address(served, page):
    page.goto(served.url + "/")
    page.locator("#token-panel").wait_for(state="visible")
    assert page.locator("#app").is_hidden()
    page.fill("#token-input", "not-a-token")
    page.click("#token-panel button[type=submit]")
    page.locator("#token-refused").wait_for(state="visible")  # the server refused it, the page says so
    page.fill("#token-input", served.token)
    page.click("#token-panel button[type=submit]")
    page.locator("#app").wait_for(state="visible")
    assert page.text_content("#who-user") == USER and page.locator("#who-operator").is_hidden()

    # the address printed by `serve`: the token is taken from the fragment and leaves the address bar
    fresh = page.context.new_page()
    fresh.goto(f"{served.url}/#token={served.operator_token}")
    fresh.locator("#who-user").wait_for(state="visible")
    assert "token" not in fresh.url and fresh.url.rstrip("/") == served.url
    assert fresh.evaluate("sessionStorage.getItem('openhcs-execution-token')") == served.operator_token
    assert fresh.text_content("#who-user") == OPERATOR and fresh.locator("#who-operator").is_visible()
    assert fresh.locator("#all-runs-label").is_visible()
    # ... and a reload keeps the session's token
    fresh.reload()
    fresh.locator("#who-user").wait_for(state="visible")
    assert fresh.text_content("#who-user") == OPERATOR


def test_a_submitted_screen_fills_its_plate_map_and_its_results_download(served, page, tmp_path):
    open_page(page, served)
    config = tmp_path / "screen.yaml"
    config.write_text(tiny_screen(seed=11, wells=["B02", "B03", "B04", "C02", "C03"]))
    page.set_input_files("#config-file", str(config))  # the file picker loads the YAML into the form
    page.wait_for_function("document.querySelector('#config-text').value.includes('synthetic')")
    page.check("#src-library")
    assert page.eval_on_selector_all("#pipeline-name option", "os => os.map(o => o.value)") == [
        "cell_profile",
        "nuclei_count",
    ]
    assert page.input_value("#pipeline-name") == "nuclei_count"  # the standard pipeline preselected
    page.click("#submit-button")
    page.wait_for_selector("#submit-status:has-text('Submitted')")
    run_id = page.text_content("#run-id")
    assert page.locator(f"#runs-body tr[data-run-id='{run_id}'].selected").count() == 1

    wait_for_wells(page, 5, "done")
    wait_for_state(page, "succeeded")
    cells = {cell["well"]: cell for cell in wells(page) if cell["state"] != "pending"}
    assert sorted(cells) == ["B02", "B03", "B04", "C02", "C03"]
    assert all(cell["state"] == "done" and cell["objects"] is not None for cell in cells.values())
    # the grid spans the plate's rows and columns (B..C x 2..4 at least); wells not in the screen are drawn too
    assert page.locator("#plates td.well").count() >= 6
    # done wells are coloured by their object count: different counts, different colours
    by_count: dict[int, set[str]] = {}
    for cell in cells.values():
        by_count.setdefault(cell["objects"], set()).add(cell["colour"])
    assert all(len(colours) == 1 for colours in by_count.values())
    if len(by_count) > 1:
        assert len({next(iter(c)) for c in by_count.values()}) == len(by_count), by_count
    assert "objects" in cells["B02"]["title"] and "B02" in cells["B02"]["title"]
    assert page.text_content("#plate-legend").count("objects") == 1
    # the progress line: every job and every well done (drawn on the next frame after the last events)
    page.wait_for_function(
        "() => /jobs (\\d+) \\/ \\1 .*wells 5 \\/ 5 done, 0 failed/"
        ".test(document.querySelector('#run-progress').textContent)"
    )

    row = page.locator(f"#runs-body tr[data-run-id='{run_id}']")
    row.locator(".badge:has-text('succeeded')").wait_for()
    assert row.locator("td").nth(7).text_content() == "0"  # exit code
    page.wait_for_function(  # the end time comes with the table's next refresh
        "id => document.querySelector(`#runs-body tr[data-run-id='${id}'] td:nth-child(7)`).textContent !== ''",
        arg=run_id,
    )

    # results: listed with download links; a download brings the file's bytes through the API
    link = page.locator("#results button[data-path='results/tiny/wells.csv']")
    link.wait_for()
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.suggested_filename == "wells.csv"
    folder = Path(served.execution.service.run(USER, run_id)["folder"])
    assert Path(download.path()).read_bytes() == (folder / "results" / "tiny" / "wells.csv").read_bytes()
    assert page.locator("#results li:has-text('OME-Zarr')").count() >= 1
    page.wait_for_function("document.querySelector('#log').textContent.includes('(100%) done')")
    assert page.locator("#btn-resume").is_disabled() and page.locator("#btn-cancel").is_disabled()

    page.locator("#results").evaluate("list => list.scrollTop = 0")
    page.locator("#log").evaluate("log => log.scrollTop = log.scrollHeight")
    shot = screenshot(page, tmp_path, "execution-page-finished.png")
    if os.environ.get(UPDATE_DOCS_ENV):
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)


def test_a_bad_pipeline_shows_the_servers_error_with_its_line(served, page, tmp_path):
    open_page(page, served)
    page.fill("#config-text", tiny_screen(seed=1, wells=["B02"]))
    page.check("#src-text")
    page.fill(
        "#pipeline-text",
        '"""Mine."""\nimport os\nfrom openhcs_rules.pipeline import Pipeline, Step\n'
        'pipeline = Pipeline(name="x", steps=[Step(name="a", func="denoise")])\n',
    )
    page.click("#submit-button")
    page.locator("#submit-error").wait_for(state="visible")
    text = page.text_content("#submit-error-text")
    assert text.startswith("pipeline.py:2: Import statement is not allowed"), text  # the server's, verbatim
    assert page.text_content("#submit-error-context") == "pipeline line 2: import os"
    assert page.text_content("#run-id") == ""  # nothing was selected: no run was made
    screenshot(page, tmp_path, "execution-page-error.png")

    # a config naming a folder outside the data roots: the config key, verbatim
    page.fill("#config-text", "plates:\n  p:\n    source: disk\n    path: /etc\n")
    page.check("#src-library")
    page.click("#submit-button")
    page.wait_for_function("document.querySelector('#submit-error-text').textContent.includes('outside')")
    assert page.locator("#submit-error-text").evaluate("e => e.tagName") == "PRE"


def test_a_longer_run_is_cancelled_from_the_page_and_resumed(served, page, tmp_path):
    open_page(page, served)
    all_wells = [f"{row}{column:02d}" for row in "BCD" for column in (2, 3, 4)]
    run_id = submit_form(page, tiny_screen(seed=7, wells=all_wells, plate="longer"))
    wait_for_wells(page, 1, "running")
    wait_for_state(page, "running")
    assert page.locator("#btn-cancel").is_enabled() and page.locator("#btn-resume").is_disabled()
    screenshot(page, tmp_path, "execution-page-running.png")

    page.click("#btn-cancel")
    wait_for_state(page, "cancelled")
    page.wait_for_function("!document.querySelector('#plates td.well[data-state=running]')")
    row = page.locator(f"#runs-body tr[data-run-id='{run_id}']")
    row.locator(".badge:has-text('cancelled')").wait_for()
    after_cancel = wells(page)
    assert not any(cell["state"] == "running" for cell in after_cancel)
    done_before = {cell["well"] for cell in after_cancel if cell["state"] == "done"}
    assert len(done_before) < len(all_wells), "the drain left nothing to resume"
    assert page.locator("#btn-resume").is_enabled() and page.locator("#btn-cancel").is_disabled()

    page.click("#btn-resume")
    wait_for_state(page, "succeeded")
    wait_for_wells(page, len(all_wells), "done")
    final = {cell["well"]: cell for cell in wells(page) if cell["state"] != "pending"}
    assert sorted(final) == sorted(all_wells)
    assert all(final[well]["state"] == "done" for well in done_before)  # kept, with their counts
    row.locator(".badge:has-text('succeeded')").wait_for()
    screenshot(page, tmp_path, "execution-page-resumed.png")


def _finished_run(served: Served) -> str:
    """A succeeded run of the user (the one the form submitted earlier in this module, or a new one)."""
    service = served.execution.service
    for run in service.runs(USER):
        if run["state"] == "succeeded":
            return str(run["run_id"])
    run_id = str(
        service.submit(USER, tiny_screen(seed=3, wells=["B02", "B03"]), pipeline_name="nuclei_count")["run_id"]
    )
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    while service.run(USER, run_id)["state"] != "succeeded":
        assert time.monotonic() < deadline and not RunState(service.run(USER, run_id)["state"]).terminal
        time.sleep(0.5)
    return run_id


def test_a_dropped_event_stream_is_picked_up_after_the_last_event_seen(served, page):
    run_id = _finished_run(served)
    events = served.execution.service.events(USER, run_id)
    cut = 3
    head = "".join(http_api.sse_message(event) for event in events[:cut])
    streams: list[str] = []

    def drop_the_first(route: Any) -> None:
        streams.append(route.request.url)
        if len(streams) == 1:  # the connection ends after three events, the run far from over
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=head)
        else:
            route.continue_()

    page.route("**/api/runs/*/stream?*", drop_the_first)
    open_page(page, served)
    page.click(f"#runs-body tr[data-run-id='{run_id}']")
    page.wait_for_function(
        "n => /jobs (\\d+) \\/ \\1 /.test(document.querySelector('#run-progress').textContent)", arg=len(events)
    )
    assert [url.rsplit("after=", 1)[1] for url in streams] == ["0", str(cut)]
    wells_done = [cell for cell in wells(page) if cell["state"] == "done"]
    assert wells_done and all(cell["objects"] is not None for cell in wells_done)
