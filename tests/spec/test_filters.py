"""The aggregation filters, on good and bad input, as templates use them."""

from __future__ import annotations

from typing import Any

import pytest

from bots.errors import StepFailed
from bots.spec.templates import Branches, Template


def render(source: str, **variables: Any) -> str:
    return Template(source, "test").render(variables)


def test_lines_keeps_non_empty_trimmed_lines() -> None:
    assert render("{{ x | lines }}", x="  a \n\n\tb\n  \n") == "['a', 'b']"
    assert render("{{ x | lines | length }}", x="") == "0"


def test_from_json_reads_plain_fenced_and_surrounded_json() -> None:
    assert render("{{ (x | from_json).a }}", x='{"a": 1}') == "1"
    assert render("{{ x | from_json | length }}", x="Here:\n```json\n[1, 2, 3]\n```\nDone.") == "3"
    assert render("{{ (x | from_json).k }}", x='The answer is {"k": "v"} as asked.') == "v"
    for bad in ["no json here", '"just a string"', "```json\n{broken\n```"]:
        with pytest.raises(StepFailed, match="from_json found no JSON object or list"):
            render("{{ x | from_json }}", x=bad)


def test_vote_takes_the_most_common_answer_and_ties_go_to_the_earliest() -> None:
    assert render("{{ x | vote }}", x=["42", " 41", "forty-two", "42 ", "41"]) == "42"
    assert render("{{ x | vote }}", x=["Yes", "yes.", "YES", "no"]) == "Yes"  # case-folded
    assert render("{{ x | vote }}", x=["b", "a", "a", "b"]) == "b"  # a tie: the earliest
    assert render("{{ x | vote }}", x=Branches(one="7", two="8", three="8")) == "8"
    assert render("{{ x | vote }}", x="maybe\nsure\nsure") == "sure"  # a text votes by line
    with pytest.raises(StepFailed, match="vote was given no answers"):
        render("{{ x | vote }}", x=["", "  "])
    with pytest.raises(StepFailed, match="expected a list, a text or a mapping, got int"):
        render("{{ x | vote }}", x=3)


def test_numbered_and_shorten() -> None:
    assert render("{{ x | numbered }}", x=["first ", "second"]) == "1. first\n2. second"
    assert render("{{ x | shorten(8) }}", x="a long\nquestion indeed") == "a long…"
    assert render("{{ x | shorten(80) }}", x="short") == "short"
    with pytest.raises(StepFailed, match="shorten needs a width of 1 or more"):
        render("{{ x | shorten(0) }}", x="text")
