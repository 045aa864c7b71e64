"""Modal deployment: one app whose one web endpoint serves every bot of a pipelines file.

    modal deploy main.py                      # deploy pipelines.yaml (validated first, here)
    PIPELINES=mine.yaml modal deploy main.py  # deploy your own file: only its bots
    python main.py           # serve the same app locally, like `python -m bots serve`
                             # (takes serve's options, e.g. --port 9000)

The names you may want to change are just below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import modal

from bots.errors import ConfigError
from bots.serve.keys import SECRET
from bots.spec import catalog, loader

APP_NAME = "poe-pipelines"
SECRET_NAME = SECRET  # the Modal secret holding each bot's <ID>_ACCESS_KEY ("poe-pipelines")
# What one container holds, measured (`python -m bench`; docs/performance.md). Modal
# runs the app's replies as tasks on one event loop, so a container uses one core, however
# many it is given: CPU asks for that one. On it, one server process relays three-way fan-outs
# of models streaming 40 tokens a second with p99 added latency under 100 ms and event-loop lag
# under 50 ms up to about 34 chats in flight (about 4,000 upstream events a second); at about
# 50 the core is full. The cost is per relayed event (the HTTP client's, mostly), so a bot
# that calls one model at a time holds about three times as many chats, a council of four
# fewer. Modal's autoscaler aims at TARGET_CHATS per container and starts another container
# beyond it; CONCURRENT_CHATS is the most one container takes in a burst while that one starts.
CPU = 1.0
TARGET_CHATS = 30
CONCURRENT_CHATS = 45
MIN_CONTAINERS = 0  # 1 keeps a container warm: no cold start, but it is billed while idle
TIMEOUT_SECONDS = 600  # Poe lets a reply run 600 s; Modal's default would cut it at 300 s
# OpenTelemetry's SDK and OTLP exporter in the image, so that setting OTEL_EXPORTER_OTLP_ENDPOINT
# (and OTEL_EXPORTER_OTLP_HEADERS) in the secret turns traces on. They are loaded only when an
# endpoint is set, so a container without one starts no slower; False leaves them out.
TRACING = True

HERE = Path(__file__).resolve().parent
# The pipelines file deployed: PIPELINES (from where `modal deploy` runs), else pipelines.yaml.
# In the container the same file is at REMOTE_CONFIG, whatever it was called here.
CONFIG_PATH = Path(os.environ.get("PIPELINES") or HERE / "pipelines.yaml").resolve()
REMOTE_CONFIG = "/root/pipelines.yaml"


def _load_config() -> loader.Config:
    """Validated at import, so a bad file stops `modal deploy` before anything is uploaded; on
    your machine, every bot it calls must be in Poe's model catalog (or under known_bots:)."""
    try:
        in_container = not CONFIG_PATH.exists() and Path(REMOTE_CONFIG).exists()
        if in_container:
            return loader.load(REMOTE_CONFIG)
        doubts = catalog.problems(str(CONFIG_PATH), catalog.load(CONFIG_PATH))
        try:
            config = loader.load(CONFIG_PATH)
        except ConfigError as e:
            raise ConfigError(e.problems + doubts) from None
        if doubts:
            raise ConfigError(doubts)
        return config
    except ConfigError as e:
        name = os.environ.get("PIPELINES") or "pipelines.yaml"
        sys.stderr.write(f"{e}\n{name} is invalid: fix it before deploying or serving.\n")
        raise SystemExit(1) from None


CONFIG = _load_config()


def runtime_requirements(path: Path = HERE / "requirements.txt", tracing: bool = True) -> list[str]:
    """The pinned runtime packages: requirements.txt up to its test tools, with or without
    its tracing section."""
    if not path.exists():  # inside the container, where the image is already built
        return []
    wanted, keep = [], True
    for line in path.read_text().split("# Tests and checks")[0].splitlines():
        if line.startswith("# Tracing"):
            keep = tracing
        elif line.strip() and not line.startswith("#") and keep:
            wanted.append(line.strip())
    return wanted


image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install(*runtime_requirements(tracing=TRACING))
    .add_local_python_source("bots")
    .add_local_file(CONFIG_PATH, REMOTE_CONFIG)
)
app = modal.App(APP_NAME)


@app.function(
    image=image,
    secrets=[modal.Secret.from_name(SECRET_NAME)],
    timeout=TIMEOUT_SECONDS,
    min_containers=MIN_CONTAINERS,
    cpu=CPU,
)
@modal.concurrent(max_inputs=CONCURRENT_CHATS, target_inputs=TARGET_CHATS)
@modal.asgi_app()
def fastapi_app():  # type: ignore[no-untyped-def]
    """Every bot of pipelines.yaml, each at /<bot id>. A bot whose access key is missing from
    the secret refuses every request (the log says which variable to add)."""
    from bots.serve.server import build_app

    return build_app(CONFIG, deployed_with=SECRET_NAME)


if __name__ == "__main__":
    from bots.cli import main

    main(["serve", "--config", str(CONFIG_PATH), *sys.argv[1:]])  # e.g. --port 9000
