"""Samples that stop once they agree, against a fixed count at the same ceiling: calls per
question and the vote's accuracy, on questions whose answers agree at known rates.

Each question has a right answer; each sample gives it with probability `p` (0.9 for an easy
question, 0.4 for a hard one), else one of three wrong answers at random. Every question is
answered twice through the real engine (`bots.tools.transcript`), with the same seeded draws:
by `repeat: 9` and a vote, and by waves of 3 up to 9 that stop once 3 agree, and a vote. The
samplers answer at once, so the figures are counts, not times.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncGenerator
from typing import Any

import fastapi_poe as fp

from bots.run.client import ANYWHERE, CallSite
from bots.spec import loader
from bots.tools import transcript

PIPELINES = """\
version: 1
call_budget: 20
bots:
  fixed:
    steps:
      - {id: samples, bot: Sampler, repeat: 9}
      - {text: "{{ samples | map('lines') | select | map('last') | list | vote }}"}
  waves:
    steps:
      - id: samples
        bot: Sampler
        repeat: {max: 9, wave: 3, agree: 3, key: "{{ answer | lines | last | default('') }}"}
      - {text: "{{ samples | map('lines') | select | map('last') | list | vote }}"}
"""
MIXES = {"easy": [0.9], "hard": [0.4], "mixed": [0.9, 0.4]}


class Sampler:
    """Answers each sample of one question: right with probability `p`, else a wrong answer."""

    def __init__(self, right: str, p: float, rng: random.Random) -> None:
        self.right, self.p, self.rng = right, p, rng
        self.calls = 0

    async def stream(
        self, request: fp.QueryRequest, bot: str, site: CallSite = ANYWHERE
    ) -> AsyncGenerator[fp.PartialResponse, None]:
        self.calls += 1
        said = self.right if self.rng.random() < self.p else f"wrong {self.rng.randrange(3)}"
        yield fp.PartialResponse(text=f"Thinking...\nANSWER: {said}")


async def measure(questions: int, seed: int) -> dict[str, Any]:
    """Each mix, `questions` questions, each answered by both bots with the same draws."""
    config = loader.parse(PIPELINES, "sampling.yaml")
    results: dict[str, Any] = {"questions": questions, "seed": seed, "mixes": {}}
    for mix, rates in MIXES.items():
        figures: dict[str, dict[str, list[float]]] = {
            bot: {"calls": [], "right": []} for bot in ("fixed", "waves")
        }
        for n in range(questions):
            p = rates[n % len(rates)]
            for bot in ("fixed", "waves"):
                sampler = Sampler(f"{n}", p, random.Random(f"{seed}/{mix}/{n}"))
                said = await transcript.answer(config.bots[bot], transcript.query("q"), sampler)
                figures[bot]["calls"].append(sampler.calls)
                figures[bot]["right"].append(float(said.text.strip() == f"ANSWER: {n}"))
        results["mixes"][mix] = {
            bot: {
                "calls_per_question": round(statistics.fmean(f["calls"]), 3),
                "accuracy": round(statistics.fmean(f["right"]), 4),
            }
            for bot, f in figures.items()
        }
        fixed, waves = results["mixes"][mix]["fixed"], results["mixes"][mix]["waves"]
        results["mixes"][mix]["fewer_calls"] = round(
            fixed["calls_per_question"] / waves["calls_per_question"], 2
        )
        results["mixes"][mix]["accuracy_points"] = round(
            100 * (waves["accuracy"] - fixed["accuracy"]), 2
        )
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        f"samples that stop once 3 agree (waves of 3, up to 9) against repeat: 9, "
        f"{results['questions']} questions a mix (seed {results['seed']})",
        f"{'mix':<7} {'fixed calls':>11} {'waves calls':>11} {'fewer':>6} "
        f"{'fixed acc':>9} {'waves acc':>9} {'points':>7}",
    ]
    for mix, m in results["mixes"].items():
        lines.append(
            f"{mix:<7} {m['fixed']['calls_per_question']:>11.2f} "
            f"{m['waves']['calls_per_question']:>11.2f} {m['fewer_calls']:>5.2f}x "
            f"{m['fixed']['accuracy']:>9.1%} {m['waves']['accuracy']:>9.1%} "
            f"{m['accuracy_points']:>+7.1f}"
        )
    return "\n".join(lines)
