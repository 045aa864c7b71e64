"""Access keys: each bot's key read from the environment, checked for Poe's shape, and what a
bot without a usable key does.

Poe: "a creator can provide an access key consisting of 32 ASCII characters", sent on every
request as `Authorization: Bearer <access_key>`. Deployed (`main.py` on Modal), a bot whose key
variable is missing or malformed must not serve openly on the internet: it refuses every
request, and the log says which variable and which Modal secret to fix. Served locally
(`python -m bots serve`), a bot without a key accepts any caller, for development.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bots.spec.loader import BotPlan

log = logging.getLogger("bots.keys")  # the name in the log, as creators grep it

SECRET = "poe-pipelines"
"""The Modal secret main.py deploys with: each bot's access key, by its variable."""
KEY_SHAPE = re.compile(r"^[\x21-\x7e]{32}$")  # 32 printable ASCII characters, no spaces


@dataclass(frozen=True)
class Key:
    """A bot's access key as served: the key, or None for a keyless local bot; `refusal`
    says why a deployed bot refuses every request (its key is missing or malformed)."""

    value: str | None
    refusal: str | None = None


def resolve(plan: BotPlan, environ: Mapping[str, str], *, deployed_with: str | None = None) -> Key:
    """The key `plan`'s bot serves with. `deployed_with` names the Modal secret the app is
    deployed with; then a missing or malformed key makes the bot refuse every request."""
    variable = plan.access_key_env
    raw = environ.get(variable) or ""
    key = raw.strip()  # a secret pasted with its newline is still the key
    if key and KEY_SHAPE.match(key):
        return Key(key)
    problem = (
        f"{variable} is not set"
        if not key
        else f"{variable} does not look like a Poe access key (32 ASCII characters without "
        f"spaces; it has {len(key)})"
    )
    if deployed_with is not None:
        log.error(
            "bot %s: %s, so /%s refuses every request. Add the bot's access key (from its edit "
            "page on poe.com) as %s to the Modal secret %r, then run `modal deploy main.py`.",
            plan.id,
            problem,
            plan.id,
            variable,
            deployed_with,
        )
        return Key(None, f"this bot is not configured on its server: {problem}")
    if not key:
        log.warning(
            "bot %s: %s, so /%s accepts requests without a key (fine for local development; "
            "set it before deploying)",
            plan.id,
            problem,
            plan.id,
        )
        return Key(None)
    log.warning("bot %s: %s; serving with it anyway (local development)", plan.id, problem)
    return Key(key)
