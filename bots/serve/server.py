"""The Poe server bots: one FastAPI app serving every bot of pipelines.yaml at /<bot id>.

Nothing here does I/O while the app is built: the shared HTTP client is opened, and settings
are synced with Poe, in the app's lifespan. A sync that cannot reach Poe is logged and never
blocks or stops start-up.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import fastapi_poe as fp
import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_poe.client import PROTOCOL_VERSION

from bots.run import trace
from bots.run.answer import Answer
from bots.run.client import POE_BASE_URL, Caller, PoeCaller, new_http_client
from bots.run.context import CALL_SECONDS, Context
from bots.run.delivery import Delivery, Pacing
from bots.run.engine import Run
from bots.serve import keys, logs
from bots.serve.gate import Gate, Guarded
from bots.spec import controls
from bots.spec.loader import BotPlan, Config

if TYPE_CHECKING:
    from bots.serve.spans import Spans

log = logging.getLogger("bots.server")  # the name in the log, as creators grep it

SETTINGS_SYNC_TIMEOUT = 10.0


@dataclass
class Runtime:
    """What every bot of the app shares: where dependency bots are, and the open client."""

    base_url: str = POE_BASE_URL
    pacing: Pacing = field(default_factory=Pacing)
    call_timeout: float = CALL_SECONDS
    caller: Caller | None = None
    spans: Spans | None = None  # when traces are exported (an OTLP endpoint is set)
    on_run: Callable[[Run], None] | None = None  # sees each run as it starts (the studio)


class PipelineBot(fp.PoeBot):
    """A Poe server bot whose reply is its pipeline's run."""

    def __init__(self, plan: BotPlan, runtime: Runtime, access_key: str | None) -> None:
        super().__init__(
            path=f"/{plan.id}",
            access_key=access_key,
            should_insert_attachment_messages=False,  # dependencies get the attachments themselves
        )
        self.plan = plan
        self.runtime = runtime

    async def get_response(
        self, request: fp.QueryRequest
    ) -> AsyncIterable[fp.PartialResponse | fp.DataResponse]:
        if self.runtime.caller is None:
            raise RuntimeError("the app's lifespan has not started")
        answer = Answer()
        delivery = Delivery(answer, self.runtime.pacing)
        ctx = Context.open(
            self.plan, request, answer, self.runtime.caller, call_seconds=self.runtime.call_timeout
        )
        run = Run(ctx)
        if self.runtime.on_run is not None:
            self.runtime.on_run(run)
        started = time.monotonic()
        # A TaskGroup cannot span the yields of a generator (closing it would surface
        # GeneratorExit in an exception group), so this generator owns the run's task and
        # cancels it in `finally`: when Poe goes away, every upstream stream is closed.
        worker = asyncio.ensure_future(run.execute())
        try:
            async for event in delivery.stream():
                yield event
        finally:
            worker.cancel()
            await asyncio.wait({worker})
            fields = run.summary(time.monotonic() - started, delivery)
            if self.runtime.spans is not None:
                fields["trace_id"] = f"{trace.trace_id(request.message_id):032x}"
                self.runtime.spans.message(run, fields)
            logs.record(log, "reply", fields)

    async def on_error(self, error_request: fp.ReportErrorRequest) -> None:
        """Poe says it could not use a reply: one bounded line (fastapi_poe's own would log
        the whole request, however large)."""
        fields = {
            "event": "poe_error",
            "bot": self.plan.id,
            "error": error_request.message,
        }
        logs.record(log, "poe_error", fields)

    async def get_settings(self, setting: fp.SettingsRequest) -> fp.SettingsResponse:
        return settings_for(self.plan)

    async def on_reaction_with_context(
        self, reaction_request: fp.ReportReactionRequest, context: fp.RequestContext
    ) -> None:
        self._reacted(reaction_request, "reaction", reaction_request.reaction)

    async def on_feedback_with_context(
        self, feedback_request: fp.ReportFeedbackRequest, context: fp.RequestContext
    ) -> None:
        self._reacted(feedback_request, "feedback", feedback_request.feedback_type)

    def _reacted(
        self,
        request: fp.ReportReactionRequest | fp.ReportFeedbackRequest,
        what: str,
        value: str,
    ) -> None:
        """A user's like, dislike or other reaction to one of this bot's messages: a log line
        (and a span in that message's trace) with its message id, to join it to the run."""
        value = value[:40]  # Poe's values are words; anything longer is not worth keeping
        fields = {
            "event": what,
            "bot": self.plan.id,
            "message_id": request.message_id,
            "conversation_id": request.conversation_id,
            what: value,
        }
        if self.runtime.spans is not None:
            fields["trace_id"] = f"{trace.trace_id(request.message_id):032x}"
            self.runtime.spans.reaction(request, what, value)
        logs.record(log, what, fields)


