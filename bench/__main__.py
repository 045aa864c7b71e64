"""The benchmark: how many live chats one server process holds under steady load, on 127.0.0.1.

    .venv/bin/python -m bench                                  # about 17 minutes
    .venv/bin/python -m bench --quick --cold-start --tracing   # a smoke run of seconds
    .venv/bin/python -m bench --out bench-results/capacity.json  # recorded on purpose
    .venv/bin/python -m bench --servers '' --sampling           # samples that stop early (seconds)
    .venv/bin/python -m bench --servers '' --studio             # the studio's latencies (a minute)

Ours and the references (`bench.references`) in turn, each in a fresh process pinned to one
CPU, under chats that arrive at random and fan out to three model-like dependencies
(`bench.models`), stepped up until a step breaks (`bench.step`). Options add the cost of traces,
a profile and cold starts. The JSON goes to bench-results/latest/ (ignored by git); the table
is printed; the exit status says whether errors were seen. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import sampling, studio
from bench.capacity import FULL, QUICK, SERVERS, Capacity
from bench.process import raise_fd_limit
from bench.report import report, summary

DEFAULT_OUT = "bench-results/latest/capacity.json"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    parser.add_argument("--cold-start", action="store_true", help="also time cold starts")
    parser.add_argument("--tracing", action="store_true", help="also measure what traces cost")
    parser.add_argument("--profile", action="store_true", help="also profile ours at one step")
    parser.add_argument(
        "--sampling",
        action="store_true",
        help="also compare samples that stop once they agree with a fixed count (seconds)",
    )
    parser.add_argument(
        "--studio",
        action="store_true",
        help="also time the studio in Chromium: token to page, save to page (a minute)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="which servers, in order ('' for none: then only --sampling, --studio run)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"the JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    servers = [k for k in args.servers.split(",") if k]
    if unknown := sorted(set(servers) - set(SERVERS)):
        parser.error(f"unknown servers {unknown}; choose from {', '.join(SERVERS)}")
    sizes = QUICK if args.quick else FULL
    out = Path(args.out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    capacity = Capacity(sizes, out, servers)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(sizes.run_seconds):
            found: dict[str, Any] = {"errors": []}
            if servers:
                found = await capacity.run(args.cold_start, args.tracing, args.profile)
                found["summary"] = summary(found["servers"])
            if args.sampling:
                found["sampling"] = await sampling.measure(40 if args.quick else 400, seed=7)
            if args.studio:  # Playwright's sync API runs outside this event loop
                sizes_ = (2, 10, 3) if args.quick else (5, 40, 20)
                found["studio"] = await asyncio.to_thread(studio.measure, *sizes_)
            return found

    results = asyncio.run(bounded())
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = [report(results)] if servers else []
    if args.sampling:
        text.append(sampling.table(results["sampling"]))
    if args.studio:
        text.append(studio.table(results["studio"]))
    print("\n\n".join(text) + f"\n\nresults: {out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
