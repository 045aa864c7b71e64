"""The studio's page in a real browser: Playwright (from PyPI) driving Debian's Chromium (which
`make test` installs), against `python -m bots studio` in its own process.

What the page shows is observed as successive DOM states, never as timings. The screenshots in
docs/images are taken here: `make screenshots` runs these tests with STUDIO_SCREENSHOTS set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from standin.poe import BOT_PREFIX, Behavior, StandIn
from standin.serving import ROOT, served_in_thread, studio_process

pytestmark = pytest.mark.timeout(180)

CHROMIUM_FLAGS = [  # as root, in a sandbox, on a machine with no network but loopback
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: `make test` installs it (Debian's package)"
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield found
        found.close()


def _open(browser: Browser, url: str, token: str) -> Page:
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{url}/?token={token}")
    page.wait_for_selector("body[data-ready=true]")
    assert not errors, errors
    return page


@contextmanager
def _studio(
    browser: Browser,
    tmp_path: Path,
    pipelines: str,
    *args: str,
    env: dict[str, str] | None = None,
) -> Iterator[Page]:
    """The page of a studio serving `pipelines` (as tmp_path/pipelines.yaml), with `args`."""
    config = tmp_path / "pipelines.yaml"
    config.write_text(pipelines)
    with studio_process(tmp_path / "log", "--config", str(config), *args, env=env) as (
        url,
        token,
    ):
        yield _open(browser, url, token)


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    """Into docs/images when STUDIO_SCREENSHOTS asks for them (`make screenshots`)."""
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path)
    page.screenshot(path=folder / f"studio-{name}.png")


def _send(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def _last_reply_done(page: Page) -> None:
    page.wait_for_selector(".message.bot:last-child[data-done=true]", timeout=60_000)


def test_a_councils_sections_appear_and_grow_while_the_reply_streams(
    browser: Browser, tmp_path: Path
) -> None:
    with studio_process(tmp_path / "log", "--delay", "0.3") as (url, token):
        page = _open(browser, url, token)
        page.click("[data-tab=graph]")
        page.evaluate(
            """() => {
              window.seen = [];
              window.lit = [];
              new MutationObserver(() => {
                const running = [...document.querySelectorAll("#tab-graph .box.running")];
                window.lit.push(running.map((box) => box.dataset.path).join(" "));
              }).observe(document.getElementById("tab-graph"), {subtree: true, childList: true});
              new MutationObserver(() => {
                const reply = document.querySelector(".message.bot.streaming .markdown");
                if (reply) window.seen.push({
                  sections: [...reply.querySelectorAll("h3")].map((h) => h.textContent),
                  text: reply.innerText,
                });
              }).observe(document.getElementById("messages"), {subtree: true, childList: true,
                                                              characterData: true});
            }"""
        )
        _send(page, "What makes a good API?")
        page.wait_for_selector(".message.bot.streaming")
        _send(page, "and then?")  # while the bot answers: the message waits in the box
        assert page.input_value("#text") == "and then?" and page.is_disabled("#send")
        _last_reply_done(page)
        assert page.input_value("#text") == "and then?" and page.is_enabled("#send")
        assert page.locator(".message.user").count() == 1
        followed = page.evaluate(
            "(m => m.scrollHeight - m.scrollTop - m.clientHeight < 2)"
            "(document.getElementById('messages'))"
        )
        assert followed  # the chat followed the reply down, as Poe's does
        seen = page.evaluate("window.seen")
        lit = [state for state in page.evaluate("window.lit") if state]
        page.click("[data-tab=trace]")
        page.fill("#text", "")
        page.evaluate("document.getElementById('messages').scrollTop = 0")  # from the top
        _screenshot(page, "council", tmp_path)
    # the graph lit the drafts while they ran, then the verdict alone
    assert any("steps[0] " in f"{state} " for state in lit)
    assert lit[-1] == "steps[1]" and lit.index("steps[1]") > 0
    sections = ["gpt", "claude", "gemini"]
    shown = [state for state in seen if state["sections"] == sections]
    assert shown, "the three sections never appeared as headings"
    # the sections were there, empty, before any answer; then their answers grew in place
    assert "was asked" not in shown[0]["text"]
    lengths = [len(state["text"]) for state in shown]
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths)
    assert "Claude-Opus-4.1" not in shown[0]["text"]
    verdict = [state for state in seen if "Claude-Opus-4.1 (simulated)" in state["text"]]
    assert verdict and seen.index(verdict[0]) > seen.index(shown[1])


def test_a_scripted_route_case_takes_its_branch_and_the_trace_shows_it(
    browser: Browser, tmp_path: Path
) -> None:
    with studio_process(tmp_path / "log", "--delay", "0") as (url, token):
        page = _open(browser, url, token)
        page.select_option("#mode", "scripted")
        page.select_option("#case", label="router: code questions go to Claude")
        assert page.inner_text("nav button.on") == "/router"  # a case scripts its own bot
        assert page.input_value("#text") == "How do I reverse a list in Python?"
        page.click("[data-tab=tests]")
        page.click("#run-tests")
        page.wait_for_selector("#tests .summary")
        summary = page.inner_text("#tests .summary")
        assert summary.endswith(" 0 failed") and int(summary.split()[0]) > 10
        _screenshot(page, "tests", tmp_path)
        case = page.locator(".result", has_text="router: math goes to GPT-5")
        case.get_by_role("button", name="replay in chat").click()
        _last_reply_done(page)
        assert page.input_value("#mode") == "scripted"
        page.click("[data-tab=trace]")
        route = page.locator(".waterfall tr[data-kind=route]")
        assert "'math'" in route.inner_text()
        assert page.locator(".waterfall tr", has_text="GPT-5").count() >= 1
        assert '"reasoning_effort": "high"' in page.inner_text(".message.bot:last-child")
        page.click("[data-tab=graph]")
        _screenshot(page, "graph", tmp_path)
        taken = page.locator('.box.done[data-path="steps[1].cases.math[0]"]')
        assert taken.count() == 1  # the branch taken is drawn as done; the others are not
        assert page.locator('.box.done[data-path="steps[1].cases.code[0]"]').count() == 0


SLIDER = """\
version: 1
bots:
  tuned:
    controls:
      - {slider: warmth, label: Warmth, min: 0, max: 1, step: 0.1, default: 0.5}
    steps:
      - bot: GPT-5
        parameters: {temperature: "{{ params.warmth }}"}