@contextmanager
def _tuned_gc() -> Iterator[None]:
    """Objects alive at start-up (modules, the app, the parsed pipelines) are frozen out of
    the garbage collector's scans while serving. Raising its thresholds as well saved a few
    percent of CPU under load but let cyclic garbage pile up (+36% memory after a run), so
    they stay at Python's defaults."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def settings_for(plan: BotPlan) -> fp.SettingsResponse:
    """What the bot tells Poe: its dependencies are exactly its static worst case; its
    controls go as `parameter_controls`, through fastapi_poe's models (Poe's schema)."""
    spec = plan.spec
    return fp.SettingsResponse(
        server_bot_dependencies=plan.dependencies,
        introduction_message=spec.introduction or "",
        allow_attachments=spec.allow_attachments,
        expand_text_attachments=spec.expand_text_attachments,
        enable_image_comprehension=spec.enable_image_comprehension,
        parameter_controls=controls.parameter_controls(spec.controls),
    )


def build_app(
    config: Config,
    *,
    environ: Mapping[str, str] | None = None,
    base_url: str | None = None,
    pacing: Pacing | None = None,
    deployed_with: str | None = None,
    caller: Caller | None = None,
    on_run: Callable[[Run], None] | None = None,
) -> FastAPI:
    """The ASGI app serving every bot of `config` at /<bot id>. `deployed_with` names the
    Modal secret of a deployed app: a bot whose key is missing from it refuses every request
    (served locally, without it, such a bot accepts any caller). `caller` answers for the
    dependency bots instead of Poe (a dry run: simulated or scripted bots); then nothing is
    sent to Poe, settings included. `on_run` sees each message's run as it starts."""
    logs.configure()
    env = os.environ if environ is None else environ
    runtime = Runtime(base_url=base_url or env.get("POE_BASE_URL") or POE_BASE_URL, on_run=on_run)
    if pacing is not None:
        runtime.pacing = pacing
    if trace.exported(os.environ):  # as OpenTelemetry's SDK reads them: from the process
        from bots.serve.spans import (
            otlp,  # imported only then: serving without traces never loads it
        )

        runtime.spans = otlp(os.environ)
    resolved = {
        plan.id: keys.resolve(plan, env, deployed_with=deployed_with)
        for plan in config.bots.values()
    }
    bots = [PipelineBot(plan, runtime, resolved[plan.id].value) for plan in config.bots.values()]
    logs.REDACTOR.secrets.update(bot.access_key for bot in bots if bot.access_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if caller is not None:  # a dry run (or the studio) tells Poe nothing: no client to open
            runtime.caller = caller
            try:
                yield
            finally:
                runtime.caller = None
        else:
            with _tuned_gc():
                async with new_http_client() as http:
                    runtime.caller = PoeCaller(http, runtime.base_url)
                    async with asyncio.TaskGroup() as group:
                        sync = group.create_task(sync_settings(http, runtime.base_url, bots))
                        app.state.settings_sync = sync  # lets a caller (a test) await the sync
                        try:
                            yield
                        finally:
                            sync.cancel()
                    runtime.caller = None
        if runtime.spans is not None:  # what is queued goes out, for 2 s at most
            await asyncio.to_thread(runtime.spans.shutdown)

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/")
    async def index() -> JSONResponse:
        return JSONResponse(
            {bot.plan.id: {"path": bot.path, "dependencies": bot.plan.dependencies} for bot in bots}
        )

    # We sync settings ourselves in the lifespan: without bot_name, make_app does no I/O.
    fp_logger = logging.getLogger("uvicorn.default")
    level = fp_logger.level
    fp_logger.setLevel(logging.ERROR)  # make_app warns once per bot that it will not sync
    try:
        fp.make_app(list(bots), allow_without_key=True, app=app)
    finally:
        fp_logger.setLevel(level)
    app.add_middleware(Gate, bots={bot.path: Guarded(bot, resolved[bot.plan.id]) for bot in bots})
    return app


async def sync_settings(http: httpx.AsyncClient, base_url: str, bots: list[PipelineBot]) -> None:
    """Pushes each named bot's settings to Poe, so its dependencies take effect."""
    for bot in bots:
        name, key = bot.plan.spec.poe_name, bot.access_key
        if not name or not key:
            continue
        url = f"{base_url}update_settings/{name}/{key}/{PROTOCOL_VERSION}"
        try:
            async with asyncio.timeout(SETTINGS_SYNC_TIMEOUT):
                response = await http.post(url, json=settings_for(bot.plan).model_dump())
            if response.status_code == 200:
                log.info("bot %s: settings synced with Poe as %s", bot.plan.id, name)
                continue
            problem = f"Poe answered HTTP {response.status_code}"
        except (httpx.HTTPError, TimeoutError) as e:
            problem = f"Poe could not be reached ({type(e).__name__})"
        except Exception as e:  # never the app's end: the bots serve on, with the client open
            log.exception("bot %s: settings sync for %s raised", bot.plan.id, name)
            problem = f"it raised {type(e).__name__}"
        log.warning(
            "bot %s: settings sync for %s failed: %s. The bot still serves; sync by hand as the "
            "docs/deploy.md says if Poe shows old dependencies.",
            bot.plan.id,
            name,
            problem,
        )
