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
        # no cookie: a browser would send it to every other server on 127.0.0.1 as well
        assert "set-cookie" not in page.headers
        assert page.headers["x-frame-options"] == "DENY"  # no other page may frame it
        header = httpx.get(f"{url}/api/state", headers={"x-studio-token": token})
        assert header.status_code == 200 and header.json()["bots"][0]["id"] == "asker"
        assert httpx.post(f"{url}/poe/asker", json={}).status_code == 403  # the bots too
        # the page's own scripts are public code: they load without the token
        assert httpx.get(f"{url}/assets/studio.js").status_code == 200
        assert httpx.post(f"{url}/assets/studio.js").status_code == 403


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
            for case in ("abc", "1_0", " 0", "-1", "9" * 30):
                bad = await http.post(f"{url}/poe/asker?token={token}&case={case}", json={})
                assert bad.status_code == 400 and "give a case's number" in bad.text, case
            live = await http.post(f"{url}/poe/asker?token={token}&mode=live", json={})
            assert live.status_code == 400 and "POE_API_KEY" in live.text  # never without a key


async def test_a_simulated_image_bot_answers_with_a_picture(tmp_path: Path) -> None:
    """As Poe's catalog says Imagen-4 makes images, its simulated answer carries one, even where
    no later step uses it (the illustrator's last step)."""
    with studio_process(tmp_path / "log", "--delay", "0") as (url, token):
        async with httpx.AsyncClient() as http:
            reply = await poe_query(http, f"{url}/poe/illustrator?token={token}", None, "a cat")
            [picture] = reply.files
            assert picture["content_type"] == "image/png" and picture["name"].startswith("Imagen-4")
            path = picture["url"].removeprefix("file://")
            shown = await http.get(f"{url}/files", params={"path": path, "token": token})
    assert shown.status_code == 200 and shown.content.startswith(b"\x89PNG")


async def test_live_mode_calls_poe_and_tells_the_points_spent(tmp_path: Path) -> None:
    behaviors = {
        "GPT-5-mini": Behavior(text="code"),
        "Claude-Sonnet-4.5": Behavior(text="Use sorted()."),
        "Gemini-2.5-Pro": Behavior(),
    }
    async with StandIn(behaviors) as standin:
        standin.add_api_key("studio-key", points=1000)
        standin.prices.update({"GPT-5-mini": 3, "Claude-Sonnet-4.5": 40})
        env = {
            "POE_API_KEY": "studio-key",
            "POE_BASE_URL": standin.base_url,
            "POE_UPLOAD_URL": standin.upload_url,
        }
        config = _files(tmp_path)
        with studio_process(tmp_path / "log", "--config", str(config), env=env) as (url, token):
            async with httpx.AsyncClient() as http:
                state = (await http.get(f"{url}/api/state?token={token}")).json()
                assert state["modes"]["live"] is True
                attached = await http.post(
                    f"{url}/api/upload?token={token}&mode=live&name=notes.txt", content=b"notes"
                )
                assert attached.status_code == 200, attached.text
                reply = await poe_query(
                    http,
                    f"{url}/poe/asker?token={token}&mode=live&message=m-live",
                    None,
                    "x",
                    message_id="m-live",
                    attachments=[attached.json()],
                )
                for _ in range(100):  # the balance is asked again once the reply has ended
                    run = (await http.get(f"{url}/api/runs/m-live?token={token}")).json()
                    if run["points"] is not None:
                        break
                    await asyncio.sleep(0.05)
    assert reply.text == "Use sorted()." and standin.balances["studio-key"] == 1000 - 43
    assert run["points"] == 43 and run["per_bot"] == {"GPT-5-mini": 1, "Claude-Sonnet-4.5": 1}
    # the file went to Poe's upload API (a real bot could not read this machine's files)
    assert standin.uploads == {"0": ("notes.txt", b"notes")}
    [classified] = [r for r in standin.requests if r["bot"] == "GPT-5-mini"]
    assert classified["query"][-1]["attachments"][0]["url"].endswith("/uploaded/0/notes.txt")


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


def test_a_model_poe_does_not_know_is_a_warning_with_did_you_mean(tmp_path: Path) -> None:
    config = _files(tmp_path)
    config.write_text(PIPELINES.replace("GPT-5-mini", "GPT-5-mimi"))
    with studio_process(tmp_path / "log", "--config", str(config)) as (url, token):
        state = httpx.get(f"{url}/api/state?token={token}").json()
    assert state["version"] == 1 and state["problems"] == []  # it serves: a warning only
    [warning] = state["warnings"]
    assert warning["line"] == 6 and "did you mean 'GPT-5-mini'?" in warning["text"]


def test_the_pipeline_tests_run_from_the_page(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config)) as (url, token):
        found = httpx.post(f"{url}/api/tests?token={token}", timeout=60).json()
    first, second = found["results"]
    assert first["passed"] and first["run"]["calls"] == 2 and first["where"].endswith(":3")
    assert not second["passed"] and "never said" in second["failures"][0]
    assert second["run"]["entries"][0]["label"] == "topic"


