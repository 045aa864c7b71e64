"""`python -m bots test`, run as a creator runs it: the shipped cases, and a test of the tester."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from asyncio.subprocess import PIPE
from pathlib import Path

import yaml

from bots.spec import loader
from standin.serving import ROOT


async def bots_test(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "test", *args, cwd=ROOT, stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cases.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


async def test_the_shipped_cases_pass_and_cover_every_bot() -> None:
    code, out, err = await bots_test()
    assert code == 0, out + err
    shipped = yaml.safe_load((ROOT / "pipelines.tests.yaml").read_text())["cases"]
    assert out.count("PASS  ") == len(shipped) and "FAIL" not in out
    assert f"{len(shipped)} passed, 0 failed" in out
    assert {case["bot"] for case in shipped} == set(loader.load(ROOT / "pipelines.yaml").bots)
    routes = {
        case["expect"]["route"]["steps[1]"]
        for case in shipped
        if case["bot"] == "router" and "route" in case.get("expect", {})
    }
    assert routes == {"code", "math", "writing", "default"}  # every case of the router


async def test_wrong_expectations_fail_with_what_was_expected_and_what_happened(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        cases:
          - name: right
            bot: router
            answers: {topic: code}
            expect: {route: {"steps[1]": code}}
          - name: wrong in every way
            bot: router
            message: How do I reverse a list?
            answers: {topic: code, Claude-Sonnet-4.5: Use reversed().}
            expect:
              route: {"steps[1]": math}
              calls: 1
              max_calls: 1
              called: {GPT-5: 1}
              not_called: [Claude-Sonnet-4.5]
              reply_contains: [banana]
              reply_not_contains: [reversed]
              reply_matches: "^Nope"
              ran: [topic]
              skipped: ["steps[1]"]
              failed: [topic]
              error: boom
              files: 2
          - name: a pipeline that stops is a failure unless expected
            bot: race
            answers: {GPT-5-mini: {fail: HTTP 500}, Gemini-2.5-Flash: {fail: HTTP 500}}
        """,
    )
    code, out, _ = await bots_test("--cases", path)
    assert code == 1
    assert "PASS  router: right  (2 calls)" in out
    assert f"FAIL  router: wrong in every way  ({path}:7)" in out
    for message in [
        "reply_contains: 'banana' is not in the reply; it ends 'Use reversed().'",
        "reply_not_contains: 'reversed' is in the reply, here: 'Use reversed().'",
        "reply_matches: '^Nope' does not match the reply",
        "calls: expected 1, made 2 (GPT-5-mini 1, Claude-Sonnet-4.5 1)",
        "max_calls: expected at most 1, made 2",
        "called: expected GPT-5 once, called 0 times",
        "not_called: Claude-Sonnet-4.5 was called once",
        "route steps[1]: expected math, took code",
        "skipped: steps[1] ran",
        "failed: topic did not fail",
        "error: expected a failure note containing 'boom'; it finished without one",
        "files: expected 2 shown, the reply showed 0",
        "steps[1]                     route                        |",  # the trace follows
        "(compared 'code': took code)",
        "the pipeline stopped: every branch of the race failed",
    ]:
        assert message in out, message
    assert "ran: topic" not in out  # a met expectation is not reported
    assert "1 passed, 2 failed" in out


async def test_a_bad_cases_file_exits_2_with_each_mistake_at_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        cases:
          - name: one
            bot: routr
          - name: one
            bot: router
            params: {aspect: "1:1"}
            answers: {topc: code}
            expect: {called: {GPT-4: 1}, route: {"steps[1]": cod}, calls: 9, ran: [nope]}
        """,
    )
    code, out, err = await bots_test("--cases", path)
    assert code == 2 and out == ""
    for message in [
        f"{path}:4:5: cases[0].bot: no bot 'routr' in pipelines.yaml; did you mean 'router'? "
        "its bots: council, router",
        f"{path}:5:5: cases[1].name: the name 'one' is taken by case 1",
        f"{path}:7:5: cases[1].params: aspect: no control has that name; the controls: none",
        f"{path}:8:15: cases[1].answers.topc: 'topc' is neither a step id",
        f"{path}:9:23: cases[1].expect.called.GPT-4: /router never calls 'GPT-4'",
        "cases[1].expect.route.steps[1]: 'cod' is not a case of steps[1]; its cases: code, math",
        "cases[1].expect.calls: /router makes at most 2 calls (its worst case), not 9",
        f"{path}:9:76: cases[1].expect.ran[0]: /router has no step 'nope' (ids: topic; or a",
        f"{path}: 8 problems found",
    ]:
        assert message in err, message
    path = write(  # a case's own mistake does not hide what another gets wrong about the bots
        tmp_path,
        "version: 1\ncases:\n  - name: x\n    bot: router\n    expect: {cals: 2}\n"
        "  - {name: y, bot: routr}\n",
    )
    code, _, err = await bots_test("--cases", path)
    assert code == 2 and f"{path}:5:14: cases[0].expect.cals: unknown key 'cals'" in err
    assert "did you mean 'calls'?" in err
    assert f"{path}:6:15: cases[1].bot: no bot 'routr' in pipelines.yaml" in err
    assert "2 problems found" in err
    path = write(
        tmp_path,
        "version: 1\ncases:\n  - {name: x, bot: router, expect: {route: {steps[1]: code}}}\n",
    )
    code, _, err = await bots_test("--cases", path)
    assert code == 2 and "a key holding '[' (a step's place, like steps[1]) must be quoted" in err


async def test_k_selects_cases_and_a_missing_file_is_explained(tmp_path: Path) -> None:
    code, out, _ = await bots_test("-k", "ROUTER")
    assert code == 0 and out.count("PASS") == 5 and "council" not in out
    code, out, _ = await bots_test("-k", "no such case")
    assert code == 1 and "no case of pipelines.tests.yaml matches -k 'no such case'" in out
    code, _, err = await bots_test("--cases", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml:1:1: cannot read the file: No such file or directory" in err


async def test_a_regex_that_backtracks_without_end_fails_its_case_in_bounded_time(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        cases:
          - name: catastrophic
            bot: race
            answers:
              Gemini-2.5-Flash: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab
              GPT-5-mini: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab
            expect: {reply_matches: "^(a|aa)+$"}
        """,
    )
    code, out, _ = await bots_test("--cases", path)  # within bots_test's 60 s, or it fails
    assert code == 1
    assert "reply_matches: '^(a|aa)+$' took over 1 s on the reply" in out
