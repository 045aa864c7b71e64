"""`python -m bots eval`, run as a creator runs it, against the stand-in through POE_BASE_URL:
candidate bots of known quality, a judge whose verdicts are known, Poe's rate limit and usage
API; resuming after an interruption; the report in a real headless browser."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import signal
import sys
import time
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import pytest

from bots.errors import ConfigError
from bots.evals import comparison as evals
from bots.evals import dataset, judge
from standin.poe import Behavior, StandIn
from standin.serving import ROOT

KEY = "user-api-key"
PIPELINES = """\
version: 1
bots:
  great: {steps: [{bot: Great-Model}]}
  poor: {steps: [{bot: Poor-Model, retries: 1}]}
"""
QUALITY = {"Great-Model": 3, "Plain-Model": 2, "Poor-Model": 1}
PRICES = {"Great-Model": 30, "Plain-Model": 10, "Poor-Model": 5, "Judge-Bot": 2}
ITEMS = """\
- What is 2 + 2?
- message: Name a prime.
  reference: "7"
- Why is the sky blue?
- Toss a coin for me.
- message: Rate me.
  rubric: The answer states its quality.
"""


def answer_of(model: str) -> Behavior:
    return Behavior(
        reply=lambda r: (
            f"{model} answers {r.query[-1].content!r} at quality " + (str(QUALITY[model]))
        )
    )


def judged(request: fp.QueryRequest) -> str:
    """A judge whose verdicts are known: the better quality wins; on coin questions it always
    says A (a position bias, which judging both orders cancels into a tie)."""
    prompt = request.query[-1].content
    quality = [int(q) for q in re.findall(r"at quality (\d)", prompt)]
    if "[Answer]" in prompt:
        return f"Fair.\nSCORE: {3 * quality[0]}"
    if "coin" in prompt:
        return "VERDICT: A"
    a, b = (quality + [0, 0])[:2]  # a failed answer has no quality: 0
    return "VERDICT: " + ("A" if a > b else "B" if b > a else "TIE")


def behaviors(judge_delay: float = 0.0) -> dict[str, Behavior]:
    found = {model: answer_of(model) for model in QUALITY}
    found["Judge-Bot"] = Behavior(reply=judged, first_token_delay=judge_delay)
    return found


def files(tmp_path: Path, items: str = ITEMS) -> tuple[str, str, str]:
    (tmp_path / "pipelines.yaml").write_text(PIPELINES)
    (tmp_path / "items.yaml").write_text(items)
    return (
        str(tmp_path / "pipelines.yaml"),
        str(tmp_path / "items.yaml"),
        str(tmp_path / "out.json"),
    )


async def start_eval(standin: StandIn, *args: str) -> asyncio.subprocess.Process:
    environ = {k: v for k, v in os.environ.items() if k not in ("POE_API_KEY", "POE_BASE_URL")}
    environ |= {"POE_API_KEY": KEY, "POE_BASE_URL": standin.base_url}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots",
        "eval",
        *args,
        cwd=ROOT,
        env=environ,
        stdout=PIPE,
        stderr=PIPE,
    )


async def run_eval(standin: StandIn, *args: str) -> tuple[int, str, str]:
    process = await start_eval(standin, *args)
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def two_candidates(config: str, items: str, out: str, concurrency: int) -> tuple[str, ...]:
    """The eval's arguments: great and poor against Plain-Model, judged by Judge-Bot."""
    return (
        *("great", "poor", "--baseline", "Plain-Model", "--judge", "Judge-Bot"),
        *("--config", config, "--dataset", items, "--out", out),
        *("--concurrency", str(concurrency)),
    )


def saved(out: str) -> dict[str, Any]:
    """What the eval has saved so far in its results file."""
    path = Path(out)
    return json.loads(path.read_text()) if path.exists() else {}


def wilson_by_roots(p: float, n: int) -> tuple[float, float]:
    """The Wilson interval as the two roots of (p - x)^2 = z^2 x (1 - x) / n, solved directly."""
    z2 = 1.959963984540054**2 / n
    a, b, c = 1 + z2, -(2 * p + z2), p * p
    root = math.sqrt(b * b - 4 * a * c)
    return (-b - root) / (2 * a), (-b + root) / (2 * a)


