"""Merging streams into one reply: what the user sees, how many events and bytes it costs."""

from __future__ import annotations

import asyncio
import random

import fastapi_poe as fp

from bots.reply import MAX_REPLY_CHARS, MAX_STREAM_EVENTS, Pacing, Reply

FAST = Pacing(delta_gap=0.0, delta_gap_after_2000=0.0, replace_gap=0.01, status_delay=0.05)


class Seen:
    """Plays Poe: applies the events as the user's view."""

    def __init__(self) -> None:
        self.text = ""
        self.views: list[str] = []
        self.events: list[fp.PartialResponse | fp.DataResponse] = []

    async def read(self, reply: Reply) -> None:
        async for event in reply.stream():
            self.events.append(event)
            if isinstance(event, fp.DataResponse) or event.is_suggested_reply or event.attachment:
                continue
            if isinstance(event, fp.ErrorResponse):
                continue
            self.text = event.text if event.is_replace_response else self.text + event.text
            self.views.append(self.text)


async def test_parallel_sections_keep_each_branch_after_replace() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    a, b = reply.add_part("a"), reply.add_part("b")
    a.write("alpha one")
    b.write("beta one")
    await asyncio.sleep(0.02)
    a.replace("ALPHA")  # the dependency behind `a` replaced its own text
    b.write(" two")
    await asyncio.sleep(0.02)
    reply.finish()
    await reader
    assert seen.text == "### a\n\nALPHA\n\n### b\n\nbeta one two"
    assert seen.text == reply.text


async def test_tail_growth_is_sent_as_deltas_only() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    part = reply.add_part()
    for i in range(50):
        part.write(f"w{i} ")
        await asyncio.sleep(0)
    reply.finish()
    await reader
    assert seen.text == "".join(f"w{i} " for i in range(50))
    text_events = [e for e in seen.events if isinstance(e, fp.PartialResponse)]
    assert not any(e.is_replace_response for e in text_events)
    assert reply.bytes_sent == len(seen.text.encode())


async def test_live_sections_cost_a_small_multiple_of_the_final_reply() -> None:
    """Three branches of 1,000 tokens each, interleaved: bytes sent / bytes of the final reply."""
    pacing = Pacing(delta_gap=0.0, replace_gap=0.005, status_delay=0.05)
    reply = Reply(pacing)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    parts = [reply.add_part(name) for name in ("gpt", "claude", "gemini")]
    rng = random.Random(7)
    for i in range(1000):
        for part in parts:
            part.write(f"tok{i}{rng.choice(['', ',', '.'])} ")
        await asyncio.sleep(0.0005)
    reply.finish()
    await reader
    final = len(seen.text.encode())
    ratio = reply.bytes_sent / final
    print(
        f"\nlive sections: {reply.bytes_sent} bytes sent for a {final}-byte reply, ratio "
        f"{ratio:.2f}, {reply.replaces} re-renders, {reply.events} events"
    )
    assert seen.text == reply.text
    assert ratio <= 3.0
    assert reply.replaces >= 3  # the sections above the tail were refreshed while streaming


async def test_a_flood_of_tiny_tokens_stays_under_poes_event_limit() -> None:
    reply = Reply(Pacing(delta_gap=0.0, delta_gap_after_2000=0.0, status_delay=0.05))
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    part = reply.add_part()
    for i in range(12_000):
        part.write("x")
        if i % 2 == 0:
            await asyncio.sleep(0)
    reply.finish()
    await reader
    assert len(seen.events) <= 10_000
    assert reply.events <= MAX_STREAM_EVENTS + 1
    assert seen.text == "x" * 12_000


async def test_status_line_shows_while_waiting_then_gives_way_to_the_answer() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    reply.asking["GPT-5"] += 1
    await asyncio.sleep(0.2)
    assert seen.views and "Waiting for GPT-5" in seen.views[0]
    reply.add_part().write("the answer")
    reply.finish()
    await reader
    assert seen.text == "the answer"


async def test_final_parts_appear_only_when_closed_with_their_attachments() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    shown = reply.add_part()
    later = reply.add_part(deferred=True)
    shown.write("first")
    later.write("second")
    later.attach(fp.Attachment(url="https://x/y.png", content_type="image/png", name="y.png"))
    await asyncio.sleep(0.05)
    assert seen.text == "first"
    assert not [e for e in seen.events if isinstance(e, fp.PartialResponse) and e.attachment]
    later.close()
    reply.finish()
    await reader
    assert seen.text == "first\n\nsecond"
    files = [
        e.attachment for e in seen.events if isinstance(e, fp.PartialResponse) and e.attachment
    ]
    assert [f.name for f in files if f] == ["y.png"]


async def test_reply_is_cut_below_poes_size_limit() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    reply.add_part().write("y" * (MAX_REPLY_CHARS + 10_000))
    reply.finish()
    await reader
    assert len(seen.text) <= MAX_REPLY_CHARS
    assert seen.text.endswith("size limit.)_")


async def test_error_suggestions_and_metadata_come_last() -> None:
    reply = Reply(FAST)
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    part = reply.add_part()
    part.write("partial")
    part.suggestions = ["Tell me more"]
    reply.metadata = '{"v": 1}'
    reply.error = "GPT-5 failed: boom"
    reply.finish()
    await reader
    kinds = [type(e).__name__ for e in seen.events]
    assert kinds[-1] == "ErrorResponse" and kinds[-2] == "DataResponse"
    assert seen.text == "partial\n\n> ⚠️ GPT-5 failed: boom"
    assert any(isinstance(e, fp.PartialResponse) and e.is_suggested_reply for e in seen.events)


async def test_a_re_render_held_back_by_bytes_waits_instead_of_spinning() -> None:
    reply = Reply(Pacing(delta_gap=0.0, replace_gap=0.01, replace_slack=0, status_delay=0.05))
    seen = Seen()
    reader = asyncio.create_task(seen.read(reply))
    top, tail = reply.add_part("top"), reply.add_part("tail")
    tail.write("t" * 10_000)
    await asyncio.sleep(0.05)
    for i in range(20):  # small changes above the tail: re-rendering 10 KB each is unaffordable
        top.write(str(i))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # held back, nothing changing: the loop must sleep, not spin
    reply.finish()
    await reader
    assert reply.wakeups < 100, reply.wakeups
    assert seen.text == reply.text
