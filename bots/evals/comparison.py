"""`python -m bots eval`: which bots answer a creator's questions better, and at what cost.

Every candidate (a bot of pipelines.yaml, or the baseline: a plain Poe bot) answers every item
of the dataset through the same engine, on real bots or scripted ones; then a judge bot compares
each candidate's answer with the baseline's, in both orders, or scores both against the item's
rubric (`judge`). Every call passes one throttle, so the whole eval stays within Poe's rate
limit. Each finished answer and verdict is saved at once (`Ledger`), so an interrupted eval
resumes where it stopped, and nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import math
import os
import statistics
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bots.evals.dataset import Item
from bots.evals.judge import Judge, item_outcome, score, scored_outcome, verdict
from bots.evals.ledger import Ledger, results_and_report
from bots.evals.throttle import Throttle, ThrottledCaller
from bots.run.client import POE_BASE_URL, Caller, PoeCaller, new_http_client, poe_balance
from bots.spec import loader
from bots.spec.loader import BotPlan
from bots.spec.writing import write_beside
from bots.tools import transcript
from bots.tools.script import Script
from bots.tools.simulator import SimulatedCaller

Z95 = 1.959963984540054  # the normal quantile of a 95% two-sided interval


def baseline_plan(bot: str) -> BotPlan:
    """A plain Poe bot as a candidate: one call (a step with the id `baseline`, which scripted
    answers may name), the user's message."""
    text = f"version: 1\nbots:\n  baseline:\n    steps: [{{id: baseline, bot: {bot}}}]\n"
    return loader.parse(text, bot).bots["baseline"]


def judge_plan(bot: str) -> BotPlan:
    """The judge as a pipeline of one call (a step with the id `judge`): the judge prompt."""
    text = f"version: 1\nbots:\n  judge:\n    steps: [{{id: judge, bot: {bot}, history: false}}]\n"
    return loader.parse(text, bot).bots["judge"]


def wilson(mean: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion `mean` observed over `n` items."""
    if n == 0:
        return 0.0, 1.0
    z2 = Z95 * Z95
    centre = (mean + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(mean * (1 - mean) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Candidate:
    name: str
    plan: BotPlan
    baseline: bool = False


@dataclass(frozen=True)
class Means:
    """How an eval's calls are made: the caller (simulated bots, or Poe's through the
    throttle), Poe's point balance when it can be read, and what is told of each unit done."""

    caller: Caller
    balance: Callable[[], Awaitable[int | None]] | None = None
    progress: Callable[[int], object] = lambda done: None