"""


def test_a_sliders_value_reaches_the_dependencys_parameters(
    browser: Browser, tmp_path: Path
) -> None:
    with _studio(browser, tmp_path, SLIDER, "--delay", "0") as page:
        slider = page.locator('input[type=range][data-param="warmth"]')
        assert slider.input_value() == "0.5"
        slider.fill("0.8")
        _send(page, "Hello")
        _last_reply_done(page)
        page.click("[data-tab=sent]")
        sent = page.inner_text("#tab-sent")
        _send(page, "And again")  # a second turn: the first goes along as history
        page.wait_for_function("document.querySelectorAll('[data-done=true]').length === 2")
        again = page.inner_text("#tab-sent")
    assert '"temperature": "0.8"' in sent.replace("\n", "")
    assert "history" not in sent and "history (2 earlier messages" in again
    assert "user: Hello" in again


EVERY_CONTROL = """\
version: 1
bots:
  knobs:
    controls:
      - {aspect_ratio: aspect, label: Shape, default: "16:9", options: ["1:1", "16:9"]}
      - {drop_down: style, label: Style, default: photo, options: {photo: Photograph, ink: Ink}}
      - {toggle: hd, label: High detail, default: false}
      - {text: mood, label: Mood, placeholder: calm}
      - {text_area: notes, label: Notes}
      - divider: true
      - section: Advanced
        collapsed: true
        controls: [{toggle: raw, label: Raw output}]
      - section: Look
        tabs:
          - {tab: Colour, controls: [{toggle: bw, label: Black and white}]}
          - {tab: Light, controls: [{slider: glow, label: Glow, min: 0, max: 1, step: 0.5}]}
    steps:
      - bot: GPT-5
        parameters:
          all: "{{ [params.aspect, params.style, params.hd, params.mood, params.notes,
                    params.raw, params.bw, params.glow] | join('|') }}"
