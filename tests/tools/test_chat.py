"""`python -m bots chat`, run as a user runs it (in a subprocess), dry and against the stand-in."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

from standin.poe import Behavior, StandIn
from standin.serving import ROOT


async def chat(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("POE_API_KEY", "POE_BASE_URL")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "chat",
        *args,
        cwd=ROOT,
        env={**environ, **(env or {})},
        stdin=PIPE,
        stdout=PIPE,
        stderr=PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_dry_run_shows_every_section_and_the_trace() -> None:
    code, out, err = await chat(
        "council", "--dry-run", "--delay", "0.01", "-m", "Why is the sky blue?"
    )
    assert code == 0, err
    for heading in ("### gpt", "### claude", "### gemini"):
        assert heading in out
    assert "*[GPT-5 (simulated) was asked:]*" in out
    assert '*parameters: {"reasoning_effort": "low"}*' in out  # the step's parameters, shown
    assert "Question: Why is the sky blue?" in out  # the verdict's rendered template
    assert "calls used: 4 of 5 (worst case)" in out
    assert "verdict                      bot      Claude-Opus-4.1" in out  # named by its id


async def test_dry_run_is_multi_turn_and_reads_stdin() -> None:
    code, out, err = await chat("router", "--dry-run", "--delay", "0.01", stdin=b"first\nsecond\n")
    assert code == 0, err
    assert out.count("calls used: 2 of 2") == 2
    assert "*history: 2 earlier messages*" in out  # the second turn carries the first


async def test_params_and_files_reach_the_simulated_bots(tmp_path: Path) -> None:
    picture = tmp_path / "sketch.png"
    picture.write_bytes(b"\x89PNG")
    code, out, err = await chat(
        "illustrator",
        "--dry-run",
        "--delay",
        "0.01",
        "--param",
        "aspect=1:1",
        "--file",
        str(picture),
        "-m",
        "a lighthouse",
    )
    assert code == 0, err
    assert '"aspect_ratio": "1:1"' in out  # the control, sent as Imagen's own parameter
    assert "*attachments: sketch.png*" in out


async def test_without_a_key_it_says_how_to_get_one_and_offers_dry_run() -> None:
    code, out, err = await chat("council", "-m", "hi")
    assert code == 2
    assert "https://poe.com/api_key" in err and "--dry-run" in err
    assert "Traceback" not in err


async def test_a_refused_key_gives_one_clear_line() -> None:
    async with StandIn(
        {"GPT-5-mini": Behavior(text="x"), "Gemini-2.5-Flash": Behavior(text="y")}
    ) as standin:
        code, out, err = await chat(
            "race", "-m", "hi", env={"POE_API_KEY": "bogus", "POE_BASE_URL": standin.base_url}
        )
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: every branch of the race failed")
    assert "HTTP 401" in lines[0] and "https://poe.com/api_key" in lines[0]


async def test_live_calls_use_the_users_key_and_rate_limits_are_explained() -> None:
    behaviors = {
        "GPT-5-mini": Behavior(http_status=429),
        "Gemini-2.5-Pro": Behavior(text="general answer"),
    }
    async with StandIn(behaviors) as standin:
        standin.allow_any_caller = True
        env = {"POE_API_KEY": "user-key", "POE_BASE_URL": standin.base_url}
        code, out, err = await chat("router", "-m", "hi", env=env)
    assert code == 1
    assert "GPT-5-mini failed: HTTP 429 (rate limited)" in err and "wait a minute" in err
    assert "Traceback" not in err


async def test_live_files_are_uploaded_to_poe_and_the_chat_goes_on(tmp_path: Path) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text("version: 1\nbots:\n  looker:\n    steps: [{bot: Looker}]\n")
    (tmp_path / "sketch.txt").write_text("a sketch")
    async with StandIn({"Looker": Behavior(echo=True)}) as standin:
        standin.add_api_key("user-key")
        env = {
            "POE_API_KEY": "user-key",
            "POE_BASE_URL": standin.base_url,
            "POE_UPLOAD_URL": standin.upload_url,
        }
        sketch = str(tmp_path / "sketch.txt")
        args = ["looker", "--config", str(config), "--file", sketch, "-m", "what is it?"]
        code, out, err = await chat(*args, env=env)
    assert code == 0, err  # the upload did not close the client the calls share
    assert [name for name, _ in standin.uploads.values()] == ["sketch.txt"]
    [looked] = [r for r in standin.requests if r["bot"] == "Looker"]
    assert looked["query"][-1]["attachments"][0]["url"].endswith("/uploaded/0/sketch.txt")


async def test_an_unknown_bot_id_lists_the_bots() -> None:
    code, out, err = await chat("nobody", "--dry-run", "-m", "hi")
    assert code == 2
    assert "no bot 'nobody'" in err and "council" in err


async def test_the_trace_shows_a_wait_for_poes_rate_limit(tmp_path: Path) -> None:
    config = tmp_path / "pipelines.yaml"
    config.write_text("version: 1\nbots:\n  patient:\n    steps: [{bot: Busy, retries: 1}]\n")
    busy = Behavior(
        text="answered",
        http_status=429,
        http_status_first=1,
        headers={"x-ratelimit-reset-requests": "0.2"},
    )
    async with StandIn({"Busy": busy}) as standin:
        standin.allow_any_caller = True
        env = {"POE_API_KEY": "user-key", "POE_BASE_URL": standin.base_url}
        code, out, err = await chat("patient", "--config", str(config), "-m", "hi", env=env)
    assert code == 0, err
    wait = next(line for line in out.splitlines() if " wait " in line)
    assert "Busy" in wait and "HTTP 429: waited as Poe's headers asked" in wait
    assert "answered" in out and standin.too_early == []


def test_a_reader_that_goes_away_ends_the_chat_quietly() -> None:
    """`chat ... | head -1`: the pipe closes while the chat still writes; no traceback."""
    environ = {k: v for k, v in os.environ.items() if k != "POE_API_KEY"}
    read, write = os.pipe()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bots",
            "chat",
            "council",
            "--dry-run",
            "--delay",
            "0.3",
            "-m",
            "hi",
        ],
        cwd=ROOT,
        env=environ,
        stdout=write,
        stderr=subprocess.PIPE,
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        reader.readline()  # the first line, then the reader goes away
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err.decode(), err.decode()
    assert process.returncode == 1


async def test_params_are_checked_against_the_bots_controls() -> None:
    code, out, err = await chat("illustrator", "--controls")
    assert code == 0 and "aspect  aspect_ratio Shape: 1:1 | 16:9 | 9:16; default '16:9'" in out
    code, _, err = await chat("illustrator", "--dry-run", "--param", "aspect_ratio=1:1", "-m", "x")
    assert code == 2 and "no control has that name; the controls: aspect" in err
    code, _, err = await chat("illustrator", "--dry-run", "--param", "aspect=2:1", "-m", "x")
    assert code == 2 and "'2:1' is not one of 1:1, 16:9, 9:16" in err
    code, out, err = await chat("council", "--controls")
    assert code == 0 and "/council has no controls." in out


async def test_the_dry_run_shows_files_flowing_from_step_to_step() -> None:
    code, out, err = await chat("animator", "--dry-run", "--delay", "0.01", "-m", "a lighthouse")
    assert code == 0, err
    shown = next(line for line in out.splitlines() if line.startswith("[file: Imagen-4-"))
    path = Path(shown.split(" at ", 1)[1].rstrip("]"))
    picture = await asyncio.to_thread(path.read_bytes)
    assert picture.startswith(b"\x89PNG")  # a real picture, made locally
    assert f"*attachments: {path.name}*" in out  # what Veo-3's echo says it received
    assert f"files of picture: {path.name} at {path}" in out
    code, out, err = await chat(
        "critic", "--dry-run", "--delay", "0.01", "--param", "rounds=1", "-m", "a fox"
    )
    assert code == 0, err
    assert "calls used: 2 of 6 (worst case)" in out and "*attachments: Imagen-4-" in out
