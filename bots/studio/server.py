"""The studio's web app: the page, its assets, and what the page asks for.

The page talks to the bots over Poe's own protocol: its messages go, as Poe would send them,
to `/poe/<bot id>`, which is the app `serve` runs (`build_app`: the same gate, budget guard and
reply), for the version of the file being served. Around it, the page reads the bots and the
file's problems (`/api/state`, and `/api/changes` as the file changes), each message's run
(`/api/runs/<message id>`), the files the bots made (`/files`), and runs the pipeline tests
(`/api/tests`).

Safe by default, as Jupyter is: it listens on 127.0.0.1 only, every request must carry the
run's token (in the URL once; the page then holds it in a cookie of this port), and a request
naming another `Host` is refused, so no web page can reach it through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import mimetypes
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jinja2
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from bots.errors import ConfigError, UsageError
from bots.run.client import new_http_client
from bots.serve.server import settings_for
from bots.studio import runs as described_runs
from bots.studio.modes import MODES, Modes, Switch, answering, problems_of
from bots.studio.outline import outline
from bots.studio.runs import Runs
from bots.studio.workspace import Workspace
from bots.tools import cases, simulator

HERE = Path(__file__).parent
ASSETS = HERE / "assets"
UPLOAD_BYTES = 50 * 1024 * 1024
"""The largest file the page may attach to a message (Poe's own limit is about this)."""

_page = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE), autoescape=True, undefined=jinja2.StrictUndefined
).get_template("page.html")


