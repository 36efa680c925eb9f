"""The execution server's HTTP API and web page, in the same process as its ZMQ channels.

A browser cannot speak ZMQ or hold a CURVE key, so the server also answers HTTP: JSON under ``/api``, the
events of a run as a Server-Sent-Events stream, result downloads, and the web page (``/``, ``/static``).
Every operation goes through :class:`~openhcs_rules.execution.service.RunService`, the same object the ZMQ
channels use, so the two transports cannot disagree on who may see, cancel or resume a run.

Security choices, and why:

- **Bearer tokens, no cookies.** Every ``/api`` route but the OpenAPI document needs
  ``Authorization: Bearer <token>`` (:mod:`~openhcs_rules.execution.tokens`). A browser never attaches that
  header on its own, so another site cannot make a logged-in browser act (no CSRF). A request without a
  valid token learns nothing (401).
- **OMERO.web's users** come with a short-lived token OMERO.web signed
  (:mod:`~openhcs_rules.execution.signed_tokens`, accepted only when the server has the shared secret): they
  act as ``<name>@omero`` and may submit runs only on the OMERO plates the token names (403 ``forbidden``).
  Their page is served by OMERO.web, another origin, so CORS is answered for the origins the operator
  listed (``--http-cors-origin``) and no other; no credentials (cookies) are ever allowed cross-origin.
- **Unknown and foreign runs look the same** (404 ``unknown_run``): run ids cannot be probed.
- **Bounded input.** Bodies over :data:`MAX_BODY_BYTES` are refused (413) from their ``Content-Length`` or,
  when streamed, as soon as the count passes the limit, before the rest is read; parameters are typed and
  bounded, and every refusal is JSON ``{"code", "error"}``, FastAPI's own validation errors included.
- **Downloads stay in the run's results** (``RunService.result_path``: no ``..``, no absolute path, no
  symlink), and are sent with ``Content-Security-Policy: sandbox`` and ``nosniff``: a result file is never a
  page that could run script in this origin (where the page holds the token).
- **Loopback by default**; the CLI refuses another interface without TLS or an explicit ``--http-insecure``.

The event stream polls the SQLite store (every :data:`STREAM_POLL_S`) from an async generator, with the
store calls in worker threads: an open stream holds no thread while it waits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from anyio import to_thread
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openhcs_rules import __version__
from openhcs_rules.errors import OpenHCSError
from openhcs_rules.execution.plate_map import plate_map, run_layouts
from openhcs_rules.execution.service import MAX_EVENTS, OutOfScope, RunNotVisible, RunService
from openhcs_rules.execution.signed_tokens import is_signed_token, verify_token
from openhcs_rules.execution.states import Event, RunState
from openhcs_rules.execution.submission import SubmissionError
from openhcs_rules.execution.tokens import TokenStore
from openhcs_rules.messaging.addresses import port_holder
from openhcs_rules.messaging.errors import PortInUseError

log = logging.getLogger(__name__)

#: the HTTP API's default port (the ZMQ channels use 7777 and 8777)
DEFAULT_HTTP_PORT = 7780
#: the largest request body accepted (the ZMQ channels' message limit)
MAX_BODY_BYTES = 1024 * 1024
#: the web page's files (written next to this module); ``/`` serves its index.html
DEFAULT_PAGE_DIR = Path(__file__).resolve().parent / "web"
#: how often an open event stream looks for new events
STREAM_POLL_S = 0.1
#: a comment line sent on an idle stream this often (proxies and browsers keep it open; the token is rechecked)
KEEPALIVE_S = 15.0
#: events read from the store per round of a stream
STREAM_PAGE = 500
#: the largest event number a client may name (SQLite integers are 64-bit)
MAX_SEQ = 2**62
#: longest log tail a client may ask for, in lines (the service also bounds it in bytes)
MAX_TAIL_LINES = 1_000_000
#: result types a browser may show inline; everything else is sent as a download of opaque bytes
INLINE_TYPES = frozenset({"text/csv", "text/plain", "application/json", "image/png", "image/jpeg", "image/tiff"})
#: headers on every response: no framing, no sniffing, no referrer (the page's address holds the token)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


# -- errors ---------------------------------------------------------------------------------------------------
class ApiError(Exception):
    """A refusal with its HTTP status and error code (sent as ``{"code", "error"}``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "error": message}, status_code=status, headers=headers)


