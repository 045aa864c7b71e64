"""The studio's latencies, in a real browser (Playwright driving Debian's Chromium) against
`python -m bots studio` in its own process:

- token to page: a dependency bot streams tokens that each carry the wall-clock time they were
  sent; the page records when each first shows in the reply's rendered DOM. The difference
  covers the engine, the reply's delivery (its pacing included), the studio, the browser's
  parsing and the Markdown render. Both clocks are this machine's wall clock.
- save to page: the pipelines file is saved with a new introduction; the page records when it
  shows. That covers the file watch (a look every 0.1 s), the load, the app's rebuild, the
  change event and the page's redraw.

The dependency is a fastapi_poe bot on 127.0.0.1, reached in the studio's live mode (as Poe's
bot API would be), so no simulated delay is part of the figure.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import fastapi_poe as fp

from standin.serving import served_in_thread, studio_process

PIPELINES = """\
version: 1
known_bots: [Clock]
bots:
  timed:
    introduction: "{intro}"
    steps:
      - bot: Clock
"""


class _Clock(fp.PoeBot):
    """Streams `tokens` tokens, `gap` s apart, each carrying the time it was sent."""

    def __init__(self, tokens: int, gap: float) -> None:
        super().__init__(path="/Clock")
        self.tokens, self.gap = tokens, gap

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        for _ in range(self.tokens):
            await asyncio.sleep(self.gap)
            yield fp.PartialResponse(text=f"⟦{time.time():.6f}⟧ word ")


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def measure(messages: int = 5, tokens: int = 40, saves: int = 20) -> dict[str, Any]:
    """Token-to-page over `messages` replies of `tokens` tokens, and save-to-page over `saves`
    saves."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise RuntimeError("Chromium is missing: `make browser` installs Debian's package")
    with (
        tempfile.TemporaryDirectory() as folder,
        served_in_thread(fp.make_app(_Clock(tokens, 0.05), allow_without_key=True)) as bots,
    ):
        config = Path(folder) / "pipelines.yaml"
        config.write_text(PIPELINES.format(intro="version 0"))
        env = {"POE_API_KEY": "bench", "POE_BASE_URL": bots + "/"}
        log = Path(folder) / "studio.log"
        with (
            studio_process(log, "--config", str(config), env=env) as (url, token),
            sync_playwright() as playwright,
        ):
            browser = playwright.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.goto(f"{url}/?token={token}")
            page.wait_for_selector("body[data-ready=true]")
            page.select_option("#mode", "live")
            page.evaluate(
                r"""() => {
                  window.shown = {};
                  new MutationObserver(() => {
                    const now = Date.now() / 1000;
                    for (const node of document.querySelectorAll(".message.bot .markdown")) {
                      for (const m of node.textContent.matchAll(/⟦(\d+\.\d+)⟧/g)) {
                        window.shown[m[1]] ??= now;
                      }
                    }
                  }).observe(document.getElementById("messages"),
                             {subtree: true, childList: true, characterData: true});
                }"""
            )
            for i in range(messages):
                page.fill("#text", f"message {i}")
                page.press("#text", "Enter")
                page.wait_for_selector(f".message.bot:nth-child({2 * i + 3})[data-done=true]")
            shown: dict[str, float] = page.evaluate("window.shown")
            to_page = [seen - float(sent) for sent, seen in shown.items()]
            reloads = []
            for i in range(1, saves + 1):
                page.evaluate("window.saved = null")
                page.evaluate(
                    """(intro) => new MutationObserver((_, observer) => {
                      if (document.querySelector(".message.intro")?.textContent.trim() === intro) {
                        window.saved = Date.now() / 1000; observer.disconnect();
                      }
                    }).observe(document.body, {subtree: true, childList: true,
                                               characterData: true})""",
                    f"version {i}",
                )
                written = time.time()
                config.write_text(PIPELINES.format(intro=f"version {i}"))
                page.wait_for_function("window.saved !== null")
                reloads.append(page.evaluate("window.saved") - written)
                time.sleep(0.2)
            browser.close()
    return {
        "token_to_page": _percentiles(to_page),
        "save_to_page": _percentiles(reloads),
        "tokens_sent": messages * tokens,
    }


def table(results: dict[str, Any]) -> str:
    lines = ["the studio, in Chromium          count    p50 ms    p90 ms    max ms"]
    for name in ("token_to_page", "save_to_page"):
        r = results[name]
        lines.append(
            f"  {name.replace('_', ' '):<28} {r['count']:>7} {r['p50_ms']:>9} {r['p90_ms']:>9} "
            f"{r['max_ms']:>9}"
        )
    return "\n".join(lines)
