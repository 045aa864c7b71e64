"""One call step of a reply: what it sends, each of its tries (retries, fallbacks, waits for
Poe's rate limit), each try streamed into the reply, and what is kept for later turns.

Every try passes the budget guard first, and is a call Poe counts. A try's files go to the
reply as they arrive, before the text that may show them. After Poe's 429, the next try waits
as Poe's headers say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastapi_poe as fp

from bots.errors import CallFailed, StepFailed
from bots.run import conversation
from bots.run.answer import Part
from bots.run.client import CallSite
from bots.run.context import Context
from bots.run.trace import TraceEntry, count_call
from bots.spec.format import CallStep, StepBase, within
from bots.spec.templates import PROMPT_CHAR_CAP

log = logging.getLogger("bots.calls")  # the name in the log, as creators grep it


@dataclass
class Calls:
    """The dependency calls of one reply, each through the context's budget guard, and what
    they left: records for later turns, failures for the log, files for later steps."""

    ctx: Context
    history: conversation.History = field(init=False)
    # per call (a call step's place, and for a sample or a map item "#N" after it)
    records: dict[str, conversation.Record] = field(default_factory=dict)
    # every failed try: its step, bot and a reason fit for logs (nothing a dependency wrote)
    failures: list[dict[str, str]] = field(default_factory=list)
    made: int = 0  # successful calls so far
    # per call: the number of its last successful call, and the files that call produced
    produced: dict[tuple[str, str], tuple[int, list[fp.Attachment]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.history = conversation.History(self.ctx.request)

    async def call(
        self,
        step: CallStep,
        part: Part | None,
        variables: Mapping[str, Any],
        files: Mapping[str, list[fp.Attachment]],
        instance: str = "",
    ) -> str:
        """One call step: every try of its bot, then of each fallback, until one succeeds.
        `files` are the files each earlier step produced, by id; `instance` tells apart the
        calls one step makes for the samples of a `repeat` and the items of a `map` ("#2")."""
        key = step.path + instance

        def render(name: str) -> str:
            template = step.template(name)
            return template.render(variables) if template is not None else ""

        message = variables["message"]
        prompt = render("prompt") if step.prompt is not None else message
        system = render("system") if step.system is not None else None
        for name, text in (("prompt", prompt), ("system", system or "")):
            if len(text) > PROMPT_CHAR_CAP:
                too_long = len(message) > PROMPT_CHAR_CAP
                raise StepFailed(
                    f"the {name} for {step.bot} would be {len(text):,} characters, over the "
                    f"{PROMPT_CHAR_CAP:,}-character cap on one prompt; nothing was sent",
                    bot=step.bot,
                    error_type="user_message_too_long" if too_long else None,
                )
        # only what the step says: the user's own parameters are the pipeline's, not the bot's
        parameters = {
            name: render(f"parameters.{name}") if isinstance(value, str) else value
            for name, value in step.parameters.items()
        }
        sent: list[fp.Attachment] = []
        for source in step.sources:
            if source == "user":
                sent += self.ctx.request.query[-1].attachments
            else:  # another bot's file: its inline_ref belonged to that bot's message
                sent += [f.model_copy(update={"inline_ref": None}) for f in files.get(source, [])]
        messages = conversation.call_messages(
            self.ctx.request,
            self.history,
            key,
            prompt=prompt,
            system=system,
            parameters=parameters,
            use_history=step.history,
            attachments=sent,
            user_files="user" in step.sources,
        )
        request = conversation.forward(self.ctx.request, messages)
        timeout = step.timeout or self.ctx.call_seconds
        failures: list[CallFailed] = []
        tried: list[str] = []
        for bot in step.bots:
            for _ in range(1 + step.retries):
                if failures and failures[-1].rate_limited:
                    await self._back_off(step, bot, failures, timeout)
                self.ctx.guard.acquire(bot)
                count_call()
                tried.append(bot)
                attempt = TraceEntry(key, "try", bot, 0.0, 1, "ok")
                attempt.facts["try"] = len(tried)
                attempt.sent = request
                attempt.content.update(prompt=prompt, **({"system": system} if system else {}))
                self.ctx.trace.append(attempt)
                try:
                    with self._asking(step, bot):
                        text, produced = await self._try(request, bot, step, part, timeout, attempt)
                except CallFailed as e:
                    attempt.outcome = f"failed: {e.log_reason}"
                    attempt.facts.update(failure=e.log_reason, error_type=e.error_type)
                    failures.append(e)
                    self.failures.append({"step": key, "bot": bot, "reason": e.log_reason})
                    log.info("bot %s: %s: %s failed: %s", self.ctx.plan.id, key, bot, e.log_reason)
                    if e.retry:
                        continue
                    break  # the bot asked not to be retried: on to the fallback, if any
                except asyncio.CancelledError:
                    attempt.outcome = "cancelled"
                    raise
                finally:
                    attempt.seconds = time.time() - attempt.started
                record = {"a": text}
                if prompt != message:
                    record["p"] = prompt
                self.records[key] = record
                self.made += 1
                self.produced[(step.path, instance)] = (self.made, produced)
                return text
        error_type = next((f.error_type for f in reversed(failures) if f.error_type), None)
        raise StepFailed(
            _failure_message(list(zip(tried, failures, strict=True))),
            bot=step.bot,
            error_type=error_type,
            log_reason=f"{key}: {', '.join(dict.fromkeys(tried))} failed",
        )

    async def _back_off(
        self, step: StepBase, bot: str, failures: list[CallFailed], cap: float
    ) -> None:
        """Waits before trying again after Poe's 429: as long as its headers ask, else
        exponentially (1, 2, 4 s..., with jitter); never past the step's timeout or the
        reply's deadline. The wait is in the trace and in the progress line."""
        asked = failures[-1].wait
        streak = 0
        for failure in reversed(failures):
            if not failure.rate_limited:
                break
            streak += 1
        seconds = asked if asked is not None else 2.0 ** (streak - 1) * random.uniform(0.5, 1.0)
        remaining = self.ctx.deadline - asyncio.get_running_loop().time()
        seconds = max(0.0, min(seconds, cap, remaining - 1.0))
        how = "as Poe's headers asked" if asked is not None else "backing off"
        entry = TraceEntry(step.path, "wait", bot, seconds, 0, f"HTTP 429: waited {how}")
        self.ctx.trace.append(entry)
        with self._asking(step, f"{bot} (rate limited: trying again in {seconds:.0f} s)"):
            await asyncio.sleep(seconds)

    @contextlib.contextmanager
    def _asking(self, step: StepBase, label: str) -> Iterator[None]:
        """Names what the reply waits for in its progress line, while it waits: the step's
        own wording (`waiting`) if it has one, else `label` (the bot, by name)."""
        wording = self.ctx.plan.wording.get(step.path)
        with self.ctx.answer.waiting(wording or label, worded=wording is not None):
            yield

    async def _try(
        self,
        request: fp.QueryRequest,
        bot: str,
        step: CallStep,
        part: Part | None,
        seconds: float,
        attempt: TraceEntry,
    ) -> tuple[str, list[fp.Attachment]]:
        """One try: its text, streamed into `part`, and its files; what it received goes in
        its trace entry, `attempt`.

        The stream is read in a task of its own, which is cancelled once, on a timeout or a
        cancelled reply, and then awaited to the end. Cancelled in place instead, a second
        cancellation (a sibling branch failing at the same moment) could land in the HTTP
        client's own clean-up and leave the upstream connection open."""
        text = ""
        files: list[fp.Attachment] = []
        suggestions: list[str] = []
        if part is not None:
            part.replace("")
        site = CallSite(step.id, step.path, step.path in self.ctx.plan.file_calls)

        async def read() -> None:
            nonlocal text
            events = self.ctx.caller.stream(request, bot, site)
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, fp.MetaResponse) or event.data is not None:
                        continue
                    if event.attachment is not None:
                        files.append(event.attachment)
                        # at once: the text after it may show it inline by its inline_ref
                        if part is not None:
                            part.attach(event.attachment)
                    elif event.is_suggested_reply:
                        suggestions.append(event.text)
                    elif event.is_replace_response:
                        text = event.text
                        if part is not None:
                            part.replace(text)
                    else:
                        text += event.text
                        if part is not None:
                            part.write(event.text)
                    if "first_token_s" not in attempt.facts and (text or files):
                        attempt.facts["first_token_s"] = round(time.time() - attempt.started, 4)

        reader = asyncio.ensure_future(read())
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(reader)
        except TimeoutError:
            await _finish(reader)
            raise CallFailed(f"no complete answer within {seconds:g} s") from None
        except asyncio.CancelledError:
            await _finish(reader)
            raise
        finally:
            attempt.facts.update(characters=len(text), files=len(files))
            attempt.content["answer"] = text
        if part is not None:
            part.suggestions = suggestions
        return text, files

    def files_under(self, path: str, instance: str, since: int) -> list[fp.Attachment]:
        """The files the calls at or inside `path` (in the same sample or item, or inside it)
        produced after call number `since`."""
        found = [
            (made, files)
            for (at, made_in), (made, files) in self.produced.items()
            if made > since and within(at, path) and made_in.startswith(instance)
        ]
        return [file for _, files in sorted(found, key=lambda item: item[0]) for file in files]


async def _finish(reader: asyncio.Future[None]) -> None:
    """Cancels a stream's reader once and waits until it has closed its stream. A
    cancellation that arrives meanwhile is kept, and raised once the reader is done."""
    reader.cancel()
    cancelled = False
    while not reader.done():
        try:
            await asyncio.wait({reader})
        except asyncio.CancelledError:
            cancelled = True
    if not reader.cancelled():
        reader.exception()  # retrieved: a consequence of the cancellation, not news
    if cancelled:
        raise asyncio.CancelledError


def _failure_message(failures: list[tuple[str, CallFailed]]) -> str:
    """One sentence for a call step whose every try failed: (bot, failure) per try."""
    if len(failures) == 1:
        bot, failure = failures[0]
        return f"{bot} failed: {failure}"
    tried = ", ".join(dict.fromkeys(bot for bot, _ in failures))
    each = "; ".join(f"{bot}: {failure}" for bot, failure in failures)
    return f"{tried} failed after {len(failures)} tries ({each})"
