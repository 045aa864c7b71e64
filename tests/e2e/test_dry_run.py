"""`serve --dry-run`: the whole HTTP path without Poe, fastapi_poe's own client included, with
simulated or scripted dependency bots."""

from __future__ import annotations

from pathlib import Path

import fastapi_poe as fp

from standin.serving import serving_process


async def ask(url: str, bot: str, text: str) -> str:
    """What fastapi_poe's client (as an external application uses it) gets from our server."""
    said = ""
    messages = [fp.ProtocolMessage(role="user", content=text)]
    async for part in fp.get_bot_response(
        messages=messages, bot_name=bot, api_key="k" * 32, base_url=f"{url}/"
    ):
        said = part.text if part.is_replace_response else said + part.text
    return said


async def test_a_dry_run_server_answers_fastapi_poes_client_with_scripted_bots(
    tmp_path: Path,
) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(
        "answers:\n  topic: code\n  Claude-Sonnet-4.5: Use reversed().\n  samples: 'ANSWER: 4'\n"
    )
    args = ["-m", "bots", "serve", "--dry-run", "--delay", "0", "--answers", str(answers)]
    async with serving_process(*args) as (url, _):
        routed = await ask(url, "router", "How do I reverse a list?")
        solved = await ask(url, "solver", "What is 2 + 2?")
        echoed = await ask(url, "council", "Hi")
    assert routed == "Use reversed()."
    assert "reached this final answer: ANSWER: 4" in solved  # the explainer echoes its prompt
    assert "### gpt" in echoed and "Hi" in echoed  # unscripted bots echo what they were sent
