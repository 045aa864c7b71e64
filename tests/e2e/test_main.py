"""main.py, the Modal app. Modal's servers cannot be reached here: these tests check what can
be checked locally, and run the web function's body against the Poe stand-in."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import pytest

from standin.poe import Behavior, StandIn
from standin.served import key_for
from standin.serving import ROOT, serve_app, serving_process
from standin.user import poe_query


def _decorators() -> dict[str, dict[str, str]]:
    """The decorators on main.fastapi_app and their keyword arguments, as source text."""
    tree = ast.parse((ROOT / "main.py").read_text())
    function = next(
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "fastapi_app"
    )
    found = {}
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        name = ast.unparse(call.func if call else decorator)
        found[name] = {
            kw.arg or "": ast.unparse(kw.value) for kw in (call.keywords if call else [])
        }
    return found


def test_main_defines_exactly_one_asgi_web_function() -> None:
    import main

    assert main.app.name == "poe-pipelines"
    with warnings.catch_warnings():  # modal 1.6 deprecates these listings, with no successor yet
        warnings.simplefilter("ignore")
        assert main.app.registered_web_endpoints == ["fastapi_app"]
        assert list(main.app.registered_functions) == ["fastapi_app"]
        assert main.app.registered_classes == {}
    decorators = _decorators()
    assert set(decorators) == {"app.function", "modal.concurrent", "modal.asgi_app"}
    function = decorators["app.function"]
    assert function["image"] == "image"
    assert function["secrets"] == "[modal.Secret.from_name(SECRET_NAME)]"
    assert function["timeout"] == "TIMEOUT_SECONDS" and main.TIMEOUT_SECONDS == 600
    assert function["cpu"] == "CPU" and main.CPU == 1.0  # one event loop uses one core
    assert decorators["modal.concurrent"] == {
        "max_inputs": "CONCURRENT_CHATS",
        "target_inputs": "TARGET_CHATS",
    }
    assert 10 <= main.TARGET_CHATS < main.CONCURRENT_CHATS


def test_image_installs_the_pinned_runtime_requirements_only() -> None:
    import main

    wanted = main.runtime_requirements()
    assert "fastapi-poe==0.0.83" in wanted and "modal==1.6.4" in wanted
    assert all("==" in line for line in wanted)
    assert not any(line.startswith(("pytest", "mypy", "ruff", "hypothesis")) for line in wanted)
    tracing = {"opentelemetry-sdk==1.45.2", "opentelemetry-exporter-otlp-proto-http==1.45.2"}
    assert main.TRACING and tracing <= set(wanted)
    assert set(main.runtime_requirements(tracing=False)) == set(wanted) - tracing


def import_main(
    folder: Path, code: str = "import main", pipelines: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh Python in `folder`, as `modal deploy` imports main.py on the
    creator's machine (with PIPELINES set when `pipelines` is given)."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    if pipelines is not None:
        env["PIPELINES"] = pipelines
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        env=env,
    )


def test_a_broken_pipelines_file_stops_the_import_with_the_validators_message(
    tmp_path: Path,
) -> None:
    (tmp_path / "main.py").write_text((ROOT / "main.py").read_text())
    (tmp_path / "requirements.txt").write_text((ROOT / "requirements.txt").read_text())
    (tmp_path / "pipelines.yaml").write_text(
        "version: 1\nbots:\n  x:\n    steps: [{bot: A, retries: 9}]\n"
    )
    result = import_main(tmp_path)
    assert result.returncode == 1
    assert "pipelines.yaml:4:22: bots.x.steps[0].retries: got 9" in result.stderr
    assert "fix it before deploying or serving" in result.stderr
    assert "Traceback" not in result.stderr


def test_pipelines_names_the_file_deployed_and_only_its_bots_are_served(tmp_path: Path) -> None:
    """`PIPELINES=mine.yaml modal deploy main.py`: main.py imports with that file, as Modal's
    deploy does on the creator's machine, and names only its bots."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("version: 1\nbots:\n  mine: {steps: [{bot: GPT-5}]}\n")
    code = "import main; print(sorted(main.CONFIG.bots), main.CONFIG_PATH.name)"
    result = import_main(tmp_path, code, "mine.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['mine'] mine.yaml"
    mine.write_text("version: 1\nbots:\n  mine: {steps: [{bot: GPT 5}]}\n")
    broken = import_main(tmp_path, code, "mine.yaml")
    assert (
        broken.returncode == 1 and "mine.yaml is invalid: fix it before deploying" in broken.stderr
    )
    # deploying is strict about Poe's model catalog: a misspelt model stops it
    mine.write_text("version: 1\nbots:\n  mine: {steps: [{bot: GPT-5-mni}]}\n")
    misspelt = import_main(tmp_path, code, "mine.yaml")
    assert misspelt.returncode == 1 and "did you mean 'GPT-5-mini'?" in misspelt.stderr
    assert "mine.yaml:3:19: bots.mine.steps[0].bot: 'GPT-5-mni' is not in" in misspelt.stderr
    # ... and a private bot named under known_bots is taken
    mine.write_text(
        "version: 1\nknown_bots: [GPT-5-mni]\nbots:\n  mine: {steps: [{bot: GPT-5-mni}]}\n"
    )
    known = import_main(tmp_path, code, "mine.yaml")
    assert known.returncode == 0, known.stderr


def test_serving_on_modal_never_imports_the_studio_or_the_creators_tools(tmp_path: Path) -> None:
    code = (
        "import sys, main; main.fastapi_app.local(); "
        "print(sorted(m for m in sys.modules if m.startswith(('bots.studio', 'bots.tools'))))"
    )
    result = import_main(ROOT, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


async def test_the_web_functions_body_serves_every_bot_over_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import main

    names = {
        "GPT-5": "g",
        "Claude-Sonnet-4.5": "c",
        "Gemini-2.5-Pro": "m",
        "Claude-Opus-4.1": "o",
        "GPT-5-mini": "code",
        "GPT-5-nano": "n",
        "Gemini-2.5-Flash": "f",
        "Imagen-4": "i",
    }
    async with StandIn({name: Behavior(text=text) for name, text in names.items()}) as standin:
        standin.allow_any_caller = True
        monkeypatch.setenv("POE_BASE_URL", standin.base_url)
        for plan in main.CONFIG.bots.values():
            monkeypatch.setenv(plan.access_key_env, key_for(plan.id))
        app = main.fastapi_app.local()  # the body Modal runs in the container
        async with serve_app(app) as url, httpx.AsyncClient(timeout=30) as http:
            for bot_id in main.CONFIG.bots:
                reply = await poe_query(http, f"{url}/{bot_id}", key_for(bot_id), "hello")
                assert reply.status == 200 and reply.done, bot_id
                assert reply.text and not reply.errors, (bot_id, reply.errors)


async def test_deployed_a_bot_without_its_key_refuses_every_request_and_says_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On Modal, a bot whose key variable is missing from the secret does not serve openly:
    it answers 503, whatever the caller sends, and the log names the variable and the secret.
    The other bots serve as usual."""
    import main

    for plan in main.CONFIG.bots.values():
        monkeypatch.setenv(plan.access_key_env, key_for(plan.id))
    monkeypatch.delenv("COUNCIL_ACCESS_KEY")
    async with StandIn({"GPT-5-mini": Behavior(text="other"), "Gemini-2.5-Pro": Behavior()}) as s:
        s.allow_any_caller = True
        monkeypatch.setenv("POE_BASE_URL", s.base_url)
        app = main.fastapi_app.local()
        async with serve_app(app) as url, httpx.AsyncClient(timeout=30) as http:
            keyless = await poe_query(http, f"{url}/council", None, "hello")
            guessed = await poe_query(http, f"{url}/council", "x" * 32, "hello")
            other = await poe_query(http, f"{url}/router", key_for("router"), "hello")
    assert keyless.status == guessed.status == 503
    assert "COUNCIL_ACCESS_KEY is not set" in keyless.body["detail"]
    assert other.status == 200 and other.done
    error = next(r.getMessage() for r in caplog.records if "COUNCIL_ACCESS_KEY" in r.getMessage())
    assert "refuses every request" in error and "Modal secret 'poe-pipelines'" in error


MODAL_LIKE = """
import sys, uvicorn, main
uvicorn.run(main.fastapi_app.local(), host="127.0.0.1", port=int(sys.argv[-1]), log_config=None)
"""


async def test_run_as_modal_runs_it_each_message_logs_one_json_line(tmp_path: Path) -> None:
    """Modal runs `main.fastapi_app` under its own ASGI server, which configures no logging.
    Each message still makes one JSON line on stderr (what `modal app logs` shows): bot,
    message id, calls made and declared, seconds, outcome, and each failed call's step, bot and
    reason. Neither the user's text nor anything a dependency wrote, nor a key, appears."""
    import main

    marker = "zebra-4417-private"
    behaviors = {
        "GPT-5": Behavior(text="g"),
        "Claude-Sonnet-4.5": Behavior(text="c"),
        "Gemini-2.5-Pro": Behavior(error_at=0, error_text=f"cannot answer {marker}"),
        "Claude-Opus-4.1": Behavior(text="verdict"),
    }
    env = {plan.access_key_env: key_for(plan.id) for plan in main.CONFIG.bots.values()}
    async with StandIn(behaviors) as standin:
        standin.allow_any_caller = True
        env["POE_BASE_URL"] = standin.base_url
        with (tmp_path / "stderr.txt").open("w") as output:
            async with serving_process("-c", MODAL_LIKE, env=env, output=output) as (url, _):
                async with httpx.AsyncClient(timeout=30) as http:
                    reply = await poe_query(
                        http, f"{url}/council", key_for("council"), f"tell me {marker}"
                    )
    assert reply.done and "verdict" in reply.text
    logged = (tmp_path / "stderr.txt").read_text()
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    replies = [line for line in lines if line.get("event") == "reply"]
    assert len(replies) == 1, logged
    line = replies[0]
    assert line["bot"] == "council" and line["outcome"] == "done"
    assert line["message_id"] == standin.requests[-1]["message_id"]
    assert (line["calls"], line["calls_declared"]) == (5, 5)  # Gemini's retry counts too
    assert isinstance(line["seconds"], float)
    assert (
        line["failed_calls"]
        == [{"step": "steps[0].parallel[2]", "bot": "Gemini-2.5-Pro", "reason": "it sent an error"}]
        * 2
    )
    assert marker not in logged
    assert not any(key_for(plan.id) in logged for plan in main.CONFIG.bots.values())


async def test_python_main_py_serves_the_same_bots_locally() -> None:
    import main

    async with serving_process("main.py") as (url, _), httpx.AsyncClient() as http:
        index = (await http.get(url + "/")).json()
    assert set(index) == set(main.CONFIG.bots)
    assert index["council"]["dependencies"] == main.CONFIG.bots["council"].dependencies
