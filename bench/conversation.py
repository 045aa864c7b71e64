"""Long conversations: what our metadata adds to each later request, and how a 1,000-message
conversation (where Poe's spec says it may start truncating) is handled.

    .venv/bin/python -m bench.conversation            # English and CJK replies, a table + JSON
    .venv/bin/python -m bench.conversation --quick    # fewer repeats (the test suite runs this)

The council of pipelines.yaml answers a few real turns, its dependencies (stand-in bots on
127.0.0.1) each answering about 2,000 characters. Poe resends every earlier message with the
metadata its reply sent, so the figures are:

- metadata per turn: the characters of the reply's last `data` event, and the bytes it adds to
  every later request (as a JSON string inside Poe's request body);
- a 1,000-message conversation, 500 turns of 400-character user messages and the council's
  real replies with their real metadata: the request's size, its status, and the time from
  POST to the first event and to `done` (median of the repeats), beside the same question with
  no history. The dependencies answer at once, so the time is the server's handling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bots.serve.server import build_app
from bots.spec import loader
from standin.poe import Behavior, StandIn
from standin.serving import serve_app
from standin.user import poe_query

ROOT = Path(__file__).resolve().parent.parent
COUNCIL = ("GPT-5", "Claude-Sonnet-4.5", "Gemini-2.5-Pro", "Claude-Opus-4.1")
ANSWER_CHARS = 2_000
USER_CHARS = 400
TURNS = 3
DEFAULT_OUT = "bench-results/latest/conversation.json"


def answer_text(script: str, bot: str) -> str:
    """About ANSWER_CHARS characters of a plausible answer, in English or Chinese."""
    if script == "cjk":
        sentence = f"{bot}认为这个问题的答案取决于具体情况，我们需要仔细分析每一个步骤。"
    else:
        sentence = f"{bot} thinks the answer depends on the details, so let us go step by step. "
    return (sentence * (ANSWER_CHARS // len(sentence) + 1))[:ANSWER_CHARS]


def user_text(script: str, turn: int) -> str:
    base = "请解释一下这个概念，并给出例子。" if script == "cjk" else "Please explain this idea. "
    return f"{turn}: " + (base * (USER_CHARS // len(base) + 1))[: USER_CHARS - 6]


async def measure(script: str, repeats: int) -> dict[str, Any]:
    config = loader.load(ROOT / "pipelines.yaml")
    behaviors = {bot: Behavior(text=answer_text(script, bot)) for bot in COUNCIL}
    key = "council-access-key".ljust(32, "k")
    env = {plan.access_key_env: key for plan in config.bots.values()}
    async with StandIn(behaviors) as standin:
        standin.allow_any_caller = True
        app = build_app(config, environ=env, base_url=standin.base_url)
        async with serve_app(app) as url, httpx.AsyncClient(timeout=300) as http:
            bot_url = f"{url}/council"
            history: list[dict[str, Any]] = []
            per_turn = []
            for turn in range(TURNS):
                user = {"role": "user", "content": user_text(script, turn)}
                reply = await poe_query(http, bot_url, key, [*history, user])
                metadata = reply.data[-1] if reply.data else None
                per_turn.append(
                    {
                        "reply_chars": len(reply.text),
                        "metadata_chars": len(metadata or ""),
                        "metadata_bytes_in_request": len(json.dumps(metadata).encode()),
                    }
                )
                bot = {"role": "bot", "content": reply.text, "metadata": metadata}
                history += [user, bot]
            # 1,000 messages: 500 turns, the real replies and metadata over and over
            turns = [history[i : i + 2] for i in range(0, len(history), 2)]
            long: list[dict[str, Any]] = []
            for i in range(500):
                user, bot = turns[i % len(turns)]
                long += [{**user, "content": user_text(script, i)}, bot]
            long[-1:] = []  # ... then the new question: 1,000 messages in all
            long.append({"role": "user", "content": user_text(script, 500)})
            body_bytes = len(json.dumps({"query": long}).encode())
            timings = {"short": await _timed(http, bot_url, key, long[-1:], repeats)}
            timings["long"] = await _timed(http, bot_url, key, long, repeats)
    return {
        "script": script,
        "per_turn": per_turn,
        "conversation": {"messages": len(long), "request_bytes": body_bytes, **timings},
    }


async def _timed(
    http: httpx.AsyncClient, url: str, key: str, messages: list[dict[str, Any]], repeats: int
) -> dict[str, Any]:
    firsts, dones, statuses = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        reply = await poe_query(http, url, key, messages)
        statuses.append(reply.status)
        if reply.first_event_at is not None and reply.done_at is not None:
            firsts.append(reply.first_event_at)
            dones.append(reply.done_at)
        else:
            dones.append(time.perf_counter() - start)
    return {
        "statuses": sorted(set(statuses)),
        "first_event_s": round(statistics.median(firsts), 3) if firsts else None,
        "done_s": round(statistics.median(dones), 3),
    }


def report(results: list[dict[str, Any]]) -> str:
    lines = ["metadata each council reply adds to every later request:"]
    for r in results:
        for i, t in enumerate(r["per_turn"], 1):
            lines.append(
                f"  {r['script']:<7} turn {i}: reply {t['reply_chars']:,} chars, metadata "
                f"{t['metadata_chars']:,} chars = {t['metadata_bytes_in_request']:,} bytes"
            )
    lines.append("a 1,000-message conversation (500 council turns):")
    for r in results:
        c = r["conversation"]
        lines.append(
            f"  {r['script']:<7} {c['request_bytes'] / 1e6:.2f} MB, HTTP {c['long']['statuses']}, "
            f"first event {c['long']['first_event_s']} s, done {c['long']['done_s']} s "
            f"(no history: done {c['short']['done_s']} s)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m bench.conversation")
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 5
    results = [asyncio.run(measure(script, repeats)) for script in ("english", "cjk")]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