async def test_win_rates_intervals_calls_and_points_are_exact(tmp_path: Path) -> None:
    config, items, out = files(tmp_path)
    async with StandIn(behaviors()) as standin:
        standin.add_api_key(KEY, points=10_000)
        standin.prices = PRICES
        code, stdout, err = await run_eval(standin, *two_candidates(config, items, out, 3))
        assert code == 0, err
        answers = sum(1 for r in standin.requests if r["bot"] != "Judge-Bot")
        judge_calls = sum(1 for r in standin.requests if r["bot"] == "Judge-Bot")
    assert answers == 15 and judge_calls == 4 * 2 * 2 + 3  # both orders; a score per rubric answer
    summary = saved(out)["summary"]
    great, poor, base = (summary["candidates"][n] for n in ("great", "poor", "Plain-Model"))
    # great wins 3 pairwise items and the rubric one; the biased coin verdicts cancel to a tie
    assert (great["wins"], great["ties"], great["losses"]) == (4, 1, 0)
    assert (poor["wins"], poor["ties"], poor["losses"]) == (0, 1, 4)
    assert great["win_rate"] == pytest.approx(0.9) and poor["win_rate"] == pytest.approx(0.1)
    assert great["interval"] == pytest.approx(wilson_by_roots(0.9, 5))
    assert poor["interval"] == pytest.approx(wilson_by_roots(0.1, 5))
    assert great["mean_score"] == 9 and poor["mean_score"] == 3 and base["mean_score"] == 6
    assert great["mean_calls"] == 1 and great["worst_case_calls"] == 1
    assert poor["worst_case_calls"] == 2 and base["baseline"] is True
    # each phase's points, from Poe's usage API: answers at each bot's price, then the judge
    assert (great["points"], poor["points"], base["points"]) == (150, 25, 50)
    assert summary["judge_points"] == 19 * 2
    assert great["mean_first_text_s"] > 0 and great["mean_done_s"] >= great["mean_first_text_s"]
    table = stdout.splitlines()
    assert table[3].split()[:4] == ["great", "90%", "46%-99%", "4/1/0"]
    assert "150" in table[3] and table[5].split()[:2] == ["Plain-Model", "baseline"]
    report = Path(out).with_suffix(".html")
    assert report.exists()
    if shutil.which("chromium"):  # the page test below opens it; here, a headless dump
        dom = await browser_dom(report)
        assert dom.count('<tr class="candidate">') == 2 and dom.count("<circle") == 3