def _unauthenticated() -> ApiError:
    return ApiError(401, "unauthenticated", "a valid token is needed: send 'Authorization: Bearer <token>'")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}


def _install_error_handlers(app: FastAPI) -> None:
    """Every refusal as JSON ``{"code", "error"}``, FastAPI's and Starlette's own included."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    async def not_visible(_: Request, exc: Exception) -> Response:
        return error_response(404, "unknown_run", str(exc))

    async def invalid_submission(_: Request, exc: Exception) -> Response:
        return error_response(422, "invalid_submission", str(exc))

    async def forbidden(_: Request, exc: Exception) -> Response:
        return error_response(403, "forbidden", str(exc))

    async def refused(_: Request, exc: Exception) -> Response:
        return error_response(409, "refused", str(exc))

    async def bad_request(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "bad_request", validation_message(exc))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "internal")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)

    async def internal(_: Request, exc: Exception) -> Response:
        log.error("HTTP API: unexpected error", exc_info=exc)
        return error_response(500, "internal", "the server failed to answer; its log says why")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RunNotVisible, not_visible)
    app.add_exception_handler(OutOfScope, forbidden)
    app.add_exception_handler(SubmissionError, invalid_submission)
    app.add_exception_handler(OpenHCSError, refused)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal)


def validation_message(exc: RequestValidationError) -> str:
    """What failed validation, by location (``body.config: Field required``), without echoing the input."""
    parts = []
    for error in list(exc.errors())[:10]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return ("; ".join(parts) or "the request is not valid")[:2000]


# -- the guard in front of everything: body size and response headers -----------------------------------------
class RequestGuard:
    """ASGI middleware: refuses bodies over ``limit`` bytes (413) and adds :data:`SECURITY_HEADERS`.

    Why the body is read here, before the app: the declared ``Content-Length`` is checked first (a refusal
    without reading a byte), and a body without one (chunked) is counted as it arrives, refused as soon as the
    count passes the limit; what passes (at most ``limit`` bytes) is handed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = str(scope.get("path", "")).startswith("/api/")

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in SECURITY_HEADERS if name not in present]
                if api and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))  # runs and logs are one user's
                message = {**message, "headers": headers}
            await send(message)

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.limit:
            await self._too_large(scope, receive, send_guarded)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody left to answer
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self._too_large(scope, receive, send_guarded)
                return
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": bytes(body), "more_body": False}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send_guarded)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"the request body is over {self.limit} bytes"
        response = error_response(413, "too_large", message, headers={"Connection": "close"})
        await response(scope, receive, send)


# -- request bodies -------------------------------------------------------------------------------------------
class Submission(BaseModel):
    """A screen to run: its YAML config and a pipeline (its text, or a name from the server's library)."""

    model_config = ConfigDict(extra="forbid")
    config: str = Field(description="the screen's YAML config (text)")
    pipeline: str | None = Field(default=None, description="a pipeline file's text (parsed, never executed)")
    pipeline_name: str | None = Field(default=None, description="a pipeline of the server's library")
    viewer_keys: dict[str, str] | None = Field(
        default=None,
        description="viewer kind -> Z85 public key of the submitter's viewer the run streams to (hybrid runs)",
    )
    platemaps: dict[str, str] | None = Field(
        default=None,
        description="plate name -> the text of its plate map (CSV: well, any columns, control), kept in the run",
    )


class Cancel(BaseModel):
    """How to cancel: drain (running wells finish, none start) or abort (stop now)."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["drain", "abort"] = "drain"


# -- who is asking ---------------------------------------------------------------------------------------------
_bearer = HTTPBearer(auto_error=False, description="a token from `openhcs-rules serve-token USER`")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user name, and the OMERO plates a signed token limits them to (None: no limit)."""

    user: str
    omero_plates: frozenset[int] | None = None


def principal_of(app: FastAPI, token: str | None) -> Principal | None:
    """The principal a bearer token stands for: a signed token (when the app has the signing secret) or one
    of the token store's; None for anything else."""
    if not token:
        return None
    secret: bytes | None = app.state.signing_secret
    if is_signed_token(token):
        claims = verify_token(secret, token) if secret else None
        return None if claims is None else Principal(claims.user, claims.omero_plates)
    user = app.state.tokens.user_of(token)
    return None if user is None else Principal(user)


def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The principal whose token came with the request; 401 without a valid one."""
    principal = principal_of(request.app, credentials.credentials if credentials is not None else None)
    if principal is None:
        raise _unauthenticated()
    return principal


def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> str:
    """The requesting user's name (routes that need no more than who is asking)."""
    return principal.user