"""


def test_every_kind_of_control_is_a_widget_and_its_value_reaches_the_bot(
    browser: Browser, tmp_path: Path
) -> None:
    with _studio(browser, tmp_path, EVERY_CONTROL, "--delay", "0") as page:
        page.click(".ratios button[title='1:1']")
        page.select_option("select[data-param=style]", "ink")
        page.check("input[data-param=hd]")
        page.fill("input[data-param=mood]", "stormy")
        page.fill("textarea[data-param=notes]", "two\nlines")
        assert page.locator("#controls hr").count() == 1
        assert page.is_hidden("input[data-param=raw]")  # its section starts collapsed
        page.click("#controls summary:has-text('Advanced')")
        page.check("input[data-param=raw]")
        assert page.is_hidden("input[data-param=glow]")  # on the second tab
        page.click(".tabheads button:has-text('Light')")
        page.locator("input[type=range][data-param=glow]").fill("1")
        page.click(".tabheads button:has-text('Colour')")
        page.check("input[data-param=bw]")
        _screenshot(page, "controls", tmp_path)
        _send(page, "Draw")
        _last_reply_done(page)
        page.click("[data-tab=sent]")
        sent = page.inner_text("#tab-sent")
    assert '"all": "1:1|ink|True|stormy|two\\nlines|True|True|1"' in sent.replace("\n ", "")


def test_a_failure_shows_its_notice_and_suggested_replies_are_buttons(
    browser: Browser, tmp_path: Path
) -> None:
    standin = StandIn(
        {
            "GPT-5-mini": Behavior(text="code"),
            "Claude-Sonnet-4.5": Behavior(text="Sorted.", suggested_replies=["Show an example"]),
            "Gemini-2.5-Pro": Behavior(
                error_at=0,
                error_text="no points",
                error_type="insufficient_fund",
                allow_retry=False,
            ),
        }
    )
    standin.add_api_key("live-key")
    with served_in_thread(standin, lifespan="off") as poe:
        env = {"POE_API_KEY": "live-key", "POE_BASE_URL": poe + BOT_PREFIX}
        with studio_process(tmp_path / "log", "--delay", "0", env=env) as (url, token):
            page = _open(browser, url, token)
            page.click("nav button:has-text('/router')")
            page.select_option("#mode", "live")
            _send(page, "How do I sort?")
            _last_reply_done(page)
            assert page.inner_text(".message.bot:last-child .markdown") == "Sorted."
            page.click("#suggestions button:has-text('Show an example')")  # sends it
            page.wait_for_function("document.querySelectorAll('[data-done=true]').length === 2")
            standin.bots["GPT-5-mini"].behavior = Behavior(text="cooking")
            _send(page, "What should I cook?")
            page.wait_for_function("document.querySelectorAll('[data-done=true]').length === 3")
            failed = page.locator(".message.bot:last-child")
            assert "failed" in (failed.get_attribute("class") or "")
            notice = failed.locator(".notice").inner_text()
            assert notice.startswith("Error (insufficient_fund): ") and "no retry" in notice
    asked = [r["query"][-1]["content"] for r in standin.requests if r["bot"] == "GPT-5-mini"]
    assert "Show an example" in asked[1]


def _png(path: Path) -> None:
    """A small picture at `path`: the examples' own."""
    shutil.copy(ROOT / "examples" / "picture.png", path)


def test_a_dependencys_picture_is_shown_in_the_reply(browser: Browser, tmp_path: Path) -> None:
    _png(tmp_path / "cat.png")
    answers = tmp_path / "answers.yaml"
    answers.write_text("answers:\n  Imagen-4: {file: cat.png}\n  idea: A cat on a mat.\n")
    with studio_process(tmp_path / "log", "--answers", str(answers), "--delay", "0") as (
        url,
        token,
    ):
        page = _open(browser, url, token)
        page.click("nav button:has-text('/illustrator')")
        page.select_option("#mode", "scripted")
        _send(page, "a cat")
        _last_reply_done(page)
        picture = page.locator(".message.bot:last-child img")
        picture.wait_for()
        page.wait_for_function(
            "() => document.querySelector('.message.bot:last-child img').naturalWidth > 0"
        )
        assert picture.get_attribute("alt") == "cat.png"


def test_a_file_attached_to_a_message_reaches_the_dependencies(
    browser: Browser, tmp_path: Path
) -> None:
    _png(tmp_path / "sketch.png")
    with studio_process(tmp_path / "log", "--delay", "0") as (url, token):
        page = _open(browser, url, token)
        page.set_input_files("#attach", str(tmp_path / "sketch.png"))
        page.wait_for_selector("#pending .chip")
        _send(page, "What is this?")
        _last_reply_done(page)
        assert page.locator(".message.user img[alt='sketch.png']").count() == 1
        reply = page.inner_text(".message.bot:last-child")
    drafts, verdict = reply.split("[Claude-Opus-4.1 (simulated) was asked:]", 1)
    assert drafts.count("attachments: sketch.png") == 3  # each draft's bot got the file
    assert verdict.rstrip().endswith("attachments: sketch.png")  # and so did the verdict's


