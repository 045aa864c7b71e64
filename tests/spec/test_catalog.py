"""Poe's model catalog against a pipelines file: unknown bots, files a bot cannot take or make,
prices where the catalog gives them, and a catalog file that is not one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bots.errors import ConfigError
from bots.spec import catalog, loader


def model(
    name: str, takes: list[str] | None = None, makes: list[str] | None = None, **pricing: str
):
    entry: dict[str, object] = {"id": name, "object": "model", "owned_by": "Lab"}
    if takes or makes:
        entry["architecture"] = {"input_modalities": takes, "output_modalities": makes}
    entry["pricing"] = pricing or None
    return entry


def beside(tmp_path: Path, pipelines: str, models: list[dict[str, object]]) -> loader.Config:
    (tmp_path / "pipelines.yaml").write_text(pipelines)
    kept = {"source": "test", "fetched": "2026-12-06", "object": "list", "data": models}
    (tmp_path / catalog.FILE_NAME).write_text(json.dumps(kept))
    return loader.load(tmp_path / "pipelines.yaml")


def test_the_shipped_bots_are_all_in_the_shipped_snapshot() -> None:
    config = loader.load("pipelines.yaml")
    found = catalog.load("pipelines.yaml")
    assert found.file.snapshot and found.path == str(catalog.SNAPSHOT)
    assert catalog.problems(config.path, found) == []
    assert "the snapshot shipped, of 2026-12-06" in found.described()


def test_unknown_bots_are_located_with_did_you_mean_and_known_bots_are_taken(
    tmp_path: Path,
) -> None:
    config = beside(
        tmp_path,
        "version: 1\nknown_bots: [My-Private-Bot]\nbots:\n  x:\n    steps:\n"
        "      - {bot: Claude-Sonet-4.5, fallback: [My-Private-Bot, Misty]}\n",
        [model("Claude-Sonnet-4.5"), model("GPT-5")],
    )
    found = catalog.problems(config.path, catalog.load(config.path))
    assert [(p.line, p.column, p.path) for p in found] == [
        (6, 10, "bots.x.steps[0].bot"),
        (6, 60, "bots.x.steps[0].fallback[1]"),
    ]
    assert "did you mean 'Claude-Sonnet-4.5'?" in found[0].message
    assert "Poe's catalog (fetched 2026-12-06)" in found[0].message
    assert "known_bots:" in found[1].message and "did you mean" not in found[1].message


def test_files_to_a_text_only_bot_and_files_from_one_are_warned_of(tmp_path: Path) -> None:
    config = beside(
        tmp_path,
        "version: 1\nbots:\n  x:\n    steps:\n"
        "      - {id: draft, bot: Writer}\n"
        "      - {id: look, bot: Reader, attachments: [user]}\n"
        "      - {bot: Painter, attachments: [draft]}\n"
        "      - {bot: Painter}\n"  # the default (the user's files, if any) is not warned of
        "      - {bot: Painter, fallback: [Reader], attachments: true}\n",
        [
            model("Writer", ["text"], ["text"]),
            model("Reader", ["text"], ["text"]),
            model("Painter", ["text", "image"], ["image"]),
        ],
    )
    found = catalog.problems(config.path, catalog.load(config.path))
    assert [p.path for p in found] == [
        "bots.x.steps[1].attachments",
        "bots.x.steps[2].attachments",
        "bots.x.steps[4].attachments",
    ]
    assert "files are sent to its bot 'Reader', which takes only text" in found[0].message
    assert "its fallback 'Reader'" in found[2].message and "choose a fallback" in found[2].message
    assert "takes the files of step 'draft', but its bot 'Writer' makes only text" in (
        found[1].message
    )


def test_prices_are_shown_where_given_and_never_made_up(tmp_path: Path) -> None:
    config = beside(
        tmp_path,
        "version: 1\nbots:\n  x:\n    steps: [{bot: Cheap, retries: 1}, {bot: Free}]\n"
        "  y:\n    steps: [{bot: Free}]\n",
        # $0.000001 a token in, $0.000004 out, $0.01 a request: 0.002 + 0.004 + 0.01 a call
        [model("Cheap", prompt="0.000001", completion="0.000004", request="0.01"), model("Free")],
    )
    lines = catalog.price_lines(config, catalog.load(config.path))
    assert "2,000 tokens and write 1,000" in lines[0]
    assert lines[1].split() == [
        "x", "Cheap", "$0.0160", "x2", "worst", "case", "at", "least", "$0.0320", "a",
        "message;", "no", "price", "for", "Free",
    ]  # fmt: skip
    assert lines[2].split()[:3] == ["y", "-", "no"]
    snapshot = catalog.price_lines(config, catalog.read(catalog.SNAPSHOT))
    assert snapshot[0].startswith("prices: none in Poe's catalog (the snapshot shipped")


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", '{"source": "x", "fetched": "d", "data": [{"id": ""}]}', "{", "NaN"],
)
def test_a_catalog_file_that_is_no_catalog_says_how_to_replace_it(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "pipelines.yaml").write_text("version: 1\nbots:\n  x: {steps: [{bot: A}]}\n")
    (tmp_path / catalog.FILE_NAME).write_text(text)
    with pytest.raises(ConfigError) as raised:
        catalog.load(tmp_path / "pipelines.yaml")
    message = str(raised.value)
    assert "poe-models.json:1:1: it is not a catalog" in message
    assert "move it away (or delete it), then run python -m bots models" in message


def test_the_checks_read_the_file_as_written_so_they_come_with_its_other_mistakes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        "version: 1\nbots:\n  a:\n    steps: [{bot: GPT-5, temprature: 1}]\n"
        "  b:\n    steps:\n      - parallel:\n          - loop: {max: 2, steps: [{bot: Clade}]}\n"
    )
    with pytest.raises(ConfigError):
        loader.load(path)
    found = catalog.problems(str(path), catalog.read(catalog.SNAPSHOT))
    assert [(p.line, p.path) for p in found] == [
        (8, "bots.b.steps[0].parallel[0].loop.steps[0].bot")
    ]


def test_a_price_that_is_no_price_is_refused(tmp_path: Path) -> None:
    data = {"source": "x", "fetched": "d", "data": [model("A", prompt="-1")]}
    with pytest.raises(Exception, match="greater than or equal to 0"):
        catalog.parsed(data)
    data = {"source": "x", "fetched": "d", "data": [model("A", prompt="NaN")]}
    with pytest.raises(Exception, match="finite"):
        catalog.parsed(data)
    data = {"source": "x", "fetched": "d", "data": [model("A", prompt="1e999999")]}
    with pytest.raises(Exception, match="less than or equal to 1000000"):
        catalog.parsed(data)
    kept, skipped = catalog.usable([model("A", request="1e-999999"), model("B", prompt="-1"), 7])
    assert [m.id for m in kept] == ["A"] and kept[0].pricing is not None
    assert f"{kept[0].pricing.per_call():.4f}" == "0.0000"
    assert skipped[0].startswith("B: pricing.prompt:") and skipped[1].startswith("data[2]:")
