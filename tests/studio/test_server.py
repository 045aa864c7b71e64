"""The studio over HTTP (its own process, as `python -m bots studio` runs): the token and Host
guard, the bots served through the same app as `serve` (checked as Poe checks a reply), each
mode, reloading on save while the last valid version serves, and the pipeline tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from standin.poe import Behavior, StandIn
from standin.serving import ROOT, studio_process
from standin.user import poe_query

pytestmark = pytest.mark.timeout(120)

PIPELINES = """\
version: 1
bots:
  asker:
    steps:
      - id: topic
        bot: GPT-5-mini
        prompt: "Classify: {{ message }}"
      - route: "{{ topic }}"
        cases:
          code: [{bot: Claude-Sonnet-4.5}]
        default: [{bot: Gemini-2.5-Pro}]
"""

CASES = """\
version: 1
cases:
  - name: code goes to Claude
    bot: asker
    message: How do I sort a list?
    answers: {topic: code, Claude-Sonnet-4.5: Use sorted().}
    expect: {route: {"steps[1]": code}, reply_contains: [sorted]}
  - name: this one fails on purpose
    bot: asker
    answers: {topic: cooking}
    expect: {reply_contains: [never said]}
"""


def _files(tmp_path: Path) -> Path:
    config = tmp_path / "pipelines.yaml"
    config.write_text(PIPELINES)
    (tmp_path / "pipelines.tests.yaml").write_text(CASES)
    return config


def _wait_for(check, seconds: float = 10.0):  # type: ignore[no-untyped-def]
    """Asks `check` until it answers something true (the file is watched, not signalled)."""
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, "the studio did not see the change"
        time.sleep(0.05)
    return found


def test_refuses_requests_without_the_token_or_naming_another_host(tmp_path: Path) -> None:
    with studio_process(tmp_path / "log", "--config", str(_files(tmp_path))) as (url, token):
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"{url}/api/state").status_code == 403
        assert httpx.get(f"{url}/api/state?token=wrong").status_code == 403
        rebound = httpx.get(f"{url}/api/state?token={token}", headers={"Host": f"evil.test:{port}"})
        assert rebound.status_code == 403 and "Host" in rebound.text
        page = httpx.get(f"{url}/?token={token}")
        assert page.status_code == 200 and "Studio" in page.text
        cookie = page.cookies.get(f"studio-token-{port}")
        assert cookie == token  # the page then holds it: later requests carry only the cookie
        held = httpx.get(f"{url}/api/state", cookies={f"studio-token-{port}": token})
        assert held.status_code == 200 and held.json()["bots"][0]["id"] == "asker"
        poe = httpx.post(f"{url}/poe/asker", json={})
        assert poe.status_code == 403  # the bots too


async def test_a_scripted_case_takes_its_branch_through_the_real_app(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config), "--delay", "0") as (url, token):
        async with httpx.AsyncClient() as http:
            reply = await poe_query(
                http,
                f"{url}/poe/asker?token={token}&mode=scripted&case=0",
                None,
                "anything",
                message_id="m-scripted",
            )
            run = (await http.get(f"{url}/api/runs/m-scripted?token={token}")).json()
    assert reply.done and reply.text == "Use sorted()."  # and Poe's rules held throughout
    route = next(e for e in run["entries"] if e["kind"] == "route")
    assert "code" in route["detail"] and route["value"] == "code"
    assert run["calls"] == 2 and run["worst_case"] == 2 and run["done"]
    asked = next(e for e in run["entries"] if e["kind"] == "try")
    assert asked["sent"]["prompt"] == "Classify: anything" and asked["answer"] == "code"


async def test_simulated_is_the_default_and_unknown_modes_are_refused(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config), "--delay", "0") as (url, token):
        async with httpx.AsyncClient() as http:
            reply = await poe_query(http, f"{url}/poe/asker?token={token}", None, "hi")
            assert "(simulated) was asked" in reply.text
            odd = await http.post(f"{url}/poe/asker?token={token}&mode=free", json={})
            assert odd.status_code == 400 and "simulated, scripted, live" in odd.text
            live = await http.post(f"{url}/poe/asker?token={token}&mode=live", json={})
            assert live.status_code == 400 and "POE_API_KEY" in live.text  # never without a key


async def test_live_mode_calls_poe_and_tells_the_points_spent(tmp_path: Path) -> None:
    behaviors = {
        "GPT-5-mini": Behavior(text="code"),
        "Claude-Sonnet-4.5": Behavior(text="Use sorted()."),
        "Gemini-2.5-Pro": Behavior(),
    }
    async with StandIn(behaviors) as standin:
        standin.add_api_key("studio-key", points=1000)
        standin.prices.update({"GPT-5-mini": 3, "Claude-Sonnet-4.5": 40})
        env = {"POE_API_KEY": "studio-key", "POE_BASE_URL": standin.base_url}
        config = _files(tmp_path)
        with studio_process(tmp_path / "log", "--config", str(config), env=env) as (url, token):
            async with httpx.AsyncClient() as http:
                state = (await http.get(f"{url}/api/state?token={token}")).json()
                assert state["modes"]["live"] is True
                reply = await poe_query(
                    http,
                    f"{url}/poe/asker?token={token}&mode=live&message=m-live",
                    None,
                    "x",
                    message_id="m-live",
                )
                for _ in range(100):  # the balance is asked again once the reply has ended
                    run = (await http.get(f"{url}/api/runs/m-live?token={token}")).json()
                    if run["points"] is not None:
                        break
                    await asyncio.sleep(0.05)
    assert reply.text == "Use sorted()." and standin.balances["studio-key"] == 1000 - 43
    assert run["points"] == 43 and run["per_bot"] == {"GPT-5-mini": 1, "Claude-Sonnet-4.5": 1}


def test_a_broken_save_is_reported_while_the_last_valid_version_serves(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config), "--delay", "0") as (url, token):

        def state() -> dict:  # type: ignore[type-arg]
            return httpx.get(f"{url}/api/state?token={token}").json()  # type: ignore[no-any-return]

        first = state()
        config.write_text(
            PIPELINES.replace("bot: GPT-5-mini", "bot: GPT-5-mini\n        retries: lots")
        )
        broken = _wait_for(lambda: (s := state())["changes"] > first["changes"] and s)
        assert broken["version"] == 1 and broken["bots"][0]["id"] == "asker"
        [problem] = broken["problems"]
        assert problem["text"].startswith(f"{config}:7:9: ") and problem["line"] == 7
        answered = httpx.post(
            f"{url}/poe/asker?token={token}",
            json={
                "version": "1.2",
                "type": "query",
                "query": [{"role": "user", "content": "x"}],
                "user_id": "u",
                "conversation_id": "c",
                "message_id": "m",
            },
        )
        assert answered.status_code == 200 and "event: done" in answered.text
        config.write_text(PIPELINES.replace("asker", "helper"))
        fixed = _wait_for(lambda: (s := state())["version"] == 2 and s)
        assert fixed["problems"] == [] and [b["id"] for b in fixed["bots"]] == ["helper"]


def test_the_pipeline_tests_run_from_the_page(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config)) as (url, token):
        found = httpx.post(f"{url}/api/tests?token={token}", timeout=60).json()
    first, second = found["results"]
    assert first["passed"] and first["run"]["calls"] == 2 and first["where"].endswith(":3")
    assert not second["passed"] and "never said" in second["failures"][0]
    assert second["run"]["entries"][0]["label"] == "topic"


def test_files_outside_what_the_bots_made_are_not_served(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config)) as (url, token):
        secret = ROOT / "pyproject.toml"
        refused = httpx.get(f"{url}/files", params={"path": str(secret), "token": token})
        assert refused.status_code == 404
        kept = httpx.get(f"{url}/files", params={"path": str(config), "token": token})
        assert kept.status_code == 200 and "asker" in kept.text
