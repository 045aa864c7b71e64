"""`python -m bots models`, run as a creator runs it, against the stand-in's `GET /v1/models`:
the catalog is fetched, kept beside the pipelines file with its day, listed and searched; then
`validate` and `main.py` use it. Nothing here reaches the network."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from asyncio.subprocess import PIPE
from pathlib import Path

import httpx

from bots.spec import catalog
from standin.poe import Behavior, StandIn
from standin.serving import ROOT

PRICED = [
    {
        "id": "Claude-Sonnet-4.5",
        "object": "model",
        "created": 1_758_868_894_776,
        "owned_by": "Anthropic",
        "description": "Anthropic's Claude",
        "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]},
        "pricing": {"prompt": "0.0000026", "completion": "0.000013", "image": None},
        "metadata": {"display_name": "Claude Sonnet 4.5"},  # a field this project leaves alone
    },
    {
        "id": "Imagen-4",
        "object": "model",
        "created": 1_758_868_894_776,
        "owned_by": "Google",
        "architecture": {"input_modalities": ["text"], "output_modalities": ["image"]},
        "pricing": None,
    },
]


async def bots(*args: str, url: str, cwd: Path = ROOT) -> tuple[int, str, str]:
    env = {**os.environ, "POE_MODELS_URL": url, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, cwd=cwd, stdout=PIPE, stderr=PIPE, env=env
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_standin_serves_the_catalog_in_poes_shape_without_a_key() -> None:
    async with StandIn({"A": Behavior()}) as standin, httpx.AsyncClient() as http:
        listed = (await http.get(standin.models_url)).json()
        assert listed["object"] == "list" and [m["id"] for m in listed["data"]] == ["A"]
        assert listed["data"][0]["architecture"]["output_modalities"] == ["text"]
        assert (await http.post(standin.models_url)).status_code == 405


async def test_models_fetches_keeps_and_searches_the_catalog_then_validate_uses_it(
    tmp_path: Path,
) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text(
        "version: 1\nbots:\n  x:\n    steps:\n      - {bot: Claude-Sonnet-4.5, retries: 1}\n"
        "      - {bot: Imagen-4}\n      - {bot: Clade-Sonnet-4.5}\n"
    )
    async with StandIn({}) as standin:
        standin.catalog = PRICED
        code, out, err = await bots(
            "models", "claude", "--config", str(pipelines), url=standin.models_url
        )
    assert code == 0, err
    kept = tmp_path / catalog.FILE_NAME
    assert f"fetched 2 models from {standin.models_url}; kept in {kept}" in err
    # 2,000 tokens in at $0.0000026 and 1,000 out at $0.000013: $0.0182 a call
    header, row = out.splitlines()
    assert header.split()[:5] == ["model", "owner", "takes", "makes", "USD"]
    assert row.split() == ["Claude-Sonnet-4.5", "Anthropic", "text,image", "text", "$0.0182"]
    assert header.index("makes") == row.index("text ")  # the columns line up
    saved = json.loads(kept.read_text())
    assert saved["fetched"] == datetime.date.today().isoformat() and not saved["snapshot"]
    assert saved["source"] == standin.models_url

    code, out, err = await bots("validate", "--config", str(pipelines), url="http://127.0.0.1:9")
    assert code == 0, err
    assert "x  Claude-Sonnet-4.5 $0.0182 x2" in out
    assert "worst case at least $0.0364 a message; no price for Imagen-4, Clade-Sonnet-4.5" in out
    assert "7:10: warning: bots.x.steps[2].bot: 'Clade-Sonnet-4.5' is not in Poe's catalog" in err
    assert "did you mean 'Claude-Sonnet-4.5'?" in err and "1 warning (--strict" in err
    code, out, err = await bots("validate", "--strict", "--config", str(pipelines), url="")
    assert code == 1 and out == "" and "1 problem found" in err


async def test_unreachable_poe_lists_the_catalog_at_hand_and_says_why(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text("version: 1\nbots:\n  x: {steps: [{bot: GPT-5}]}\n")
    async with StandIn({}) as standin:
        down = standin.models_url
    code, out, err = await bots("models", "veo", "--config", str(pipelines), url=down)
    assert code == 0, err
    assert f"cannot reach {down} (ConnectError: " in err
    assert "listing Poe's catalog (the snapshot shipped" in err
    assert [line.split()[0] for line in out.splitlines()] == ["model", "Veo-3", "Veo-3.1"]
    assert "no prices and no input modalities" in err  # the snapshot says what it is
    assert not (tmp_path / catalog.FILE_NAME).exists()
    code, out, _ = await bots(
        "models", "no-such-model", "--offline", "--config", str(pipelines), url=down
    )
    assert code == 1 and "no model of Poe's catalog (the snapshot shipped" in out


async def test_a_file_of_that_name_that_is_no_catalog_is_never_overwritten(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text("version: 1\nbots:\n  x: {steps: [{bot: A}]}\n")
    mine = tmp_path / catalog.FILE_NAME
    mine.write_text('{"my": "notes"}')
    async with StandIn({"A": Behavior()}) as standin:
        code, _, err = await bots("models", "--config", str(pipelines), url=standin.models_url)
    assert code == 2 and "is not a catalog this tool wrote: move it away" in err
    assert mine.read_text() == '{"my": "notes"}'
    # validate says so as a warning, and goes on without it (--strict stops)
    code, out, err = await bots("validate", "--config", str(pipelines), url="")
    assert code == 0 and out.startswith("x  A x1  total 1/10")
    assert "poe-models.json:1:1: warning: it is not a catalog: source: Field required" in err
    assert "move it away (or delete it), then run python -m bots models" in err
    code, out, err = await bots("validate", "--strict", "--config", str(pipelines), url="")
    assert code == 1 and out == "" and "1 problem found" in err
    # a link (or a leftover) where the new text is written first is never written through
    mine.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    for name in (".poe-models.json.partial", ".poe-models.json.tmp"):
        (tmp_path / name).symlink_to(victim)
    async with StandIn({"A": Behavior()}) as standin:
        code, _, err = await bots("models", "--config", str(pipelines), url=standin.models_url)
    assert code == 0, err
    assert victim.read_text() == "mine" and not mine.is_symlink()
    assert json.loads(mine.read_text())["data"][0]["id"] == "A"


async def test_a_hostile_catalog_answer_is_refused_with_a_reason(tmp_path: Path) -> None:
    pipelines = tmp_path / "pipelines.yaml"
    pipelines.write_text("version: 1\nbots:\n  x: {steps: [{bot: A}]}\n")
    kept = tmp_path / catalog.FILE_NAME
    async with StandIn({}) as standin:
        # one entry it cannot read does not cost the rest of the list; it is named
        standin.catalog = [
            {"id": "A", "pricing": {"prompt": "1e999999"}},
            {"id": "B", "pricing": {"prompt": "0.000001"}},
            [],
        ]
        code, _, err = await bots("models", "--config", str(pipelines), url=standin.models_url)
        assert code == 0 and "fetched 1 models" in err and "left out 2" in err
        assert "A: pricing.prompt: Input should be less than or equal to 1000000" in err
        assert [m["id"] for m in json.loads(kept.read_text())["data"]] == ["B"]
        kept.unlink()
        standin.catalog = [{"id": ""}]
        code, _, err = await bots("models", "--config", str(pipelines), url=standin.models_url)
        assert code == 0 and "sent no model this project can read" in err
        assert "listing Poe's catalog (the snapshot" in err
        wrong = standin.models_url + "z"
        code, _, err = await bots("models", "--config", str(pipelines), url=wrong)
        assert code == 0 and f"{wrong} answered HTTP 404; listing" in err
    assert not kept.exists()