def test_only_files_the_bots_made_are_served_and_none_runs_in_the_page(tmp_path: Path) -> None:
    config = _files(tmp_path)
    (tmp_path / "answers.yaml").write_text("answers:\n  GPT-5-mini: {file: cat.png}\n")
    (tmp_path / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "notes.txt").write_text("not named by any answer")
    args = ("--config", str(config), "--answers", str(tmp_path / "answers.yaml"))
    with studio_process(tmp_path / "log", *args) as (url, token):

        def get(path: Path | str) -> httpx.Response:
            return httpx.get(f"{url}/files", params={"path": str(path), "token": token})

        for refused in (ROOT / "pyproject.toml", config, tmp_path / "notes.txt", "/etc/passwd"):
            assert get(refused).status_code == 404, refused
        picture = get(tmp_path / "cat.png")  # named by a scripted answer
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        page = httpx.post(
            f"{url}/api/upload", params={"token": token, "name": "x.html"}, content=b"<script>"
        )
        served = get(page.json()["url"].removeprefix("file://"))
        assert served.status_code == 200
        assert served.headers["content-disposition"] == "attachment"  # saved, never shown
        assert served.headers["content-security-policy"] == "sandbox"
        assert served.headers["x-content-type-options"] == "nosniff"


def test_attached_files_stay_in_the_studios_folder_whatever_their_name(tmp_path: Path) -> None:
    config = _files(tmp_path)
    with studio_process(tmp_path / "log", "--config", str(config)) as (url, token):
        names = ["../../escape.txt", "..", "a\x00b.txt", "x" * 300, "C:\\evil\\c.txt"]
        kept = []
        for name in names:
            answer = httpx.post(
                f"{url}/api/upload", params={"token": token, "name": name}, content=b"data"
            )
            assert answer.status_code == 200, (name, answer.text)
            kept.append(answer.json()["name"])
        assert kept == ["escape.txt", "file", "ab.txt", "x" * 120, "c.txt"]
        assert not (tmp_path.parent / "escape.txt").exists()
        nul = httpx.get(f"{url}/files", params={"path": "/tmp/a\x00b", "token": token})
        assert nul.status_code == 404
        over = httpx.post(
            f"{url}/api/upload?token={token}&name=big.bin", content=b"\0" * (50 * 2**20 + 1)
        )
        assert over.status_code == 413 and "over 50 MB" in over.text


SHIPPED_DEPENDENCIES = [
    "GPT-5",
    "GPT-5-mini",
    "GPT-5-nano",
    "Claude-Sonnet-4.5",
    "Claude-Opus-4.1",
    "Gemini-2.5-Pro",
    "Gemini-2.5-Flash",
    "Imagen-4",
    "Veo-3",
]


async def test_every_shipped_bot_answers_in_all_three_modes(tmp_path: Path) -> None:
    behaviors = {name: Behavior(text="APPROVED. 42") for name in SHIPPED_DEPENDENCIES}
    async with StandIn(behaviors) as standin:
        standin.add_api_key("live-key")
        env = {"POE_API_KEY": "live-key", "POE_BASE_URL": standin.base_url}
        with studio_process(tmp_path / "log", "--delay", "0", env=env) as (url, token):
            await _every_bot_in_every_mode(url, token)
    assert standin.refused == []  # every live call was one the bot declared to Poe


async def _every_bot_in_every_mode(url: str, token: str) -> None:
    """Each bot of pipelines.yaml: simulated, its first pipeline test replayed, and live."""
    async with httpx.AsyncClient(timeout=60) as http:
        state = (await http.get(f"{url}/api/state?token={token}")).json()
        assert state["problems"] == [] and state["cases_problems"] == []
        first_case = {}
        for case in state["cases"]:
            first_case.setdefault(case["bot"], case)
        for bot in state["bots"]:
            name = bot["id"]
            simulated = await poe_query(http, f"{url}/poe/{name}?token={token}", None, "hi")
            assert simulated.done and "(simulated)" in simulated.text, name
            case = first_case[name]  # every shipped bot has pipeline tests
            history: list[dict[str, str]] = []
            for turn in case["history"]:
                history.append({"role": "user", "content": turn["user"]})
                history.append({"role": "bot", "content": turn["bot"]})
            scripted = await poe_query(
                http,
                f"{url}/poe/{name}?token={token}&mode=scripted&case={case['case']}",
                None,
                [*history, {"role": "user", "content": case["message"]}],
                parameters=case["params"],
            )
            assert scripted.done and scripted.text, name
            live = await poe_query(http, f"{url}/poe/{name}?token={token}&mode=live", None, "hello")
            assert live.done and "APPROVED. 42" in live.text and not live.errors, name