def test_live_mode_is_marked_shows_an_inline_picture_and_the_points_spent(
    browser: Browser, tmp_path: Path
) -> None:
    _png(tmp_path / "cat.png")
    (tmp_path / "pipelines.yaml").write_text((ROOT / "pipelines.yaml").read_text())
    imagen = Behavior(text="Here: ![a cat][c1] done.", attachment_at=1, inline_ref="c1")
    standin = StandIn({"GPT-5-mini": Behavior(text="A cat on a mat."), "Imagen-4": imagen})
    standin.add_api_key("live-key", points=500)
    standin.prices.update({"GPT-5-mini": 2, "Imagen-4": 30})
    standin.uploads["0"] = ("cat.png", (tmp_path / "cat.png").read_bytes())
    with served_in_thread(standin, lifespan="off") as poe:
        imagen.attachment = (f"{poe}/uploaded/0/cat.png", "image/png", "cat.png")  # Poe's CDN
        env = {"POE_API_KEY": "live-key", "POE_BASE_URL": poe + BOT_PREFIX}
        config = str(tmp_path / "pipelines.yaml")
        with studio_process(tmp_path / "log", "--config", config, env=env) as (url, token):
            page = _open(browser, url, token)
            page.click("nav button:has-text('/illustrator')")
            assert page.is_hidden("#live-warning")
            page.select_option("#mode", "live")
            assert "spends its points" in page.inner_text("#live-warning")
            _send(page, "a cat")
            _last_reply_done(page)
            inline = page.locator(".message.bot:last-child .markdown img[alt='a cat']")
            inline.wait_for()
            page.wait_for_function(
                "() => document.querySelector('.message.bot:last-child .markdown img')"
                ".naturalWidth > 0"
            )
            page.click("[data-tab=calls]")
            page.wait_for_selector(".points")
            points = page.inner_text(".points")
    assert points.startswith("32 points spent") and standin.balances["live-key"] == 500 - 32


def test_a_hostile_answer_cannot_take_over_the_page(browser: Browser, tmp_path: Path) -> None:
    hostile = (
        '<input id="text" value="CLOBBERED"> <img src=x onerror="window.pwned = 1"> '
        "[click](javascript:window.pwned=2) ![broken][r1]"
    )
    standin = StandIn(
        {
            "GPT-5": Behavior(
                text=hostile,
                attachment=("file:///tmp/x%E0%A4%A", "image/png", "x.png"),
                attachment_at=0,
                inline_ref="r1",
            )
        }
    )
    standin.add_api_key("live-key")
    with served_in_thread(standin, lifespan="off") as poe:
        env = {"POE_API_KEY": "live-key", "POE_BASE_URL": poe + BOT_PREFIX}
        plain = "version: 1\nbots:\n  plain:\n    steps: [{bot: GPT-5}]\n"
        with _studio(browser, tmp_path, plain, env=env) as page:
            page.select_option("#mode", "live")
            _send(page, "first")
            _last_reply_done(page)
            _send(page, "my real message")  # the answer's own id="text" must not stand in
            page.wait_for_function("document.querySelectorAll('[data-done=true]').length === 2")
            mine = page.locator(".message.user").nth(1).inner_text()
            pwned = page.evaluate("window.pwned === undefined")
            links = page.eval_on_selector_all(".message.bot a", "(a) => a.map((x) => x.href)")
    assert mine == "my real message" and pwned
    assert not any(link.startswith("javascript:") for link in links)
    asked = [r["query"][-1]["content"] for r in standin.requests]
    assert asked == ["first", "my real message"]


BROKEN = "version: 1\nbots:\n  helper:\n    steps:\n      - bot: GPT-5\n        retries: lots\n"


def test_an_invalid_edit_shows_its_line_and_fixing_it_restores_the_bot(
    browser: Browser, tmp_path: Path
) -> None:
    config = tmp_path / "pipelines.yaml"
    with _studio(browser, tmp_path, BROKEN.replace("lots", "1"), "--delay", "0") as page:
        assert page.is_hidden("#problems") and page.inner_text("#version") == "version 1"
        config.write_text(BROKEN)
        page.wait_for_selector("#problems:not([hidden])")
        problem = page.inner_text("#problems-list li")
        assert problem.startswith(f"{config}:6:9: ") and "retries" in problem
        _send(page, "still there?")  # the last valid version keeps serving
        _last_reply_done(page)
        assert "GPT-5 (simulated) was asked" in page.inner_text(".message.bot:last-child")
        _screenshot(page, "problems", tmp_path)
        config.write_text(BROKEN.replace("retries: lots", "retries: 2").replace("helper", "fixed"))
        page.wait_for_selector("#problems[hidden]", state="attached")
        assert page.inner_text("#version") == "version 2"
        assert page.inner_text("nav") == "/fixed"


def test_a_request_without_the_token_is_refused(browser: Browser, tmp_path: Path) -> None:
    with studio_process(tmp_path / "log", "--config", str(ROOT / "pipelines.yaml")) as (url, _):
        page = browser.new_page()
        response = page.goto(f"{url}/")
        assert response is not None and response.status == 403
        assert "token" in page.inner_text("body")
