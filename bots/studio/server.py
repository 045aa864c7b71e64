"""The studio's web app: the page, its assets, and what the page asks for.

The page talks to the bots over Poe's own protocol: its messages go, as Poe would send them,
to `/poe/<bot id>`, which is the app `serve` runs (`build_app`: the same gate, budget guard and
reply), for the version of the file being served. Around it, the page reads the bots and the
file's problems (`/api/state`, and `/api/changes` as the file changes), each message's run
(`/api/runs/<message id>`), the files the bots made (`/files`), and runs the pipeline tests
(`/api/tests`).

Safe by default: it listens on 127.0.0.1 only, behind the `guard` (the run's token, this
`Host` only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import secrets
import shutil
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
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from bots.errors import CallFailed, ConfigError, UsageError
from bots.run.client import new_http_client
from bots.serve.server import settings_for
from bots.studio import runs as described_runs
from bots.studio.guard import Guard, plain
from bots.studio.modes import MODES, Modes, Switch, answering, problems_of
from bots.studio.outline import outline
from bots.studio.runs import Runs
from bots.studio.workspace import Workspace
from bots.tools import cases, simulator

HERE = Path(__file__).parent
ASSETS = HERE / "assets"
UPLOAD_BYTES = 50 * 1024 * 1024
"""The largest file the page may attach to a message (Poe's own limit is about this)."""
UPLOAD_SECONDS = 120
"""The longest an attached file may take to arrive."""

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


def app(studio: Studio) -> ASGIApp:
    """The studio's ASGI app (its lifespan watches the file and opens the shared client)."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with new_http_client() as http:
            modes = Modes.from_environment(
                http, studio.config_path, studio.answers, studio.cases_path
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
                    shutil.rmtree(studio.uploads, ignore_errors=True)

    def workspace() -> Workspace:
        found: Workspace = state["workspace"]
        return found

    def modes() -> Modes:
        found: Modes = state["modes"]
        return found

    async def page(request: Request) -> HTMLResponse:
        shown = _page.render(name=studio.config_path.name, path=str(studio.config_path.resolve()))
        unframed = {"content-security-policy": "frame-ancestors 'none'", "x-frame-options": "DENY"}
        return HTMLResponse(shown, headers=unframed)

    async def api_state(request: Request) -> JSONResponse:  # a thread: it reads the tests file
        return JSONResponse(await asyncio.to_thread(_state, workspace(), modes(), studio))

    async def changes(request: Request) -> EventSourceResponse:
        async def events() -> AsyncIterator[dict[str, str]]:
            seen = -1
            while True:
                changes = await workspace().changed_after(seen, wait=15.0)
                if changes != seen:  # else the wait ran out: sse-starlette's pings keep it open
                    seen = changes
                    yield {"event": "change", "data": json.dumps({"changes": seen})}

        return EventSourceResponse(events(), ping=10)

    async def api_run(request: Request) -> JSONResponse:
        message_id = request.path_params["message_id"]
        run = studio.runs.get(message_id)
        if run is None:
            return JSONResponse({"detail": f"no run for message {message_id}"}, status_code=404)
        return JSONResponse(described_runs.described(run, studio.runs.points.get(message_id)))

    async def upload(request: Request) -> JSONResponse:
        """A file attached to the next message: kept here, or uploaded to Poe in live mode."""
        name = _file_name(request.query_params.get("name", ""))
        body = bytearray()
        try:
            async with asyncio.timeout(UPLOAD_SECONDS):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > UPLOAD_BYTES:
                        too_big = f"{name} is over {UPLOAD_BYTES // 2**20} MB"
                        return JSONResponse({"detail": too_big}, status_code=413)
        except TimeoutError:
            return JSONResponse({"detail": f"{name} took over {UPLOAD_SECONDS} s"}, 408)
        if request.query_params.get("mode") == "live":
            try:
                attachment = await modes().uploaded(bytes(body), name)
            except (UsageError, CallFailed) as e:
                return JSONResponse({"detail": str(e)}, status_code=502)
            return JSONResponse(attachment.model_dump(exclude_none=True))
        folder = studio.uploads / uuid.uuid4().hex[:12]
        folder.mkdir()
        path = folder / name
        path.write_bytes(body)
        kind = request.headers.get("content-type") or mimetypes.guess_type(name)[0]
        return JSONResponse(
            {"url": path.as_uri(), "content_type": kind or "application/octet-stream", "name": name}
        )

    def files(request: Request) -> Response:  # a thread: disk I/O
        """A file the bots made: by the dry run, attached by the user, or named by a scripted
        answer; shown, never run (a bot's HTML file must not script this page)."""
        given = request.query_params.get("path", "")
        version = workspace().serving
        if not given or "\0" in given or version is None:
            return PlainTextResponse("no such file made by the bots", status_code=404)
        path = Path(given).resolve()
        made = [simulator.FILES.resolve(), studio.uploads.resolve()]
        if not path.is_file() or not (
            any(path.is_relative_to(folder) for folder in made)
            or path in modes().scripted_files(version.config)
        ):
            return PlainTextResponse("no such file made by the bots", status_code=404)
        headers = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox"}
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if not kind.startswith("image/"):
            headers["content-disposition"] = "attachment"
        return FileResponse(path, media_type=kind, headers=headers)

    async def run_tests(request: Request) -> JSONResponse:
        version = workspace().serving
        if version is None:
            return JSONResponse({"detail": "the pipelines file has problems"}, status_code=409)
        try:
            suite = modes().suite(version.config)
        except ConfigError as e:
            return JSONResponse({"problems": problems_of(e), "results": []})
        if suite is None:  # said in the page: not an error of the request
            missing = f"no {modes().cases_file}: write your cases in it (see docs/testing.md)"
            return JSONResponse({"problems": [], "results": [], "missing": missing})
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
    return Guard(site, bots, port=studio.port, token=studio.token)


def _file_name(given: str) -> str:
    """An attached file's name as a plain file name: no folders, no control characters, at
    most 120 characters ("file" when nothing is left)."""
    name = "".join(c for c in Path(given.replace("\\", "/")).name if c.isprintable())[-120:]
    return name if name.strip(". ") else "file"


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
        "warnings": problems_of(ConfigError(workspace.warnings)),
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
            await plain(send, 503, "the pipelines file has problems: fix them first (see the page)")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        mode = query.get("mode", ["simulated"])[0]
        case = query.get("case", [""])[0]
        modes = self.modes()
        try:
            if case and not (case.isascii() and case.isdigit() and len(case) < 10):
                raise UsageError(f"case={case[:20]!r}: give a case's number, e.g. case=0")
            caller = modes.caller(mode, version.config, int(case) if case else None)
        except (UsageError, ConfigError) as e:
            await plain(send, 400, str(e))
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


def serve(studio_for: Callable[[int], Studio], port: int, *, open_browser: bool) -> int:
    """Listens on 127.0.0.1:`port` (0: any free port), prints the URL with its token, opens
    a browser when there is a screen, and serves until Ctrl-C."""
    import logging
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
    # the page shows each reply's run: the terminal keeps to warnings (a file's problems...)
    logging.getLogger("bots").setLevel(logging.WARNING)
    config = uvicorn.Config(app(studio), log_config=None, log_level="warning", lifespan="on")
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(config).run(sockets=[sock])
    return 0
