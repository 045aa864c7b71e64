"""Files between steps: what each step sends, what the user sees, and the files templates read,
over HTTP against stand-in bots that send real `file` events."""

from __future__ import annotations

import json
import textwrap

import pytest

from bots.errors import ConfigError
from bots.spec import loader
from standin.poe import Behavior
from standin.served import serve_pipelines
from standin.serving import ROOT

CAT = ("https://files.example/cat.png", "image/png", "cat.png")
CLIP = ("https://files.example/clip.mp4", "video/mp4", "clip.mp4")
DOC = {
    "url": "https://files.example/doc.pdf",
    "content_type": "application/pdf",
    "name": "doc.pdf",
    "parsed_content": "The document's text.",
}
BEHAVIORS = {
    "Painter": Behavior(text="drawn", attachment=CAT),
    "Animator": Behavior(text="animated", attachment=CLIP),
    "Echo": Behavior(echo=True),
    "Echo2": Behavior(echo=True),
    "Echo3": Behavior(echo=True),
}


def received(reply_text: str) -> list[str]:
    """The attachment names an echoing bot reports it got."""
    return list(json.loads(reply_text)["attachments"])


async def test_files_reach_the_steps_that_name_them_and_only_those() -> None:
    yaml = """\
        version: 1
        bots:
          flow:
            steps:
              - {id: picture, bot: Painter}
              - {id: clip, bot: Animator, attachments: [picture]}
              - {id: both, bot: Echo, attachments: [user, picture], show: stream}
              - {id: mine, bot: Echo2, show: stream}
              - {id: none, bot: Echo3, attachments: false, show: stream}
    """
    async with serve_pipelines(yaml, BEHAVIORS) as s:
        reply = await s.ask("flow", attachments=[DOC])
        to_animator = s.requests_to("Animator")[0]["query"][-1]["attachments"]
    both, mine, none = reply.text.split("\n\n")
    assert [a["name"] for a in to_animator] == ["cat.png"]
    assert received(both) == ["doc.pdf", "cat.png"]  # the user's own files, then picture's
    assert received(mine) == ["doc.pdf"]  # the default: the user's files
    assert received(none) == []
    assert reply.files == []  # picture and clip were hidden: their files stay with the steps


async def test_a_shown_steps_files_reach_the_user_before_the_text_that_shows_them() -> None:
    yaml = """\
        version: 1
        bots:
          draw:
            steps:
              - {id: picture, bot: Inline, show: stream}
              - {bot: Echo, attachments: [picture], history: false}
    """
    inline = Behavior(
        text="Here: ![the cat][cat1] and more",
        token_gap=0.01,
        attachment=CAT,
        attachment_at=0,
        inline_ref="cat1",
    )
    async with serve_pipelines(yaml, {"Inline": inline, "Echo": Behavior(echo=True)}) as s:
        reply = await s.ask("draw")  # the stand-in fails a reference before its file
        forwarded = s.requests_to("Echo")[0]["query"][-1]["attachments"]
    assert [f["inline_ref"] for f in reply.files] == ["cat1"]
    assert forwarded[0]["name"] == "cat.png" and forwarded[0]["inline_ref"] is None


async def test_templates_read_the_files_of_steps_and_the_users_parsed_content() -> None:
    yaml = """\
        version: 1
        bots:
          read:
            steps:
              - id: drafts
                parallel: [{id: one, bot: Painter}, {id: two, bot: Animator}]
              - {id: skipped, bot: Painter, when: "{{ false }}"}
              - text: >-
                  {{ files.one[0].name }} / {{ files.drafts | map(attribute='name') | join(',') }}
                  / {{ attachments[0].parsed_content }} / {{ files.skipped | length }}
    """
    async with serve_pipelines(yaml, BEHAVIORS) as s:
        reply = await s.ask("read", attachments=[DOC])
    assert reply.text == "cat.png / cat.png,clip.mp4 / The document's text. / 0"


async def test_settings_carry_how_poe_should_treat_attachments() -> None:
    yaml = """\
        version: 1
        bots:
          vision:
            expand_text_attachments: false
            enable_image_comprehension: true
            steps: [{bot: Echo}]
    """
    async with serve_pipelines(yaml, BEHAVIORS) as s:
        response = await s.http.post(
            f"{s.url}/vision",
            json={"version": "1.2", "type": "settings"},
            headers={"Authorization": f"Bearer {s.keys['vision']}"},
        )
    settings = response.json()
    assert settings["expand_text_attachments"] is False
    assert settings["enable_image_comprehension"] is True