@dataclass
class Studio:
    """One studio: its file, its token and port, and what its page has made so far."""

    config_path: Path
    port: int
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    answers: str | None = None
    cases_path: str | None = None
    delay: float = 0.4
    uploads: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="poe-studio-")))
    runs: Runs = field(default_factory=Runs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    @property
    def cookie(self) -> str:
        return f"studio-token-{self.port}"


def app(studio: Studio) -> ASGIApp:
    """The studio's ASGI app (its lifespan watches the file and opens the shared client)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with new_http_client() as http:
            modes = Modes.from_environment(
                http, studio.config_path.parent, studio.answers, studio.cases_path
            )
            modes.delay = studio.delay
            workspace = Workspace(studio.config_path, Switch(), studio.runs.add)
            async with workspace, asyncio.TaskGroup() as group:
                state.update(modes=modes, workspace=workspace)
                watcher = group.create_task(workspace.watch())
                try:
                    yield
                finally:
                    watcher.cancel()

    def workspace() -> Workspace:
        found: Workspace = state["workspace"]
        return found

    def modes() -> Modes:
        found: Modes = state["modes"]
        return found

    async def page(request: Request) -> HTMLResponse:
        response = HTMLResponse(_page.render(file=str(studio.config_path)))
        response.set_cookie(studio.cookie, studio.token, httponly=True, samesite="strict")
        return response

    async def api_state(request: Request) -> JSONResponse:
        return JSONResponse(_state(workspace(), modes(), studio))

    async def changes(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            seen = -1
            while True:
                seen = await workspace().changed_after(seen, wait=15.0)
                yield {"event": "change", "data": json.dumps({"changes": seen})}

        return EventSourceResponse(events(), ping=10)

    async def api_run(request: Request) -> JSONResponse:
        message_id = request.path_params["message_id"]
        run = studio.runs.get(message_id)
        if run is None:
            return JSONResponse({"detail": f"no run for message {message_id}"}, status_code=404)
        return JSONResponse(described_runs.described(run, studio.runs.points.get(message_id)))

    async def upload(request: Request) -> JSONResponse:
        name = Path(request.query_params.get("name", "file")).name or "file"
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > UPLOAD_BYTES:
                return JSONResponse(
                    {"detail": f"{name} is over {UPLOAD_BYTES // 2**20} MB"}, status_code=413
                )
        folder = studio.uploads / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / name
        path.write_bytes(body)
        kind = request.headers.get("content-type") or mimetypes.guess_type(name)[0]
        return JSONResponse(
            {"url": path.as_uri(), "content_type": kind or "application/octet-stream", "name": name}
        )

    def files(request: Request) -> FileResponse | PlainTextResponse:  # a thread: disk I/O
        path = Path(request.query_params.get("path", "")).resolve()
        roots = [simulator.FILES, studio.uploads, studio.config_path.parent]
        roots += [Path(named).parent for named in (studio.answers, studio.cases_path) if named]
        if not path.is_file() or not any(path.is_relative_to(r.resolve()) for r in roots):
            return PlainTextResponse("no such file made by the bots", status_code=404)
        return FileResponse(path)

    async def run_tests(request: Request) -> JSONResponse:
        version = workspace().serving
        if version is None:
            return JSONResponse({"detail": "the pipelines file has problems"}, status_code=409)
        try:
            suite = modes().suite(version.config)
        except ConfigError as e:
            return JSONResponse({"problems": problems_of(e), "results": []})
        if suite is None:
            return JSONResponse({"detail": f"no {modes().cases_file} (see docs/testing.md)"}, 404)
        chosen = request.query_params.get("case")
        results = []
        for i, (case, line) in enumerate(zip(suite.file.cases, suite.lines, strict=True)):
            if chosen is not None and chosen != str(i):
                continue
            result = await cases.run(suite, version.config, case, line)
            said = result.said
            results.append(
                {
                    "case": i,
                    "bot": case.bot,
                    "name": case.name,
                    "where": f"{suite.path}:{line}",
                    "passed": result.passed,
                    "failures": result.failures,
                    "reply": said.text if said else "",
                    "run": described_runs.described(said.run) if said else None,
                }
            )
        return JSONResponse({"problems": [], "results": results})

    routes = [
        Route("/", page),
        Route("/api/state", api_state),
        Route("/api/changes", changes),
        Route("/api/runs/{message_id}", api_run),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/tests", run_tests, methods=["POST"]),
        Route("/files", files),
        Mount("/assets", StaticFiles(directory=ASSETS)),
    ]
    site = Starlette(routes=routes, lifespan=lifespan)
    bots = _Bots(studio, workspace, modes)
    return _Guard(site, bots, studio)


def _state(workspace: Workspace, modes: Modes, studio: Studio) -> dict[str, Any]:
    """What the page shows around the chat: the bots served, the file's problems, the modes
    and the pipeline tests' cases."""
    version = workspace.serving
    bots = []
    listed_cases: list[dict[str, Any]] = []
    cases_problems: list[dict[str, object]] = []
    if version is not None:
        for plan in version.config.bots.values():
            settings = settings_for(plan)
            controls = settings.parameter_controls
            bots.append(
                {
                    "id": plan.id,
                    "introduction": settings.introduction_message,
                    "allow_attachments": settings.allow_attachments,
                    "controls": controls.model_dump(exclude_none=True) if controls else None,
                    "dependencies": plan.dependencies,
                    "outline": outline(plan),
                }
            )
        try:
            suite = modes.suite(version.config)
        except ConfigError as e:
            cases_problems = problems_of(e)
        else:
            for i, case in enumerate(suite.file.cases if suite else []):
                listed_cases.append(
                    {
                        "case": i,
                        "bot": case.bot,
                        "name": case.name,
                        "message": case.message,
                        "params": case.params,
                        "history": [{"user": t.user, "bot": t.bot} for t in case.history],
                    }
                )
    return {
        "file": str(studio.config_path),
        "changes": workspace.changes,
        "version": version.number if version else None,
        "problems": problems_of(ConfigError(workspace.problems)),
        "bots": bots,
        "modes": {"available": list(MODES), "live": modes.live},
        "cases_file": str(modes.cases_file),
        "cases": listed_cases,
        "cases_problems": cases_problems,
        "answers_file": str(modes.answers) if modes.answers else None,
    }


class _Bots:
    """`/poe/<bot id>`: the bots of the version being served, each message answered in the
    mode its URL asks for (`?mode=simulated|scripted|live`, `&case=N` for a test's answers)."""

    def __init__(
        self, studio: Studio, workspace: Callable[[], Workspace], modes: Callable[[], Modes]
    ) -> None:
        self.studio = studio
        self.workspace = workspace
        self.modes = modes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        version = self.workspace().serving
        if version is None:
            await _plain(
                send, 503, "the pipelines file has problems: fix them first (see the page)"
            )
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        mode = query.get("mode", ["simulated"])[0]
        case = query.get("case", [None])[0]
        modes = self.modes()
        try:
            caller = modes.caller(mode, version.config, int(case) if case else None)
        except (UsageError, ConfigError, ValueError) as e:
            await _plain(send, 400, str(e))
            return
        path = scope["path"].removeprefix("/poe") or "/"
        inner = dict(scope, path=path, raw_path=path.encode(), root_path="")
        message_id = query.get("message", [""])[0]
        before = await modes.balance() if mode == "live" else None
        with answering(caller):
            await version.app(inner, receive, send)
        if before is not None and message_id:
            after = await modes.balance()
            if after is not None:
                self.studio.runs.points[message_id] = before - after


class _Guard:
    """Refuses every request without the run's token, or naming another Host."""

    def __init__(self, site: ASGIApp, bots: _Bots, studio: Studio) -> None:
        self.site = site
        self.bots = bots
        self.studio = studio
        self.hosts = {f"127.0.0.1:{studio.port}", f"localhost:{studio.port}"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.site(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if headers.get("host", "") not in self.hosts:
            await _plain(send, 403, "refused: the studio answers only at 127.0.0.1 (Host header)")
            return
        if not self._has_token(scope, headers):
            await _plain(
                send, 403, "refused: open the URL the studio printed, with its token (?token=...)"
            )
            return
        inner = self.bots if scope["path"].startswith("/poe/") else self.site
        await inner(scope, receive, send)

    def _has_token(self, scope: Scope, headers: dict[str, str]) -> bool:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        given = given or headers.get("x-studio-token", "")
        if not given:
            for pair in headers.get("cookie", "").split(";"):
                name, _, value = pair.strip().partition("=")
                if name == self.studio.cookie:
                    given = value
        return hmac.compare_digest(given.encode(), self.studio.token.encode())


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def serve(studio_for: Callable[[int], Studio], port: int, *, open_browser: bool) -> int:
    """Listens on 127.0.0.1:`port` (0: any free port), prints the URL with its token, opens
    a browser when there is a screen, and serves until Ctrl-C."""
    import os
    import socket
    import sys
    import webbrowser

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--port {port}: in use or refused ({e.strerror}); try --port 0") from None
    sock.listen(128)  # from here connections wait for the app, never refused
    studio = studio_for(sock.getsockname()[1])
    print(f"studio for {studio.config_path}: open {studio.url}", flush=True)
    print("(only this machine can open it, with the token; Ctrl-C stops it)", flush=True)
    screen = sys.platform in ("darwin", "win32") or any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY")
    )
    if open_browser and screen:
        webbrowser.open(studio.url)
    config = uvicorn.Config(app(studio), log_config=None, log_level="warning", lifespan="on")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    return 0
