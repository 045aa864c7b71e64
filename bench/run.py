"""The benchmark: engine overhead, fan-out timing, live-merge cost and scale, all on 127.0.0.1.

    .venv/bin/python -m bench.run                 # full run (a few minutes), table + JSON
    .venv/bin/python -m bench.run --quick         # smoke run (a few seconds), same figures
    .venv/bin/python -m bench.run --profile       # also profile the 200-chat run
    .venv/bin/python -m bench.run --out PATH      # JSON (default bench-results/latest/)

Three kinds of process, so that none shares an event loop with another:

* the stand-in for Poe's bot query API (`standin.poe.StandIn`, every caller admitted), with
  dependency bots whose timing is set (first token, tokens, gap between tokens); it also notes
  when each upstream stream started and ended, so a reply's time can be compared with what its
  own dependencies took under the same load;
* the servers under test, each in its own process (own uvicorn on a free port): the project's
  app (`bots.server.build_app`, a pipelines config made in code, access keys in its env, the
  stand-in as base_url), and for comparison the passthrough bot of Poe's docs (its own
  `stream_request` client per call, default retries) and the same with a shared client;
  their CPU time and memory are read from /proc/<pid>;
* this process: the load generator, playing Poe (POST a query, read the SSE reply) on
  kept-alive connections opened before each measurement, with a lean HTTP/1.1 client so that
  it is never the bottleneck.

What is measured, and how:

1. Engine overhead: a one-step pipeline vs the passthroughs, same dependency (500 tokens),
   closed loop at 1 and 50 chats; messages/s and server CPU s per message (/proc utime+stime).
2. Fan-out: three branches (first tokens at 0.5, 1.0, 1.5 s), `show: sections` and `stream`,
   against one-step pipelines calling the slowest / fastest branch alone, in the same run.
3. Live merge: three 1,000-token branches as sections; bytes sent / bytes of the final reply,
   view refreshes per second while tokens flow, replace_response events.
4. Scale: 50, 200, 500 concurrent three-way fan-outs (a fresh server per level); errors, added
   latency (reply time - the slowest of its own upstream streams, timed by the stand-in),
   peak RSS and memory per chat in flight, the server's event-loop lag.
5. With --profile: cProfile of the server during a separate 200-chat run, top 25 functions by
   cumulative and by own time in profile-200.txt beside the JSON (raw stats in .prof).

Nothing here asserts on timings; figures are printed next to their targets (met / NOT met).
The JSON also records the code's hash and git HEAD at start and end, and the load average.

The modules: `params` (what a run is made of), `servers` (what runs in the child processes),
`processes` (starting them, /proc), `loadgen` (playing Poe), `scenarios` (the measurements),
`harness` (the whole run), `figures` and `report` (targets, table, JSON); this one is the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import Bench
from bench.params import FULL, QUICK
from bench.processes import raise_fd_limit
from bench.report import conclude, report
from bench.servers import ROLES

DEFAULT_OUT = "bench-results/latest/results.json"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--child"]:  # how the benchmark starts its own processes
        raise_fd_limit()
        role, spec = args_list[1], json.loads(args_list[2])
        if spec.get("cpus"):  # pinned, so that processes of a measurement never share a core
            os.sched_setaffinity(0, spec["cpus"])
        ROLES[role](spec)
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (a few seconds)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"the JSON results (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the server during the 200-chat run"
    )
    args = parser.parse_args(args_list)
    p = QUICK if args.quick else FULL
    out = Path(args.out)
    if not out.is_absolute():
        out = Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    bench = Bench(p, out, args.profile)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(p.run_seconds):
            return await bench.run()

    results = asyncio.run(bounded())
    return conclude(results, out, report(results))


if __name__ == "__main__":
    sys.exit(main())