#: a route's requesting user (module level: FastAPI resolves the postponed annotations in this module's globals)
User = Annotated[str, Depends(current_user)]
Caller = Annotated[Principal, Depends(current_principal)]


# -- the app --------------------------------------------------------------------------------------------------
def create_app(
    service: RunService,
    tokens: TokenStore,
    page_dir: Path | None = None,
    *,
    signing_secret: bytes | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """The HTTP API over ``service``, its users known by ``tokens`` (and, with ``signing_secret``, by tokens
    OMERO.web signed); the web page from ``page_dir`` (default :data:`DEFAULT_PAGE_DIR`; a folder that does
    not exist yet serves nothing until it does); cross-origin requests answered for ``cors_origins`` only."""
    page = Path(page_dir) if page_dir is not None else DEFAULT_PAGE_DIR
    app = FastAPI(
        title="openhcs-rules execution server",
        version=__version__,
        description="Submit screens, follow their events, cancel, resume and download results. Every route "
        "but this document needs 'Authorization: Bearer <token>' (openhcs-rules serve-token USER).",
        openapi_url="/api/openapi.json",
        docs_url=None,  # an unauthenticated page under /api, pulling scripts from a CDN: not served
        redoc_url=None,
    )
    app.state.closing = threading.Event()  # set by HttpServer.stop: open streams end
    if cors_origins:
        # bearer tokens only, never cookies: allow_credentials stays False, so no other site rides a session
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
            allow_credentials=False,
            max_age=600,
        )
    app.add_middleware(RequestGuard, limit=MAX_BODY_BYTES)  # added last: outermost, also guards CORS answers
    _install_error_handlers(app)
    app.state.tokens = tokens
    app.state.signing_secret = signing_secret

    @app.get("/api/whoami", tags=["users"])
    def whoami(user: User) -> dict[str, Any]:
        """Who the token belongs to, and whether they see every user's runs."""
        return {"user": user, "operator": service.is_operator(user)}

    @app.get("/api/pipelines", tags=["runs"])
    def pipelines(user: User) -> dict[str, Any]:
        """The names of the server's library pipelines (``pipeline_name`` of a submission)."""
        return {"pipelines": service.pipelines()}

    @app.get("/api/stream-key", tags=["runs"])
    def stream_key(user: User) -> dict[str, Any]:
        """The server's streaming public key: authorize it in your viewer's keys folder so runs stream to it."""
        return {"public_key": service.stream_public_key()}

    @app.get("/api/runs", tags=["runs"])
    def runs(user: User, everyone: Annotated[bool, Query(alias="all")] = False) -> dict[str, Any]:
        """The user's runs, newest first (``all=true``: everyone's, for operators; ignored otherwise)."""
        return {"runs": service.runs(user, everyone=everyone)}

    @app.post("/api/runs", tags=["runs"], status_code=201)
    def submit(caller: Caller, submission: Submission) -> dict[str, Any]:
        """Submit a screen: 201 with the queued run, 422 ``invalid_submission`` naming every problem, or 403
        ``forbidden`` for plates a signed token does not cover."""
        run = service.submit(
            caller.user,
            submission.config,
            submission.pipeline,
            submission.pipeline_name,
            omero_plates=caller.omero_plates,
            viewer_keys=submission.viewer_keys,
            platemaps=submission.platemaps,
        )
        log.info("run %s accepted over HTTP from %s: plates %s", run["run_id"], caller.user, ", ".join(run["plates"]))
        return run

    @app.get("/api/runs/{run_id}", tags=["runs"])
    def run(user: User, run_id: str) -> dict[str, Any]:
        """One run: its state, queue position, exit code, message and newest event number."""
        return service.run(user, run_id)

    @app.get("/api/runs/{run_id}/events", tags=["events"])
    def events(
        user: User,
        run_id: str,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_SEQ)] = MAX_EVENTS,
    ) -> dict[str, Any]:
        """The run's stored events numbered after ``after`` (at most 1000), and the run's newest number."""
        found = service.events(user, run_id, after, limit)
        return {"events": [event.to_dict() for event in found], "last_seq": service.run(user, run_id)["last_seq"]}

    @app.get(
        "/api/runs/{run_id}/stream",
        tags=["events"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "one SSE message per event"}},
    )
    async def stream(
        request: Request,
        user: User,
        run_id: str,
        after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=30)] = None,
    ) -> StreamingResponse:
        """The run's events after ``after`` (or the ``Last-Event-ID`` header, which wins: a reconnecting
        EventSource sends it) as Server-Sent Events, in order without gaps, as they are stored; ends after
        the event that ends the run (a terminal ``run_state`` stored after the stream opened), at once after
        the stored events for a run already ended, or when the client goes."""
        if last_event_id is not None and last_event_id.strip():
            if not last_event_id.strip().isdigit() or int(last_event_id) > MAX_SEQ:
                raise ApiError(422, "bad_request", "Last-Event-ID: must be an event number")
            after = int(last_event_id)
        record = await to_thread.run_sync(service.visible_run, run_id, user)
        token = _token_of(request)
        messages = _sse(token, user, record.run_id, after, record.state.terminal, record.last_seq)
        return StreamingResponse(
            messages,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def _sse(
        token: str, user: str, run_id: str, seen: int, ended_at_open: bool, history_end: int
    ) -> AsyncIterator[str]:
        """The stream's messages (see ``stream``); keepalives recheck the token, so a revoked one ends it."""
        closing: threading.Event = app.state.closing
        last_write = time.monotonic()
        while not closing.is_set():
            batch = await to_thread.run_sync(service.store.events_since, run_id, seen, STREAM_PAGE)
            for event in batch:
                yield sse_message(event)
                seen = event.seq
                if event.seq > history_end and ends_run(event):
                    return
            if batch:
                last_write = time.monotonic()
                if len(batch) == STREAM_PAGE:
                    continue  # more are stored: no pause
            elif ended_at_open:
                return  # a run that had ended when the stream opened: what is stored is all there is
            if time.monotonic() - last_write >= KEEPALIVE_S:
                current = await to_thread.run_sync(principal_of, app, token)
                if current is None or current.user != user:
                    return  # the token was revoked, or (signed) expired, while the stream was open
                yield ": keepalive\n\n"
                last_write = time.monotonic()
            await asyncio.sleep(STREAM_POLL_S)

    @app.post("/api/runs/{run_id}/cancel", tags=["runs"])
    def cancel(user: User, run_id: str, body: Cancel | None = None) -> dict[str, Any]:
        """Cancel a run: ``drain`` (default) lets running wells finish, ``abort`` stops them now."""
        return service.cancel(user, run_id, (body or Cancel()).mode)

    @app.post("/api/runs/{run_id}/resume", tags=["runs"])
    def resume(user: User, run_id: str) -> dict[str, Any]:
        """Queue a cancelled, failed or interrupted run again in its folder (only unfinished wells are redone);
        409 ``refused`` for a run in another state."""
        return service.resume(user, run_id)

    @app.get("/api/runs/{run_id}/logs", tags=["runs"])
    def logs(
        user: User, run_id: str, tail: Annotated[int | None, Query(ge=0, le=MAX_TAIL_LINES)] = 200
    ) -> dict[str, Any]:
        """The end of the run's Snakemake log (its last ``tail`` lines, within 256 KiB)."""
        return {"log": service.logs(user, run_id, tail)}

    @app.get("/api/runs/{run_id}/results", tags=["results"])
    def results(user: User, run_id: str) -> dict[str, Any]:
        """The run's result files (path relative to the run folder, size), each OME-Zarr store as one entry."""
        return {"files": service.results(user, run_id)}

    @app.get("/api/runs/{run_id}/files/{path:path}", tags=["results"], response_class=FileResponse)
    def download(user: User, run_id: str, path: str) -> FileResponse:
        """One result file (``path`` as listed by ``results``, e.g. ``results/<plate>/wells.csv``); 404 for
        anything outside the run's ``results/``, through a symlink, or not a file."""
        try:
            found = service.result_path(user, run_id, path)
        except (OSError, ValueError):  # a name the file system refuses (NUL byte, too long)
            raise RunNotVisible(f"no result {path[:200]!r} in run {run_id!r}") from None
        media_type = mimetypes.guess_type(found.name)[0] or "application/octet-stream"
        inline = media_type in INLINE_TYPES
        return FileResponse(
            found,
            media_type=media_type if inline else "application/octet-stream",
            filename=found.name,
            content_disposition_type="inline" if inline else "attachment",
            headers={"Content-Security-Policy": "sandbox"},
        )

    @app.get("/api/runs/{run_id}/plates", tags=["results"])
    def plates(user: User, run_id: str) -> dict[str, Any]:
        """Each plate of the run as a grid of wells: pending, running, done, failed or skipped, with the
        object count of finished wells; all wells of the plate once discovery has listed them."""
        record = service.visible_run(run_id, user)
        found: list[Event] = []
        while True:
            page = service.events(user, run_id, found[-1].seq if found else 0, MAX_EVENTS)
            found += page
            if len(page) < MAX_EVENTS:
                break
        names = list(record.plates)
        for event in found:
            plate = event.body.get("plate") if event.type.startswith("well_") else None
            if isinstance(plate, str) and plate not in names:
                names.append(plate)
        return {"plates": plate_map(found, run_layouts(record.folder, names), record.plates)}

    # -- the page -----------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> Response:
        """The web page (it reads its token from the address's ``#token=`` fragment, which no server sees)."""
        index_file = page / "index.html"
        if not index_file.is_file():
            raise StarletteHTTPException(404, "no web page installed")  # where it is: not for strangers
        return FileResponse(index_file, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", PageFiles(directory=page, check_dir=False), name="static")
    return app


class PageFiles(StaticFiles):
    """The page's files (links not followed); a 404, not Starlette's error, while the folder does not exist."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.directory is None or not Path(self.directory).is_dir():
            raise StarletteHTTPException(404, "no web page installed")
        await super().__call__(scope, receive, send)


def _token_of(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def sse_message(event: Event) -> str:
    """One Server-Sent-Events message: ``id`` the event's number, ``event`` its type, ``data`` its JSON."""
    data = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.seq}\nevent: {event.type}\ndata: {data}\n\n"


def ends_run(event: Event) -> bool:
    """True for the event that puts a run in a terminal state."""
    state = event.body.get("state") if event.type == "run_state" else None
    if not isinstance(state, str):
        return False
    try:
        return RunState(state).terminal
    except ValueError:
        return False


# -- the server thread ----------------------------------------------------------------------------------------
class HttpServer:
    """Runs an app on uvicorn in a daemon thread of this process (next to the ZMQ server's threads).

    The listening socket is bound here, in the caller's thread (:meth:`bind`, done by :meth:`start` if not
    yet), so a taken port is an error naming the port at start, not a log line from a dying thread; port 0
    takes a free port (:attr:`port` says which). Python sockets are not inherited by child processes, so the
    runs' Snakemake processes never hold the port.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = DEFAULT_HTTP_PORT,
        ssl_certfile: str | Path | None = None,
        ssl_keyfile: str | Path | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = ssl_certfile is not None
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http="h11",
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        )
        self._server = uvicorn.Server(self._config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def bind(self) -> None:
        """Load the TLS certificate and take the port now; PortInUseError naming the port (and who holds it)
        when it is taken, OpenHCSError when the certificate or key cannot be used."""
        if self._socket is not None:
            return
        if not self._config.loaded:
            try:
                self._config.load()
            except (OSError, ssl.SSLError) as exc:
                raise OpenHCSError(f"the HTTP API's TLS certificate or key cannot be used: {exc}") from None
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise OpenHCSError(f"HTTP host {self.host!r} does not resolve: {exc}") from None
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(self._config.backlog)
        except OSError as exc:
            sock.close()
            holder = port_holder(self.port) if self.port else "?"
            raise PortInUseError(
                f"the HTTP API cannot listen on {self.host}:{self.port} ({exc.strerror}); the port is held by "
                f"{holder}: choose another with --http-port, or --http-port 0 for no HTTP API"
            ) from None
        self._socket = sock
        self.port = int(sock.getsockname()[1])

    def start(self, timeout_s: float = 15.0) -> None:
        """Serve in a daemon thread; returns once connections are accepted (raises if it cannot start)."""
        self.bind()
        assert self._socket is not None
        sockets = [self._socket]

        def serve() -> None:
            try:
                self._server.run(sockets=sockets)
            except BaseException as exc:  # noqa: BLE001 - reported by start(), never lost in the thread
                self._failure = exc

        self._thread = threading.Thread(target=serve, name=f"http-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise OpenHCSError(f"the HTTP API on port {self.port} did not start: {self._failure or 'timeout'}")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving within about ``timeout_s``: open streams end, then uvicorn shuts down."""
        closing = getattr(self.app.state, "closing", None)
        if isinstance(closing, threading.Event):
            closing.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(1.0)
        elif self._socket is not None:
            self._socket.close()
        self._socket = None
