"""The command line: `python -m bots validate | models | secrets | schema | graph | serve | chat |
studio | test | eval | traces send`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

from bots.errors import ConfigError, UsageError
from bots.evals.throttle import POE_API_RATE
from bots.spec import loader
from bots.spec.explanations import did_you_mean
from bots.spec.format import POE_NAME_PATTERN, PipelineFile
from bots.tools.graph import mermaid


def _report(error: ConfigError, path: str) -> None:
    """Every mistake of a file at its FILE:LINE:COL, then how many."""
    print(error, file=sys.stderr)
    count = len(error.problems)
    print(f"{path}: {count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def _load_or_exit(path: str, status: int = 1) -> loader.Config:
    try:
        return loader.load(path)
    except ConfigError as e:
        _report(e, path)
        raise SystemExit(status) from None


def budget_table(config: loader.Config) -> str:
    """One line per bot: worst-case calls per dependency and the total against the budget."""
    width = max(len(bot_id) for bot_id in config.bots)
    lines = []
    for bot_id, plan in config.bots.items():
        calls = plan.cost.describe() or "no calls"
        lines.append(f"{bot_id:<{width}}  {calls}  total {plan.cost.total}/{config.call_budget}")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from bots.spec import catalog

    models, doubts = catalog.checked(args.config)  # an unusable catalog: said, and left aside
    errors = doubts if args.strict else []
    try:
        config = loader.load(args.config)
    except ConfigError as e:
        errors = e.problems + errors
    if errors:
        _report(ConfigError(errors), args.config)
    if doubts and not args.strict:
        for doubt in ConfigError(doubts).problems:
            where = f"{doubt.file}:{doubt.line}:{doubt.column}"
            path = f"{doubt.path}: " if doubt.path else ""
            print(f"{where}: warning: {path}{doubt.message}", file=sys.stderr)
        count = f"{len(doubts)} warning{'s' if len(doubts) != 1 else ''}"
        print(
            f"{args.config}: {count} (--strict, and modal deploy, make them errors)",
            file=sys.stderr,
        )
    if errors:
        return 1
    print(budget_table(config))
    if models:
        print("\n".join(catalog.price_lines(config, models)))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from bots.tools import models

    found, said = models.refreshed(args.config, args.offline)
    print(said, file=sys.stderr)
    matching = found.search(args.words)
    if not matching:
        print(f"no model of {found.described()} matches {' '.join(args.words)!r}")
        return 1
    print("\n".join(models.listing(matching)))
    if found.file.snapshot:
        print(f"({found.file.note})", file=sys.stderr)
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    """The `modal secret create` line for this file's bots, one variable per bot."""
    from bots.serve.keys import SECRET

    config = _load_or_exit(args.config)
    variables = dict.fromkeys(plan.access_key_env for plan in config.bots.values())
    pairs = " ".join(f"{name}=..." for name in variables)
    print(f"modal secret create {SECRET} {pairs}")
    print(
        f"# one Poe access key per bot ({', '.join(config.bots)}), from each bot's page on "
        "poe.com; add --force to replace the secret, and keep any OTEL_* variables in it"
    )
    return 0