@dataclass
class Eval:
    """One eval: candidates, the baseline, the items, the judge, and where results go."""

    candidates: list[Candidate]
    baseline: Candidate
    items: list[Item]
    judge: Judge
    ledger: Ledger
    concurrency: int = 4
    source: str = "live"  # where answers come from: live, or a dry run's script (its hash)
    failed_judgements: int = 0  # judge calls that failed (asked again on resume)
    _judge_plan: BotPlan = field(init=False)

    def __post_init__(self) -> None:
        self._judge_plan = judge_plan(self.judge.bot)

    @property
    def everyone(self) -> list[Candidate]:
        return [*self.candidates, self.baseline]

    def answer_key(self, candidate: Candidate, item: Item) -> str:
        """Where a candidate's answer to an item is kept: live answers and each dry run's
        scripted ones apart, so no run reads another's."""
        return f"{self.source}|{candidate.name}|{item.key}"

    def judgement_key(self, kind: str, *answers: str) -> str:
        """Where a verdict on answers (in the order the judge saw them) or a score is kept:
        with the judge and its prompts, so a changed one judges anew."""
        return "|".join([kind, self.judge.signature, *answers])

    def forget_failures(self) -> int:
        """Drops the answers that failed, and the judgements of them, so they are asked
        again; returns how many answers were dropped."""
        failed = [
            key
            for c in self.everyone
            for i in self.items
            if (said := self.ledger.answers.get(key := self.answer_key(c, i))) and said["error"]
        ]
        for key in failed:
            del self.ledger.answers[key]
            for judged in [k for k in self.ledger.judgements if f"|{key}|" in f"|{k}|"]:
                del self.ledger.judgements[judged]
        return len(failed)

    def to_do(self) -> tuple[int, int, int]:
        """What a run will pay for: answers not yet in the ledger, the most calls they can
        make, and the judge calls not yet in it."""
        missing = [
            c.plan.cost.total
            for c in self.everyone
            for i in self.items
            if self.answer_key(c, i) not in self.ledger.answers
        ]
        judgements = [j for j in self.judgements() if j[0] not in self.ledger.judgements]
        return len(missing), sum(missing), len(judgements)

    async def run(self, means: Means) -> None:
        """Answers, then judgements, made by `means`; each saved as soon as it is known."""
        limit = asyncio.Semaphore(self.concurrency)
        for candidate in self.everyone:  # one at a time, so each one's points can be told
            missing = [
                i for i in self.items if self.answer_key(candidate, i) not in self.ledger.answers
            ]
            if missing:
                jobs = [self._answer(candidate, item, limit, means) for item in missing]
                await self._measured(candidate.name, jobs, means)
        jobs = [
            self._judge(key, self._prompt(kind, item, keys), kind, limit, means)
            for key, kind, item, keys in self.judgements()
            if key not in self.ledger.judgements
        ]
        if jobs:
            await self._measured("judge", jobs, means)
        self.ledger.summary = self.summary()
        self.ledger.save()

    async def _measured(
        self, who: str, jobs: list[Coroutine[Any, Any, None]], means: Means
    ) -> None:
        """Runs the jobs concurrently; adds the points Poe's balance lost meanwhile to `who`."""
        before = await means.balance() if means.balance else None
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
        after = await means.balance() if means.balance else None
        if before is not None and after is not None:
            self.ledger.points[who] = self.ledger.points.get(who, 0) + (before - after)
            self.ledger.save()

    async def _answer(
        self, candidate: Candidate, item: Item, limit: asyncio.Semaphore, means: Means
    ) -> None:
        async with limit:
            said = await transcript.answer(
                candidate.plan, transcript.query(item.message, user_id="eval"), means.caller
            )
        self.ledger.answers[self.answer_key(candidate, item)] = {
            "text": said.text,
            "calls": said.calls,
            "first_text": said.first_text,
            "seconds": said.seconds,
            "error": said.error,
        }
        self.ledger.save()
        means.progress(1)

    def judgements(self) -> list[tuple[str, str, Item, tuple[str, ...]]]:
        """(ledger key, kind, item, the keys of the answers it judges) for every judge call
        the eval needs: a score per answer of a rubric item, else two verdicts per candidate
        (the candidate's answer first, then the baseline's)."""
        found: list[tuple[str, str, Item, tuple[str, ...]]] = []
        for item in self.items:
            base = self.answer_key(self.baseline, item)
            if item.rubric:
                for candidate in self.everyone:
                    mine = self.answer_key(candidate, item)
                    found.append((self.judgement_key("score", mine), "score", item, (mine,)))
                continue
            for candidate in self.candidates:
                mine = self.answer_key(candidate, item)
                for pair in ((mine, base), (base, mine)):
                    found.append((self.judgement_key("verdict", *pair), "verdict", item, pair))
        return found

    def _prompt(self, kind: str, item: Item, keys: tuple[str, ...]) -> str:
        """The judge's prompt, once the answers it judges are in the ledger."""
        texts = [self.ledger.answers[key]["text"] for key in keys]
        if kind == "score":
            return self.judge.rubric.render(_vars(item, answer=texts[0]))
        return self.judge.pairwise.render(_vars(item, a=texts[0], b=texts[1]))

    async def _judge(
        self, key: str, prompt: str, kind: str, limit: asyncio.Semaphore, means: Means
    ) -> None:
        async with limit:
            said = await transcript.answer(
                self._judge_plan, transcript.query(prompt, user_id="eval"), means.caller
            )
        means.progress(1)
        if said.error:  # not kept: a resumed eval asks again
            self.failed_judgements += 1
            return
        found = verdict(said.text) if kind == "verdict" else score(said.text)
        self.ledger.judgements[key] = {kind: found, "said": said.text[-300:]}
        self.ledger.save()

    # --- results ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Per candidate: quality against the baseline, calls, time, failures, points."""
        rows = {}
        for candidate in self.everyone:
            answers = [self.ledger.answers.get(self.answer_key(candidate, i)) for i in self.items]
            done = [a for a in answers if a is not None]
            firsts = [a["first_text"] for a in done if a["first_text"] is not None]
            row: dict[str, Any] = {
                "baseline": candidate.baseline,
                "answered": len(done),
                "failures": sum(1 for a in done if a["error"]),
                "mean_calls": _mean([a["calls"] for a in done]),
                "max_calls": max((a["calls"] for a in done), default=None),
                "worst_case_calls": candidate.plan.cost.total,
                "mean_first_text_s": _mean(firsts),
                "mean_done_s": _mean([a["seconds"] for a in done]),
                "points": self.ledger.points.get(candidate.name),
            }
            scores = [self._score(candidate, i) for i in self.items if i.rubric]
            row["mean_score"] = _mean([s for s in scores if s is not None])
            if not candidate.baseline:
                outcomes = [self.outcome(candidate, item) for item in self.items]
                judged = [o for o in outcomes if o is not None]
                row["judged"] = len(judged)
                row["unclear"] = len(outcomes) - len(judged)
                if judged:
                    row["win_rate"] = statistics.fmean(judged)
                    row["interval"] = list(wilson(row["win_rate"], len(judged)))
                    row["wins"] = sum(1 for o in judged if o == 1.0)
                    row["ties"] = sum(1 for o in judged if o == 0.5)
                    row["losses"] = sum(1 for o in judged if o == 0.0)
            rows[candidate.name] = row
        return {
            "baseline": self.baseline.name,
            "judge": self.judge.bot,
            "failed_judgements": self.failed_judgements,
            "items": len(self.items),
            "judge_points": self.ledger.points.get("judge"),
            "candidates": rows,
        }

    def views(self) -> list[dict[str, Any]]:
        """Per item, for the report: the message, and each bot's answer with its result."""
        words = {1.0: "won", 0.5: "tied", 0.0: "lost", None: "unclear"}
        found = []
        for item in self.items:
            answers = []
            for candidate in self.everyone:
                said = self.ledger.answers.get(self.answer_key(candidate, item)) or {}
                result = "baseline" if candidate.baseline else words[self.outcome(candidate, item)]
                score = self._score(candidate, item) if item.rubric else None
                if score is not None:
                    result += f", scored {score:g}"
                answers.append((candidate.name, result, said.get("text", "")))
            found.append({"message": item.message, "answers": answers})
        return found

    def _score(self, candidate: Candidate, item: Item) -> float | None:
        key = self.judgement_key("score", self.answer_key(candidate, item))
        found = self.ledger.judgements.get(key)
        return found.get("score") if found else None

    def outcome(self, candidate: Candidate, item: Item) -> float | None:
        """The item's result for the candidate (1 won, 0.5 tied, 0 lost), None if unjudged."""
        if item.rubric:
            return scored_outcome(self._score(candidate, item), self._score(self.baseline, item))
        mine, base = self.answer_key(candidate, item), self.answer_key(self.baseline, item)
        first = self.ledger.judgements.get(self.judgement_key("verdict", mine, base))
        second = self.ledger.judgements.get(self.judgement_key("verdict", base, mine))
        if first is None or second is None:
            return None
        return item_outcome(first.get("verdict"), second.get("verdict"))


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _vars(item: Item, **answers: str) -> dict[str, Any]:
    return {"message": item.message, "reference": item.reference, "rubric": item.rubric, **answers}


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def command(
    candidates: list[Candidate],
    baseline: Candidate,
    items: list[Item],
    judge: Judge,
    answers: Script,
    api_key: str,
    *,
    dry_run: bool,
    concurrency: int,
    rate: tuple[int, float],
    out: str,
    retry_failed: bool = False,
) -> int:
    """`python -m bots eval`: runs (or resumes) the eval, then writes its JSON and HTML and
    prints its table. Progress goes to stderr as a bar."""
    from bots.evals import scorecard

    path, report = results_and_report(out)
    source = f"dry-run {answers.signature}" if dry_run else "live"
    run = Eval(candidates, baseline, items, judge, Ledger(path), concurrency, source)
    if retry_failed and (dropped := run.forget_failures()):
        print(f"asking again for {_count(dropped, 'answer')} that failed")
    to_answer, worst, to_judge = run.to_do()
    done = to_answer < len(run.everyone) * len(items) or to_judge < len(run.judgements())
    mode = "dry run: simulated bots" if dry_run else "live: calls spend your points"
    print(
        f"eval of {', '.join(c.name for c in candidates)} against {baseline.name} on "
        f"{_count(len(items), 'item')} ({mode}); judge {judge.bot}\n"
        f"{_count(to_answer, 'answer')} (at most {_count(worst, 'call')}) and "
        f"{_count(to_judge, 'judge call')} to make"
        + (f"; the rest is done, in {path}" if done else ""),
        flush=True,
    )
    asyncio.run(_run(run, answers, api_key, dry_run, rate, to_answer + to_judge))
    write_beside(report, scorecard.html(run.ledger.summary, run.views()))
    print(scorecard.table(run.ledger.summary))
    if run.failed_judgements:
        print(f"{run.failed_judgements} judge calls failed; run again to ask them again")
    print(f"results: {path}; report: {report}")
    return 0


async def _run(
    run: Eval, answers: Script, api_key: str, dry_run: bool, rate: tuple[int, float], total: int
) -> None:
    """Runs the eval on simulated bots, or on Poe's through one throttle, with a progress bar."""
    from tqdm import tqdm

    throttle = Throttle(*rate)
    base_url = os.environ.get("POE_BASE_URL") or POE_BASE_URL
    async with new_http_client() as http:

        async def balance() -> int | None:
            await throttle.admit()
            return await poe_balance(http, base_url, api_key)

        with tqdm(total=total, unit="call", file=sys.stderr, disable=None) as bar:
            if dry_run:
                means = Means(SimulatedCaller(0.2, 0.01, script=answers), progress=bar.update)
            else:
                poe = ThrottledCaller(PoeCaller(http, base_url, api_key=api_key), throttle)
                means = Means(poe, balance, progress=bar.update)
            await run.run(means)
