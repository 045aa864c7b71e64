"""Merging streams into one reply: what the user sees, how many events and bytes it costs."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import fastapi_poe as fp

from bots.run.answer import Answer, Ending
from bots.run.delivery import NO_ANSWER, Delivery, Pacing
from bots.run.limits import REPLY_CHAR_LIMIT, STREAM_EVENT_LIMIT, TRUNCATED
from standin.user import Reply as PoeReply
from standin.user import read_events

FAST = Pacing(delta_gap=0.0, delta_gap_after_2000=0.0, replace_gap=0.01, status_delay=0.05)


class Seen:
    """Plays Poe: reads the reply's events as fastapi_poe sends them, checking Poe's rules
    (`standin.Reply`), and keeps each view the user had."""

    def __init__(self) -> None:
        self.views: list[str] = []
        self.events: list[fp.PartialResponse | fp.DataResponse] = []
        self.poe = PoeReply(status=200)

    @property
    def text(self) -> str:
        return self.poe.text

    async def read(self, delivery: Delivery) -> None:
        async def recorded() -> AsyncIterator[fp.PartialResponse | fp.DataResponse]:
            async for event in delivery.stream():
                self.events.append(event)
                yield event
                if not isinstance(event, fp.DataResponse) and not event.attachment:
                    self.views.append(self.poe.text)

        await read_events(recorded(), into=self.poe)


async def test_parallel_sections_keep_each_branch_after_replace() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    a, b = answer.add_part("a"), answer.add_part("b")
    a.write("alpha one")
    b.write("beta one")
    await asyncio.sleep(0.02)
    a.replace("ALPHA")  # the dependency behind `a` replaced its own text
    b.write(" two")
    await asyncio.sleep(0.02)
    answer.finish()
    await reader
    assert seen.text == "### a\n\nALPHA\n\n### b\n\nbeta one two"
    assert seen.text == answer.text


async def test_tail_growth_is_sent_as_deltas_only() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    part = answer.add_part()
    for i in range(50):
        part.write(f"w{i} ")
        await asyncio.sleep(0)
    answer.finish()
    await reader
    assert seen.text == "".join(f"w{i} " for i in range(50))
    text_events = [e for e in seen.events if isinstance(e, fp.PartialResponse)]
    assert not any(e.is_replace_response for e in text_events)
    assert delivery.bytes_sent == len(seen.text.encode())


async def test_live_sections_cost_a_small_multiple_of_the_final_reply() -> None:
    """Three branches of 1,000 tokens each, interleaved: bytes sent / bytes of the final reply."""
    pacing = Pacing(delta_gap=0.0, replace_gap=0.005, status_delay=0.05)
    answer = Answer()
    delivery = Delivery(answer, pacing)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    parts = [answer.add_part(name) for name in ("gpt", "claude", "gemini")]
    rng = random.Random(7)
    for i in range(1000):
        for part in parts:
            part.write(f"tok{i}{rng.choice(['', ',', '.'])} ")
        await asyncio.sleep(0.0005)
    answer.finish()
    await reader
    final = len(seen.text.encode())
    ratio = delivery.bytes_sent / final
    print(
        f"\nlive sections: {delivery.bytes_sent} bytes sent for a {final}-byte reply, ratio "
        f"{ratio:.2f}, {delivery.replaces} re-renders, {delivery.events} events"
    )
    assert seen.text == answer.text
    assert ratio <= 3.0
    assert delivery.replaces >= 3  # the sections above the tail were refreshed while streaming


async def test_a_flood_of_tiny_tokens_stays_under_poes_event_limit() -> None:
    answer = Answer()
    delivery = Delivery(answer, Pacing(delta_gap=0.0, delta_gap_after_2000=0.0, status_delay=0.05))
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    part = answer.add_part()
    for i in range(12_000):
        part.write("x")
        if i % 2 == 0:
            await asyncio.sleep(0)
    answer.finish()
    await reader
    assert len(seen.events) <= 10_000
    assert delivery.events <= STREAM_EVENT_LIMIT + 1
    assert seen.text == "x" * 12_000


async def test_status_line_shows_while_waiting_then_gives_way_to_the_answer() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    with answer.waiting("GPT-5"):
        await asyncio.sleep(0.2)
        assert seen.views and "Waiting for GPT-5" in seen.views[0]
    answer.add_part().write("the answer")
    answer.finish()
    await reader
    assert seen.text == "the answer"


async def test_final_parts_appear_only_when_closed_with_their_attachments() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    shown = answer.add_part()
    later = answer.add_part(deferred=True)
    shown.write("first")
    later.write("second")
    later.attach(fp.Attachment(url="https://x/y.png", content_type="image/png", name="y.png"))
    await asyncio.sleep(0.05)
    assert seen.text == "first"
    assert not [e for e in seen.events if isinstance(e, fp.PartialResponse) and e.attachment]
    later.close()
    answer.finish()
    await reader
    assert seen.text == "first\n\nsecond"
    files = [
        e.attachment for e in seen.events if isinstance(e, fp.PartialResponse) and e.attachment
    ]
    assert [f.name for f in files if f] == ["y.png"]


async def test_a_reply_over_poes_limit_is_cut_with_a_note() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    answer.add_part().write("y" * (REPLY_CHAR_LIMIT + 10_000))
    answer.finish()
    await reader
    assert seen.poe.chars <= REPLY_CHAR_LIMIT  # (the strict reader also checks it)
    assert seen.text.endswith(TRUNCATED) and seen.text.startswith("y" * 90_000)
    assert delivery.cut


async def test_emoji_count_twice_against_the_limit() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    answer.add_part().write("😀" * 60_000)  # 60,000 code points, 120,000 UTF-16 units
    answer.finish()
    await reader
    assert seen.text.endswith(TRUNCATED) and seen.poe.chars <= REPLY_CHAR_LIMIT
    assert "\ud83d" not in seen.text.encode("utf-16-le", "surrogatepass").decode("utf-16-le")


async def test_rerendering_gives_way_as_a_reply_nears_the_limit() -> None:
    """Three live sections of 30,000 characters each: re-rendering them all as they grow
    would send several times the limit. Re-renders stop at half the limit, and the reply
    ends cut, with a note, within the limit; what the user sees is the reply up to the cut."""
    answer = Answer()
    delivery = Delivery(answer, Pacing(delta_gap=0.0, replace_gap=0.005, status_delay=0.05))
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    parts = [answer.add_part(name) for name in ("gpt", "claude", "gemini")]
    for _ in range(300):
        for part in parts:
            part.write("w" * 99 + " ")
        await asyncio.sleep(0.001)
    answer.finish()
    await reader
    assert delivery.replaces >= 3  # sections were live while the reply was small
    assert seen.poe.chars <= REPLY_CHAR_LIMIT
    assert seen.text.endswith(TRUNCATED) and answer.text.startswith(seen.text[: -len(TRUNCATED)])


async def test_ordinary_live_sections_are_never_cut() -> None:
    answer = Answer()
    delivery = Delivery(answer, Pacing(delta_gap=0.0, replace_gap=0.005, status_delay=0.05))
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    parts = [answer.add_part(name) for name in ("gpt", "claude", "gemini")]
    for i in range(400):  # about 4,500 characters each
        for part in parts:
            part.write(f"word{i} ")
        await asyncio.sleep(0.001)
    answer.finish()
    await reader
    assert seen.text == answer.text and not delivery.cut
    assert delivery.replaces >= 3


async def test_a_file_reaches_poe_before_the_text_that_shows_it() -> None:
    picture = fp.Attachment(
        url="https://x/cat.png", content_type="image/png", name="cat.png", inline_ref="cat1"
    )
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    live, later = answer.add_part(), answer.add_part(deferred=True)
    live.attach(picture)
    live.write("Here: ![a cat][cat1]")  # in the same instant: one wake-up sends both
    later.attach(picture.model_copy(update={"inline_ref": "cat2", "name": "cat2.png"}))
    later.write("And again: ![another][cat2]")
    await asyncio.sleep(0.05)
    later.close()  # a `final` part: its file and its text appear together, the file first
    answer.finish()
    await reader  # the strict reader fails on a reference before its file
    names = [name for name, _ in seen.poe.events]
    assert names.index("file") < names.index("text")
    assert [f["name"] for f in seen.poe.files] == ["cat.png", "cat2.png"]
    assert seen.text.endswith("And again: ![another][cat2]")


async def test_a_failed_pipeline_ends_with_its_partial_answer_and_one_note() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    part = answer.add_part()
    part.write("partial")
    part.suggestions = ["Tell me more"]
    records = {"steps[0]": {"a": "partial"}}
    answer.finish(Ending("GPT-5 failed: boom", records=records, spent=True))
    await reader
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds[-1] == "DataResponse" and "ErrorResponse" not in kinds
    assert seen.text == "partial\n\n> ⚠️ GPT-5 failed: boom"
    assert not seen.poe.errors
    assert seen.poe.suggested == ["Tell me more"]


async def test_a_failure_poe_has_a_type_for_goes_in_an_error_event_poe_must_not_retry() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    answer.add_part().write("partial")
    answer.finish(Ending("out of points", "insufficient_fund", spent=True))
    await reader
    assert seen.text == "partial"  # the reason is said once: by Poe, from the error type
    assert seen.poe.errors == [
        {"allow_retry": False, "text": "out of points", "error_type": "insufficient_fund"}
    ]


async def test_an_empty_pipeline_still_answers_with_text() -> None:
    answer = Answer()
    delivery = Delivery(answer, FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    answer.add_part()
    answer.finish()
    await reader
    assert seen.text == NO_ANSWER


async def test_a_re_render_held_back_by_bytes_waits_instead_of_spinning() -> None:
    answer = Answer()
    delivery = Delivery(
        answer, Pacing(delta_gap=0.0, replace_gap=0.01, replace_slack=0, status_delay=0.05)
    )
    seen = Seen()
    reader = asyncio.create_task(seen.read(delivery))
    top, tail = answer.add_part("top"), answer.add_part("tail")
    tail.write("t" * 10_000)
    await asyncio.sleep(0.05)
    for i in range(20):  # small changes above the tail: re-rendering 10 KB each is unaffordable
        top.write(str(i))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # held back, nothing changing: the loop must sleep, not spin
    answer.finish()
    await reader
    assert delivery.wakeups < 100, delivery.wakeups
    assert seen.text == answer.text
