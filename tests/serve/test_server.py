"""The server bots: settings, access keys, settings sync, cancellation, `serve`."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from bots.serve.server import build_app
from bots.spec import loader
from standin.poe import Behavior, StandIn
from standin.served import key_for, serve_pipelines
from standin.serving import ROOT, serve_app
from standin.user import query_body

TWO_BOTS = """\
    version: 1
    bots:
      alpha:
        poe_name: AlphaBot
        introduction: Hi from alpha.
        steps: [{bot: A, retries: 1}, {bot: B}]
      beta:
        allow_attachments: false
        steps: [{bot: B}]
"""


async def test_settings_declare_exactly_the_static_worst_case() -> None:
    async with serve_pipelines(TWO_BOTS, {"A": Behavior(text="a"), "B": Behavior(text="b")}) as s:
        response = await s.http.post(
            f"{s.url}/alpha",
            json={"version": "1.2", "type": "settings"},
            headers={"Authorization": f"Bearer {s.keys['alpha']}"},
        )
        beta = await s.http.post(
            f"{s.url}/beta",
            json={"version": "1.2", "type": "settings"},
            headers={"Authorization": f"Bearer {s.keys['beta']}"},
        )
    settings = response.json()
    assert settings["server_bot_dependencies"] == {"A": 2, "B": 1}
    assert settings["introduction_message"] == "Hi from alpha."
    assert settings["allow_attachments"] is True
    assert beta.json()["server_bot_dependencies"] == {"B": 1}
    assert beta.json()["allow_attachments"] is False


async def test_each_bot_accepts_only_its_own_key() -> None:
    async with serve_pipelines(TWO_BOTS, {"A": Behavior(text="a"), "B": Behavior(text="b")}) as s:
        own = await s.ask("alpha")
        other = await s.ask("alpha", key=s.keys["beta"])
        wrong = await s.ask("alpha", key="x" * 32)
        missing = await s.ask("alpha", key=None)
    assert own.status == 200 and own.text == "b"
    for refused in (other, wrong, missing):
        assert refused.status == 401
        assert "Invalid access key" in refused.body["detail"]


async def test_without_a_key_the_bot_serves_and_warns_once_naming_the_variable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bots")
    async with serve_pipelines(
        TWO_BOTS, {"A": Behavior(text="a"), "B": Behavior(text="b")}, keys=False
    ) as s:
        reply = await s.ask("beta", key=None)
    assert reply.status == 200 and reply.text == "b"
    warnings = [r.getMessage() for r in caplog.records if "is not set" in r.getMessage()]
    assert len(warnings) == 2
    assert any("BETA_ACCESS_KEY" in w for w in warnings)


async def test_settings_are_synced_with_poe_in_the_background() -> None:
    async with serve_pipelines(TWO_BOTS, {"A": Behavior(text="a"), "B": Behavior(text="b")}) as s:
        async with asyncio.timeout(5):
            await asyncio.shield(s.app.state.settings_sync)
        update = s.standin.settings_updates[0]
    assert update["bot"] == "AlphaBot"
    assert update["settings"]["server_bot_dependencies"] == {"A": 2, "B": 1}
    assert len(s.standin.settings_updates) == 1  # beta has no poe_name


async def test_unreachable_poe_never_blocks_start_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bots")
    config = loader.parse(textwrap.dedent(TWO_BOTS), "t.yaml")
    env = {"ALPHA_ACCESS_KEY": key_for("alpha")}
    app = build_app(config, environ=env, base_url="http://127.0.0.1:9/bot/")  # nothing listens
    async with serve_app(app) as url, httpx.AsyncClient() as http:
        async with asyncio.timeout(5):
            await asyncio.shield(app.state.settings_sync)
        response = await http.post(
            f"{url}/alpha",
            json={"version": "1.2", "type": "settings"},
            headers={"Authorization": f"Bearer {key_for('alpha')}"},
        )
        assert response.status_code == 200
    message = next(r.getMessage() for r in caplog.records if "settings sync" in r.getMessage())
    assert "Poe could not be reached" in message
    assert key_for("alpha") not in caplog.text


async def test_when_poe_goes_away_every_upstream_stream_is_closed() -> None:
    yaml = """\
        version: 1
        bots:
          fan:
            steps:
              - parallel: [{bot: A}, {bot: B}, {bot: C}]
                show: sections
          after:
            steps: [{bot: D}]
    """
    hang = Behavior(text="first words then nothing", token_gap=0.01, hang_at=2)
    behaviors = {"A": hang, "B": hang, "C": hang, "D": Behavior(text="still here")}
    async with serve_pipelines(yaml, behaviors) as s:
        body = query_body("go")
        headers = {"Authorization": f"Bearer {s.keys['fan']}"}
        async with s.http.stream("POST", f"{s.url}/fan", json=body, headers=headers) as response:
            async for line in response.aiter_lines():
                if "first" in line:
                    break  # the user saw text; now Poe drops the stream
        await s.standin.wait_until_idle(timeout=5)
        assert s.standin.closed_early == 3
        assert s.standin.open_streams == 0
        after = await s.ask("after")  # and the server goes on answering
    assert response.status_code == 200
    assert after.text == "still here"


def test_serve_refuses_a_bad_pipelines_file(tmp_path: Path) -> None:
    bad = tmp_path / "pipelines.yaml"
    bad.write_text("version: 1\nbots:\n  x:\n    steps:\n      - {bot: A, retires: 2}\n")
    result = subprocess.run(
        [sys.executable, "-m", "bots", "serve", "--config", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert f"{bad}:5:18: bots.x.steps[0].retires: unknown key 'retires'" in result.stderr


async def test_the_index_lists_every_bot() -> None:
    async with StandIn({}) as standin:
        config = loader.parse(textwrap.dedent(TWO_BOTS), "t.yaml")
        async with serve_app(build_app(config, environ={}, base_url=standin.base_url)) as url:
            async with httpx.AsyncClient() as http:
                index = (await http.get(url + "/")).json()
    assert index == {
        "alpha": {"path": "/alpha", "dependencies": {"A": 2, "B": 1}},
        "beta": {"path": "/beta", "dependencies": {"B": 1}},
    }
