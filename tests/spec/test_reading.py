"""Every reader of YAML or JSON is bounded: hostile files and texts get a clean, located error
within a bounded time, never a hang, a traceback or unbounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.errors import ConfigError, Unreadable
from bots.evals import dataset
from bots.spec import loader
from bots.spec.document import Document
from bots.spec.reading import BOUNDS, json_value, read_source
from bots.tools import cases, script
from standin.serving import ROOT

LAUGHS = """version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
bots: {x: {steps: [{text: hi}]}}
"""

MERGES = "version: 1\nm0: &m0 {a: 1, b: 2, c: 3, d: 4}\n" + "".join(
    f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}\n" for i in range(1, 40)
)

HOSTILE_YAML = {
    "billion laughs": (LAUGHS, "expands to more than 250,000 values"),
    "merge-key bomb": (MERGES, "expands to more than 250,000 values"),
    "flow nesting 500 deep": ("version: 1\nbots: " + "[" * 500 + "]" * 500, "nested deeper"),
    "block nesting 100 deep": (
        "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "v: 1\n",
        "nested deeper than 64",
    ),
    "unknown tag": ("version: 1\ncall_budget: !foo 3\n", "cannot read '3' as !foo"),
    "impossible date": ("version: 1\nwhen: 2024-02-30\n", "day is out of range"),
    "!!int abc": ("version: 1\nn: !!int abc\n", "cannot read 'abc' as int"),
    "huge integer": ("version: 1\nn: " + "9" * 400 + "\n", "more than 100 digits"),
    "infinity": ("version: 1\nn: .inf\n", "not a finite number"),
    "not a number": ("version: 1\nn: .nan\n", "not a finite number"),
    "self-referring alias": ("version: 1\na: &a [*a]\n", ""),
}


@pytest.mark.parametrize("name", HOSTILE_YAML)
def test_hostile_yaml_is_refused_where_it_stands_quickly(name: str) -> None:
    text, expected = HOSTILE_YAML[name]
    started = time.monotonic()
    document = Document(text)
    assert time.monotonic() - started < 10  # generous: a hang would take minutes
    if expected:
        said = [message for _, message, _ in document.problems]
        assert any(expected in message for message in said), said


def test_the_validator_refuses_a_billion_laughs_in_its_own_process(tmp_path: Path) -> None:
    """The whole command, as a creator runs it: exit 1, one located line, bounded memory."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(LAUGHS)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"  # 1 GiB at most
        "from bots.cli import main\n"
        f"main(['validate', '--config', {str(bomb)!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{bomb}:2:4: " in result.stderr and "expands to more than" in result.stderr


def test_a_file_over_the_size_bound_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as file:
        file.truncate(BOUNDS.bytes + 1)
    with pytest.raises(ConfigError) as caught:
        read_source(str(big))
    assert "over the 16 MiB a file may be" in str(caught.value)


HOSTILE_JSON = {
    "100,000 brackets": ("[" * 100_000, "nested deeper"),
    "deep but closed": ("[" * 65 + "]" * 65, "nested deeper than 64"),
    "NaN": ('{"temperature": NaN}', "NaN is not a JSON number"),
    "Infinity": ("[Infinity]", "Infinity is not a JSON number"),
    "1e999": ("[1e999]", "too large to be a finite number"),
    "400 digits": ("[" + "9" * 400 + "]", "more than 100 digits"),
    "not JSON": ("{oops", "not JSON"),
    "too many values": ("[" + ",".join(["0"] * 250_001) + "]", "more than 250,000 values"),
}


@pytest.mark.parametrize("name", HOSTILE_JSON)
def test_hostile_json_is_refused_saying_which_bound(name: str) -> None:
    text, expected = HOSTILE_JSON[name]
    with pytest.raises(Unreadable) as caught:
        json_value(text)
    assert expected in str(caught.value)


def test_json_within_the_bounds_reads_as_usual() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": [[[]]]}, "n": -(10**99)}
    assert json_value(json.dumps(value)) == value


yaml_texts = st.one_of(
    st.text(alphabet="{}[]:,-&*!|>'\"# \n\tabc01.<%", max_size=300),
    st.lists(
        st.sampled_from(
            [
                "version: 1",
                "bots:",
                "  x:",
                "    steps:",
                "      - text: hi",
                "- &a [1]",
                "- *a",
                "<<: *a",
                "!!int x",
                "2024-02-30",
                ".inf",
                "? [a]",
                "{{ x }}",
                "  ",
                "\t",
            ]
        ),
        max_size=30,
    ).map("\n".join),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_texts)
def test_any_text_validates_to_a_config_or_located_problems(text: str) -> None:
    """Fuzz: whatever the text, the loader answers with a config or ConfigError, quickly."""
    started = time.monotonic()
    try:
        loader.parse(text, "fuzz.yaml")
    except ConfigError as e:
        assert e.problems and all(str(p).startswith("fuzz.yaml:") for p in e.problems)
    assert time.monotonic() - started < 5


json_texts = st.one_of(
    st.text(alphabet='{}[]:,"0123456789.eE-+ ntrufalsNIiy\\', max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
        max_leaves=30,
    ).map(lambda v: json.dumps(v, allow_nan=True)),
)


@settings(max_examples=500, deadline=None)
@given(json_texts)
def test_any_text_reads_as_json_or_says_why(text: str) -> None:
    try:
        value = json_value(text)
    except Unreadable as e:
        assert str(e)
    else:
        assert json.loads(json.dumps(value, allow_nan=False)) == value  # finite, plain JSON


READERS = {
    "pipelines": lambda path: loader.load(path),
    "cases": lambda path: cases.read(path, loader.load(ROOT / "pipelines.yaml")),
    "answers": lambda path: script.read(path),
    "dataset (YAML)": lambda path: dataset.read(path),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", ["billion laughs", "merge-key bomb", "flow nesting 500 deep"])
def test_every_file_reader_refuses_hostile_yaml_at_its_line(
    tmp_path: Path, reader: str, name: str
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE_YAML[name][0])
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        READERS[reader](str(path))
    assert time.monotonic() - started < 10
    assert all(str(p).startswith(f"{path}:") for p in caught.value.problems)
    assert any(HOSTILE_YAML[name][1] in str(p) for p in caught.value.problems), caught.value


def test_a_jsonl_dataset_refuses_hostile_lines_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text('"fine"\n' + "[" * 100_000 + "\n" + '{"message": NaN}\n')
    with pytest.raises(ConfigError) as caught:
        dataset.read(str(path))
    said = [str(p) for p in caught.value.problems]
    assert said[0].startswith(f"{path}:2:") and "nested deeper" in said[0]
    assert said[1].startswith(f"{path}:3:") and "NaN is not a JSON number" in said[1]