def cmd_traces_send(args: argparse.Namespace) -> int:
    from bots.tools import traces

    headers = dict(pair.split("=", 1) for pair in args.header if "=" in pair)
    if len(headers) != len(args.header):
        raise UsageError("--header takes NAME=VALUE, e.g. --header x-mlflow-experiment-id=1")
    status, count = traces.send(args.file, args.endpoint, headers)
    if not 200 <= status < 300:
        print(f"error: the collector answered HTTP {status}; no spans were taken", file=sys.stderr)
        return 1
    print(f"sent {count} spans to {args.endpoint} (OTLP/HTTP, protobuf): HTTP {status}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    schema = PipelineFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "pipelines.yaml"
    print(json.dumps(schema, indent=2))
    return 0


def _bot(config: loader.Config, name: str, path: str) -> loader.BotPlan:
    """The bot `name` of the file; a UsageError naming the closest bot, and all of them."""
    plan = config.bots.get(name)
    if plan is None:
        hint = did_you_mean(name, list(config.bots))
        raise UsageError(f"no bot {name!r} in {path}; {hint}the bots are: {', '.join(config.bots)}")
    return plan


def cmd_graph(args: argparse.Namespace) -> int:
    plan = _bot(_load_or_exit(args.config), args.bot, args.config)
    print(mermaid(plan), end="")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    config = _load_or_exit(args.config)
    import uvicorn

    from bots.serve.server import build_app

    caller = None
    if args.dry_run or args.answers:
        from bots.tools import script
        from bots.tools.simulator import SimulatedCaller

        if not args.dry_run:
            raise UsageError("--answers scripts simulated bots: add --dry-run")
        answers = script.read(args.answers) if args.answers else script.Script()
        for key in answers.answers:
            if all(script.key_problem(key, plan) for plan in config.bots.values()):
                raise UsageError(f"answer {key}: no bot of {args.config} has that step or bot")
        caller = SimulatedCaller(args.delay, min(args.delay, 0.01), script=answers)
    print(budget_table(config))
    for bot_id in config.bots:
        print(f"serving /{bot_id} at http://{args.host}:{args.port}/{bot_id}")
    if caller is not None:
        print("dry run: every dependency bot is simulated (or answers as scripted); free")
    # log_config=None: uvicorn's own records go through the same JSON lines as the app's
    app = build_app(config, caller=caller)
    uvicorn.run(app, host=args.host, port=args.port, log_config=None)
    return 0


def cmd_studio(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bots.studio.server import Studio, serve

    config = Path(args.config)
    if not config.is_file():
        raise UsageError(f"no {args.config} here: write one, or name it with --config FILE")
    if args.answers:
        from bots.tools import script

        script.read(args.answers)  # every mistake of the answers file, before serving

    def studio_for(port: int) -> Studio:
        return Studio(config, port, answers=args.answers, cases_path=args.cases, delay=args.delay)

    return serve(studio_for, args.port, open_browser=not args.no_browser)


def cmd_chat(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from bots.tools import chat

    plan = _bot(_load_or_exit(args.config), args.bot, args.config)
    if args.controls:
        print(chat.controls_table(plan))
        return 0
    options = chat.Options(
        dry_run=args.dry_run,
        files=[Path(f) for f in args.file],
        params=chat.checked_params(plan, chat.parse_params(args.param), args.config),
        trace=not args.no_trace,
        simulated_delay=args.delay,
        script=chat.checked_script(plan, args.answers, args.answer, args.dry_run),
        trace_file=chat.checked_trace_file(args.trace_file),
    )
    try:
        return asyncio.run(chat.run_chat(plan, options, args.message or None, sys.stdout))
    except KeyboardInterrupt:
        return 130


def cmd_test(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from bots.tools import cases

    config = _load_or_exit(args.config, status=2)
    if args.cases == cases.DEFAULT_PATH and not Path(args.cases).exists():
        print(
            f"no {cases.DEFAULT_PATH} here: write your cases in it (see docs/testing.md), or name "
            "a file with --cases PATH",
            file=sys.stderr,
        )
        return 2
    try:
        suite = cases.read(args.cases, config)
    except ConfigError as e:
        _report(e, args.cases)
        return 2
    return asyncio.run(cases.run_all(suite, config, args.k, sys.stdout))


def cmd_eval(args: argparse.Namespace) -> int:
    from bots.evals import comparison as evals
    from bots.evals import dataset
    from bots.evals.judge import Judge
    from bots.evals.throttle import parse_rate
    from bots.tools import script

    config = _load_or_exit(args.config)
    unknown = [b for b in args.bots if b not in config.bots]
    if unknown:
        raise UsageError(
            f"no bot {', '.join(map(repr, unknown))} in {args.config}; its bots: "
            + ", ".join(config.bots)
        )
    if not re.fullmatch(POE_NAME_PATTERN, args.baseline):
        raise UsageError(f"--baseline {args.baseline!r} is not a Poe bot name")
    if not re.fullmatch(POE_NAME_PATTERN, args.judge):
        raise UsageError(f"--judge {args.judge!r} is not a Poe bot name")
    rate = parse_rate(args.rate)
    judge = Judge.of(args.judge, args.judge_prompt, args.rubric_prompt)
    if args.answers and not args.dry_run:
        raise UsageError("--answers scripts simulated bots: add --dry-run")
    items = dataset.read(args.dataset)
    answers = script.read(args.answers) if args.answers else script.Script()
    api_key = os.environ.get("POE_API_KEY", "")
    if not args.dry_run and not api_key:
        from bots.tools.chat import KEY_HELP

        print(KEY_HELP, file=sys.stderr)
        return 2
    candidates = [evals.Candidate(b, config.bots[b]) for b in args.bots]
    baseline = evals.Candidate(args.baseline, evals.baseline_plan(args.baseline), baseline=True)
    plans = [c.plan for c in [*candidates, baseline]] + [evals.judge_plan(args.judge)]
    for key in answers.answers:
        if all(script.key_problem(key, plan) for plan in plans):
            raise UsageError(f"answer {key}: no candidate, baseline or judge has it")
    try:
        return evals.command(
            candidates,
            baseline,
            items,
            judge,
            answers,
            api_key,
            dry_run=args.dry_run,
            concurrency=max(1, args.concurrency),
            rate=rate,
            out=args.out,
            retry_failed=args.retry_failed,
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: what was done is saved in {args.out}; run the same command to "
            "resume (nothing done is paid for again)",
            file=sys.stderr,
        )
        return 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m bots", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--config",
            default=loader.DEFAULT_PATH,
            metavar="PATH",
            help="the pipelines file (default %(default)s)",
        )
        return p

    validate = command("validate", "check pipelines.yaml and print each bot's worst-case calls")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="a bot missing from Poe's model catalog (or files it cannot take) is an error",
    )
    validate.set_defaults(run=cmd_validate)
    models = command("models", "fetch Poe's model catalog, keep it beside the file, list it")
    models.add_argument("words", nargs="*", metavar="WORD", help="list the models matching all")
    models.add_argument(
        "--offline", action="store_true", help="list the catalog at hand, without fetching"
    )
    models.set_defaults(run=cmd_models)
    command("secrets", "print the modal secret create line for the file's bots' keys").set_defaults(
        run=cmd_secrets
    )
    traces = sub.add_parser("traces", help="trace files: send one to a collector")
    traces_sub = traces.add_subparsers(dest="traces_command", required=True)
    send = traces_sub.add_parser(
        "send",
        help="send a chat --trace-file to an OTLP/HTTP collector (protobuf, as every tool takes)",
    )
    send.add_argument("file", metavar="FILE", help="the trace file chat --trace-file wrote")
    send.add_argument(
        "--endpoint",
        required=True,
        metavar="URL",
        help="the collector's base URL, e.g. http://localhost:6006 (/v1/traces is added)",
    )
    send.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header to send, e.g. x-mlflow-experiment-id=1 (repeat for more)",
    )
    send.set_defaults(run=cmd_traces_send)
    schema = sub.add_parser("schema", help="print the JSON Schema of pipelines.yaml")
    schema.set_defaults(run=cmd_schema)
    graph = command("graph", "print a bot's pipeline as a Mermaid flowchart")
    graph.add_argument("bot", help="bot id")
    graph.set_defaults(run=cmd_graph)
    serve = command("serve", "serve every bot over HTTP (the Poe server-bot protocol)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    serve.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    serve.add_argument(
        "--dry-run",
        action="store_true",
        help="simulate every dependency bot: the whole HTTP path without Poe (free)",
    )
    serve.add_argument(
        "--answers", metavar="FILE", help="with --dry-run: scripted answers (as for chat)"
    )
    serve.add_argument(
        "--delay",
        type=float,
        default=0.4,
        help="with --dry-run: seconds before a simulated bot answers (default %(default)s)",
    )
    serve.set_defaults(run=cmd_serve)
    chat = command("chat", "chat with a bot in the terminal (real Poe bots, or --dry-run)")
    chat.add_argument("bot", help="bot id")
    chat.add_argument("--dry-run", action="store_true", help="simulate every dependency bot (free)")
    chat.add_argument("--file", action="append", default=[], metavar="PATH", help="attach a file")
    chat.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set one of the bot's controls, e.g. aspect=1:1 (see --controls)",
    )
    chat.add_argument(
        "--controls", action="store_true", help="print the bot's controls (its parameters)"
    )
    chat.add_argument(
        "-m",
        "--message",
        action="append",
        default=[],
        help="send this message instead of reading lines (repeat for more turns)",
    )
    chat.add_argument(
        "--answers",
        metavar="FILE",
        help="with --dry-run: scripted answers of steps and bots (a YAML file with answers:)",
    )
    chat.add_argument(
        "--answer",
        action="append",
        default=[],
        metavar="KEY=TEXT",
        help="with --dry-run: what a step (by id or place) or a bot answers, e.g. topic=code "
        "(repeat a key for successive calls; replaces that key's answers from --answers)",
    )
    chat.add_argument(
        "--no-trace", action="store_true", help="do not print the trace after replies"
    )
    chat.add_argument(
        "--trace-file",
        metavar="FILE",
        help="write each message's spans to FILE as OTLP/JSON, as a deployed bot exports them",
    )
    chat.add_argument(
        "--delay",
        type=float,
        default=0.4,
        help="with --dry-run: seconds before a simulated bot answers (default %(default)s)",
    )
    chat.set_defaults(run=cmd_chat)
    test = command("test", "run the pipeline tests of pipelines.tests.yaml, with scripted bots")
    test.add_argument(
        "--cases",
        default="pipelines.tests.yaml",
        metavar="PATH",
        help="the test cases file (default %(default)s)",
    )
    test.add_argument("-k", metavar="TEXT", help="only the cases whose bot or name contains TEXT")
    test.set_defaults(run=cmd_test)
    studio = command("studio", "a local web page: chat with the bots as Poe shows them, see inside")
    studio.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1 (default %(default)s; 0: any)"
    )
    studio.add_argument("--answers", metavar="FILE", help="scripted answers for the scripted mode")
    studio.add_argument(
        "--cases",
        metavar="PATH",
        help="the pipeline tests file (default: pipelines.tests.yaml beside --config)",
    )
    studio.add_argument(
        "--delay",
        type=float,
        default=0.4,
        help="seconds before a simulated bot answers (default %(default)s)",
    )
    studio.add_argument("--no-browser", action="store_true", help="do not open a browser")
    studio.set_defaults(run=cmd_studio)
    ev = command("eval", "compare bots with a baseline on a dataset: quality (a judge) and cost")
    ev.add_argument("bots", nargs="+", help="bot ids of the pipelines file")
    ev.add_argument("--baseline", required=True, help="a plain Poe bot to compare with, e.g. GPT-5")
    ev.add_argument(
        "--dataset",
        required=True,
        metavar="PATH",
        help="YAML or JSONL: messages, with reference or rubric",
    )
    ev.add_argument("--judge", default="GPT-5", help="the Poe bot that judges (default GPT-5)")
    ev.add_argument("--judge-prompt", metavar="FILE", help="the judge's pairwise prompt template")
    ev.add_argument("--rubric-prompt", metavar="FILE", help="the judge's rubric prompt template")
    ev.add_argument("--dry-run", action="store_true", help="simulated bots (free)")
    ev.add_argument("--answers", metavar="FILE", help="with --dry-run: scripted answers")
    ev.add_argument("--concurrency", type=int, default=4, help="answers at once (default 4)")
    ev.add_argument(
        "--rate",
        default="{}/{:g}".format(*POE_API_RATE),
        metavar="REQUESTS/SECONDS",
        help="the most requests in any window of SECONDS (default Poe's 500/60)",
    )
    ev.add_argument("--retry-failed", action="store_true", help="ask again for answers that failed")
    ev.add_argument(
        "--out",
        default="eval-results/eval.json",
        metavar="PATH",
        help="results (and resume) file, JSON; the HTML report goes beside it (default "
        "%(default)s)",
    )
    ev.set_defaults(run=cmd_eval)
    return top


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except UsageError as e:  # an argument, or a file named by one, cannot be used
        print(f"error: {e}", file=sys.stderr)
        status = 2
    except ConfigError as e:  # a file named by an argument (answers, dataset...) is invalid
        print(e, file=sys.stderr)
        status = 2
    except BrokenPipeError:
        # the reader went away (`... | head`): stop quietly, as command-line tools do, and keep
        # Python from failing again when it flushes stdout on the way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 1
    raise SystemExit(status)