def problems(steps: str) -> list[str]:
    text = f"version: 1\nbots:\n  x:\n    steps:\n{textwrap.indent(steps, '      ')}"
    with pytest.raises(ConfigError) as caught:
        loader.parse(text, "f.yaml")
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            "- {id: a, bot: A, attachments: [picture]}\n- {id: picture, bot: B}\n",
            "f.yaml:5:39: bots.x.steps[0].attachments[0]: step 'picture' does not run before",
        ),
        (
            "- {id: note, text: hi}\n- {bot: B, attachments: [note]}\n",
            "step 'note' is a text step, which calls no bot and so has no files",
        ),
        (
            "- {id: pic, bot: A}\n- {bot: B, attachments: [pic, picture]}\n",
            "no step has the id 'picture'; did you mean 'pic'?",
        ),
        (
            "- {id: pic, bot: A}\n- {text: '{{ files.pix }}'}\n",
            "template reads files.pix: no step has the id 'pix'; did you mean 'pic'?",
        ),
        ("- {id: user, bot: A}\n", "step id 'user' is a source of attachments"),
    ],
    ids=["later", "text-step", "unknown", "template", "reserved"],
)
def test_attachment_sources_are_checked_at_their_line(steps: str, expected: str) -> None:
    found = problems(steps)
    assert any(expected in p for p in found), found


def test_a_loop_may_pass_a_round_its_own_files() -> None:
    text = (ROOT / "pipelines.yaml").read_text()
    plan = loader.parse(text).bots["critic"]
    assert plan.cost.total == 6 and plan.dependencies == {"Imagen-4": 3, "Claude-Sonnet-4.5": 3}
    assert plan.file_calls == {"steps[0].loop.steps[0]"}  # the dry run draws for the critic


SHIPPED = (ROOT / "pipelines.yaml").read_text()


async def test_the_animator_draws_then_animates_the_picture_it_drew() -> None:
    behaviors = {
        "GPT-5-mini": Behavior(text="A lighthouse at dawn, gulls circling."),
        "Imagen-4": Behavior(text="", attachment=CAT),
        "Veo-3": Behavior(echo=True, attachment=CLIP),
    }
    async with serve_pipelines(SHIPPED, behaviors) as s:
        reply = await s.ask("animator", "a lighthouse", parameters={"aspect": "9:16"})
        to_veo = s.requests_to("Veo-3")[0]["query"][-1]
    assert [f["name"] for f in reply.files] == ["cat.png", "clip.mp4"]  # both shown, in order
    assert [a["name"] for a in to_veo["attachments"]] == ["cat.png"]
    assert to_veo["parameters"] == {"aspect_ratio": "9:16"}
    assert to_veo["content"].endswith("A lighthouse at dawn, gulls circling.")


@pytest.mark.parametrize(
    ("rounds", "review", "calls"),
    [(3, "Make it brighter.", 6), (3, "APPROVED", 2), (1, "Make it brighter.", 2)],
)
async def test_the_critic_redraws_while_the_critic_asks_up_to_the_rounds_set(
    rounds: int, review: str, calls: int
) -> None:
    behaviors = {
        "Imagen-4": Behavior(text="", attachment=CAT),
        "Claude-Sonnet-4.5": Behavior(text=review),
    }
    async with serve_pipelines(SHIPPED, behaviors) as s:
        reply = await s.ask("critic", "a red fox", parameters={"rounds": rounds})
        message_id = s.standin.requests[-1]["message_id"]
        reviews = [r["query"][-1] for r in s.requests_to("Claude-Sonnet-4.5")]
        drawings = [r["query"][-1]["content"] for r in s.requests_to("Imagen-4")]
    assert sum(s.standin.calls[message_id].values()) == calls
    assert all([a["name"] for a in r["attachments"]] == ["cat.png"] for r in reviews)
    assert all("Change this: Make it brighter." in d for d in drawings[1:])
    assert len(reply.files) == calls // 2  # each round's picture is shown as it is drawn