async def browser_dom(page: Path) -> str:
    """The page as a real headless Chromium renders it."""
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `make test` installs it (Debian's package)"
    process = await asyncio.create_subprocess_exec(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={page.parent / 'chromium'}",
        "--dump-dom",
        page.as_uri(),
        stdout=PIPE,
        stderr=PIPE,
    )
    async with asyncio.timeout(60):
        out, _ = await process.communicate()
    return out.decode()


async def test_the_report_opens_in_a_real_browser_with_its_table_and_chart(
    tmp_path: Path,
) -> None:
    if not shutil.which("chromium"):
        pytest.skip("Chromium is not installed: `make test` installs Debian's package")
    config, items, out = files(tmp_path)
    code, stdout, err = await asyncio.to_thread(lambda: _dry_eval(config, items, out))
    assert code == 0, err
    dom = await browser_dom(Path(out).with_suffix(".html"))
    assert "<table" in dom and 'id="results"' in dom
    rows = re.findall(r'<tr class="(candidate|baseline)">\s*<td>([^<]+)</td>', dom)
    assert rows == [("candidate", "great"), ("candidate", "poor"), ("baseline", "Plain-Model")]
    chart = dom[dom.index('<svg id="chart"') : dom.index("</svg>")]
    assert chart.count("<circle") == 3 and "mean calls per message" in chart
    for name in ("great", "poor", "Plain-Model"):
        assert f"<title>{name}</title>" in chart


def _dry_eval(config: str, items: str, out: str) -> tuple[int, str, str]:
    import subprocess

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bots",
            "eval",
            "great",
            "poor",
            "--baseline",
            "Plain-Model",
            "--config",
            config,
            "--dataset",
            items,
            "--out",
            out,
            "--dry-run",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout, result.stderr


async def test_an_interrupted_eval_resumes_without_paying_again(tmp_path: Path) -> None:
    config, items, out = files(tmp_path)
    args = two_candidates(config, items, out, 1)
    async with StandIn(behaviors(judge_delay=0.2)) as standin:
        standin.add_api_key(KEY)
        process = await start_eval(standin, *args)
        async with asyncio.timeout(60):
            while True:  # until some verdicts are in, but not all of them
                await asyncio.sleep(0.1)
                if len(saved(out).get("judgements", {})) >= 3:
                    break
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
        assert process.returncode == 130
        assert f"interrupted: what was done is saved in {out}" in err.decode()
        kept = saved(out)
        done_before = len(kept["answers"]) + len(kept["judgements"])
        assert len(kept["answers"]) == 15 and 3 <= len(kept["judgements"]) < 19
        first_run = len(standin.requests)
        code, stdout, err2 = await run_eval(standin, *args)
        assert code == 0, err2
        second_run = len(standin.requests) - first_run
    assert second_run == 34 - done_before  # only what was not done: nothing is paid twice
    assert f"0 answers (at most 0 calls) and {19 - len(kept['judgements'])} judge calls" in stdout
    summary = saved(out)["summary"]
    assert summary["candidates"]["great"]["win_rate"] == pytest.approx(0.9)


async def test_concurrency_50_keeps_within_poes_rate_limit(tmp_path: Path) -> None:
    items = "".join(f"- Question {i}?\n" for i in range(10))
    config, dataset_path, out = files(tmp_path, items)
    args = (
        "great",
        "--baseline",
        "Plain-Model",
        "--judge",
        "Judge-Bot",
        "--config",
        config,
        "--dataset",
        dataset_path,
        "--concurrency",
        "50",
    )
    async with StandIn(behaviors()) as standin:
        standin.add_api_key(KEY)
        standin.api_rate = (20, 2.0)  # Poe's 500 a minute, scaled down to keep the test short
        started = time.monotonic()
        code, _, err = await run_eval(standin, *args, "--out", out, "--rate", "20/2")
        assert code == 0, err
        assert standin.rate_refused == 0 and not standin.refused
        assert len(standin.requests) == 20 + 20  # 10 items x 2 answers, then 10 x 2 verdicts
        assert time.monotonic() - started >= 2.0  # over 20 requests had to wait for the window
        # without the throttle's limit, the same eval earns Poe's 429s: the test can fail
        code, _, err = await run_eval(
            standin, *args, "--out", str(tmp_path / "fast.json"), "--rate", "1000/2"
        )
        assert standin.rate_refused > 0


def test_datasets_are_read_from_yaml_and_jsonl_with_mistakes_at_their_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "items.yaml"
    path.write_text("- Hello\n- {message: Hi, refrence: x}\n- {message: ''}\n")
    with pytest.raises(ConfigError) as caught:
        dataset.read(str(path))
    problems = [str(p) for p in caught.value.problems]
    assert problems[0].startswith(f"{path}:2:17: items[1].refrence: unknown key 'refrence'")
    assert "did you mean 'reference'?" in problems[0]
    assert problems[1].startswith(f"{path}:3:4: items[2].message:")
    lines = tmp_path / "items.jsonl"
    lines.write_text('"Hello"\n{"message": "Hi", "rubric": "short"}\n\n{"message": 3}\n{oops\n')
    with pytest.raises(ConfigError) as caught:
        dataset.read(str(lines))
    problems = [str(p) for p in caught.value.problems]
    assert problems[0].startswith(f"{lines}:4:1: message: got 3")
    assert problems[1].startswith(f"{lines}:5:2: not JSON")
    lines.write_text('"Hello"\n{"message": "Hi", "rubric": "short"}\n')
    found = dataset.read(str(lines))
    assert [i.message for i in found] == ["Hello", "Hi"] and found[1].rubric == "short"
    lines.write_text('"Hello"\n"Hello"\n{"message": 3}\n"Hi"\n"Hi"\n')
    with pytest.raises(ConfigError) as caught:  # every mistake at once, duplicates too
        dataset.read(str(lines))
    problems = [str(p) for p in caught.value.problems]
    assert "2:1: the message 'Hello' is there twice (first at line 1)" in problems[0]
    assert problems[1].startswith(f"{lines}:3:1: message: got 3")
    assert "5:1: the message 'Hi' is there twice (first at line 4)" in problems[2]


def test_verdicts_scores_and_both_orders_read_as_documented() -> None:
    assert judge.verdict("Thinking... A is better.\nVERDICT: **B**") == "B"
    assert judge.verdict("no verdict here") is None
    assert judge.score("SCORE: 7") == 7 and judge.score("SCORE: 11") is None
    assert judge.item_outcome("A", "B") == 1.0  # both orders prefer the candidate
    assert judge.item_outcome("B", "A") == 0.0
    assert judge.item_outcome("A", "A") == 0.5  # a position-biased judge: a tie
    assert judge.item_outcome("TIE", "B") == 0.5 and judge.item_outcome(None, "A") is None
    assert evals.wilson(0.9, 5) == pytest.approx(wilson_by_roots(0.9, 5))


async def test_bad_eval_commands_say_what_to_fix(tmp_path: Path) -> None:
    config, items, out = files(tmp_path)
    (tmp_path / "prompt.txt").write_text("Judge {{ answer_a }}")
    async with StandIn({}) as standin:
        for args, message in [
            (("nope", "--baseline", "GPT-5"), "no bot 'nope' in"),
            (("great", "--baseline", "GPT 5"), "--baseline 'GPT 5' is not a Poe bot name"),
            (("great", "--baseline", "GPT-5", "--answers", items), "add --dry-run"),
            (("great", "--baseline", "GPT-5", "--rate", "fast"), "expected REQUESTS/SECONDS"),
            (
                ("great", "--baseline", "GPT-5", "--judge-prompt", str(tmp_path / "prompt.txt")),
                "the judge prompt uses answer_a; it may use a, b, message, reference, rubric",
            ),
        ]:
            code, _, err = await run_eval(
                standin, *args, "--config", config, "--dataset", items, "--out", out
            )
            assert code == 2 and message in err, (args, err)
        await asyncio.to_thread(Path(out).write_text, "my notes, not results")
        code, _, err = await run_eval(
            standin,
            "great",
            "--baseline",
            "GPT-5",
            "--dry-run",
            "--config",
            config,
            "--dataset",
            items,
            "--out",
            out,
        )
        assert code == 2 and "cannot be read as an eval's results" in err
        kept = await asyncio.to_thread(Path(out).read_text)
        assert kept == "my notes, not results"  # never overwritten


async def test_runs_keep_apart_and_failed_answers_can_be_asked_again(tmp_path: Path) -> None:
    config, items, out = files(tmp_path)
    base = ("great", "--judge", "Judge-Bot", "--config", config, "--dataset", items, "--out", out)
    code, _, err = await asyncio.to_thread(_dry_eval, config, items, out)
    assert code == 0, err
    async with StandIn(behaviors()) as standin:
        standin.add_api_key(KEY)
        standin.bots["Great-Model"].behavior = Behavior(http_status=500)
        code, stdout, err = await run_eval(standin, *base, "--baseline", "Plain-Model")
        assert code == 0, err  # a live run reads nothing of the dry run's: it answers anew
        assert "10 answers (at most 10 calls) and 10 judge calls to make\n" in stdout
        assert saved(out)["summary"]["candidates"]["great"]["failures"] == 5
        standin.bots["Great-Model"].behavior = answer_of("Great-Model")
        before = len(standin.requests)
        code, stdout, err = await run_eval(
            standin, *base, "--baseline", "Plain-Model", "--retry-failed"
        )
        assert code == 0, err
        assert "asking again for 5 answers that failed" in stdout
        assert len(standin.requests) - before == 5 + 9  # the failed answers, and their verdicts
        assert saved(out)["summary"]["candidates"]["great"]["win_rate"] == pytest.approx(0.9)
        before = len(standin.requests)
        code, stdout, err = await run_eval(standin, *base, "--baseline", "Poor-Model")
        assert code == 0, err  # another baseline: its answers, and every verdict, are new
        assert len(standin.requests) - before == 5 + 9
        assert saved(out)["summary"]["candidates"]["great"]["win_rate"] == pytest.approx(0.9)
