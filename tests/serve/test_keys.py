"""Keys never leak: drive every kind of failure with known keys, then scan everything the
server logged and sent, and what the terminal chat printed."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from asyncio.subprocess import PIPE

import pytest

from standin.poe import Behavior, StandIn
from standin.served import key_for, serve_pipelines
from standin.serving import ROOT

YAML = """\
    version: 1
    bots:
      leaky:
        poe_name: LeakyBot
        steps:
          - parallel:
              - {id: a, bot: Down, retries: 1, on_error: continue}
              - {id: b, bot: Cut, on_error: continue}
              - {id: c, bot: BadJson, on_error: continue}
              - {id: d, bot: Stuck, timeout: 0.3, on_error: continue}
              - {id: e, bot: Refuses, on_error: continue}
              - {id: f, bot: Stale, on_error: continue}
            show: sections
          - {bot: Fails}
      other:
        steps: [{bot: Fine}]
"""
BEHAVIORS = {
    "Down": Behavior(http_status=500),
    "Cut": Behavior(raw="cut"),
    "BadJson": Behavior(raw="bad_json"),
    "Stuck": Behavior(text="x y", hang_at=1),
    "Refuses": Behavior(http_status=401),
    "Stale": Behavior(text="never reached"),
    "Fails": Behavior(error_at=0, error_text="quota exceeded", allow_retry=False),
    "Fine": Behavior(text="fine"),
}


async def test_no_key_appears_in_logs_replies_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keys = [key_for("leaky"), key_for("other")]
    sent: list[str] = []
    async with serve_pipelines(YAML, BEHAVIORS) as s:
        await asyncio.wait_for(asyncio.shield(s.app.state.settings_sync), 5)
        # Poe holding stale settings: it refuses the call to Stale with its own words
        deps = dict(s.standin.dependencies[key_for("leaky")])
        s.standin.declare(key_for("leaky"), {**deps, "Stale": 0}, caller="leaky")
        reply = await s.ask("leaky")
        sent.append(str(reply.events))
        for wrong in (keys[1], "wrong", None):  # other bot's key, a wrong one, none
            refused = await s.ask("leaky", key=wrong)
            assert refused.status == 401
            sent.append(str(refused.body))
        sent.append(str((await s.ask("other")).events))
    assert reply.done and reply.text.endswith("> ⚠️ Fails failed: quota exceeded")
    assert "called on bot that has 0 or undefined call count" in reply.text
    everything = caplog.text + "".join(sent)
    assert s.standin.settings_updates  # the sync ran, and its URL (holding the key) was logged
    for key in keys:
        assert key not in everything


async def test_the_terminal_chat_never_prints_the_api_key() -> None:
    api_key = "poe-user-key-0123456789abcdef0123"
    behaviors = {"GPT-5-mini": Behavior(http_status=401), "Gemini-2.5-Flash": Behavior(raw="cut")}
    async with StandIn(behaviors) as standin:
        standin.allow_any_caller = True
        env = {**os.environ, "POE_API_KEY": api_key, "POE_BASE_URL": standin.base_url}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bots",
            "chat",
            "race",
            "-m",
            "hi",
            cwd=ROOT,
            env=env,
            stdout=PIPE,
            stderr=PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        sent_keys = {r.get("api_key") for r in standin.requests}
    assert process.returncode == 1
    assert "HTTP 401" in err.decode()
    assert api_key not in out.decode() + err.decode()
    assert sent_keys  # the calls were made (with the key as bearer, not printed)
