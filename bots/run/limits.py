"""Poe's limits on one reply, and the account of what a reply has spent against them.

Poe: "The total length of a bot response (the sum of the length of all `text` events) may not
exceed 100,000 characters", and a reply may have at most 10,000 events. Whether
`replace_response` text counts is not said, so it is counted too: every character of every
`text` and `replace_response` event is charged. Characters are counted as UTF-16 code units,
the larger of the usual counts (an emoji is two), so no reading of "length" puts a reply over.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLY_CHAR_LIMIT = 100_000
"""Characters Poe accepts in one reply, all `text` and `replace_response` events together."""
EVENT_LIMIT = 10_000
"""Events Poe accepts in one reply."""
STREAM_EVENT_LIMIT = 9_000
"""Events sent while a reply streams; the rest are kept for its end (last text, files,
suggested replies, data, error)."""
FINAL_EVENTS = 20
"""Events kept for a reply's end after its files: last text, suggested replies, data, error."""
ENDING_RESERVE = 1_000
"""Characters kept back while streaming, so a reply can always end with its notes."""
RERENDER_SHARE = 0.5
"""Re-renders stop once they would take what was sent past this share of the character limit,
so the rest is left for the reply itself."""
TRUNCATED = "\n\n_(The reply was cut here: it reached Poe's limit of 100,000 characters.)_"


def poe_len(text: str) -> int:
    """The length of `text` in UTF-16 code units (what Poe's limit is charged in here)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def cut_to(text: str, units: int) -> str:
    """The longest prefix of `text` at most `units` long (in UTF-16 code units)."""
    if len(text) <= units and poe_len(text) <= units:
        return text
    if units <= 0:
        return ""
    # errors="ignore" drops half of a surrogate pair left at the cut
    return text.encode("utf-16-le")[: 2 * units].decode("utf-16-le", errors="ignore")


@dataclass
class Allowance:
    """What one reply has sent, against Poe's limits."""

    chars: int = 0  # charged characters, all text and replace events so far
    shown: int = 0  # characters of the text the user sees now (the last replace plus deltas)

    def charge(self, text: str, *, replace: bool) -> None:
        units = poe_len(text)
        self.chars += units
        self.shown = units if replace else self.shown + units

    def room(self, *, replace: bool, final: bool = True) -> int:
        """Most characters the whole visible reply may have after the next event: a delta
        keeps what was charged for the text still shown, a replace pays for all of it again.
        While streaming (`final=False`), the ending's reserve is kept back."""
        spent = self.chars if replace else self.chars - self.shown
        return REPLY_CHAR_LIMIT - spent - (0 if final else ENDING_RESERVE)

    def may_rerender(self, units: int) -> bool:
        """Whether sending `units` more characters that a later replace will discard (a
        re-render, or a live tail below stale sections) still leaves the reply its share."""
        return self.chars + units <= RERENDER_SHARE * REPLY_CHAR_LIMIT

    def fit(self, text: str, *, replace: bool, suffix: str = "") -> tuple[str, bool]:
        """`text` then `suffix` as the whole visible reply, and whether `text` had to be cut
        (with a note saying so) to stay within the limit."""
        room = self.room(replace=replace) - poe_len(suffix)
        if poe_len(text) <= room:
            return text + suffix, False
        return cut_to(text, room - poe_len(TRUNCATED)) + TRUNCATED + suffix, True
