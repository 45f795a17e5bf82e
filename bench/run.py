"""londiste-rs against stock londiste3 and PostgreSQL logical replication, side by side.

    make bench          # full run (~10 min on 2 cores); results in bench/results/
    make bench-quick    # every scenario at small size; results in a temporary directory

Prepares what it needs (installs stock londiste3 from Debian when missing, as root), starts
fresh provider and subscriber clusters with identical settings, runs the scenarios, measuring
the tools alternately, verifies every run, and writes results.md, results.json, chart.png and
machine.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import Tool, all_tools
from scenarios import (
    FULL,
    QUICK,
    Context,
    backlog,
    backlog_distinct,
    capture,
    compare,
    initial_copy,
    lag,
    many_tables,
    takeover,
)
from support import chart, deps, machine, report
from support.env import BenchEnv
from support.results import Results

SCENARIOS = {"copy": initial_copy, "backlog": backlog, "backlog-distinct": backlog_distinct,
             "capture": capture, "lag": lag, "many": many_tables, "compare": compare,
             "takeover": takeover}  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results"
NAMES = [("ours", "londiste-rs"), ("londiste3", "londiste3"), ("logical", "native LR"),
         ("raw", "raw COPY pipe"), ("none", "no capture"), ("pgcopydb", "pgcopydb")]  # fmt: skip


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM (a test's timeout, `kill`) unwinds like Ctrl-C, so the clusters are removed.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every scenario at small size")
    parser.add_argument("--out", type=Path, help="results directory (default: bench/results "
                        "for a full run, a new temporary directory for --quick)")  # fmt: skip
    parser.add_argument("--runs", type=int, help="runs per tool and scenario (default 3; 1 quick)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS),
                        help="run only this scenario (repeatable)")  # fmt: skip
    parser.add_argument("--tool", action="append", choices=[t.key for t in all_tools()],
                        help="only this tool (repeatable; the references always run)")  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep the tools' logs")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    out = args.out or (Path(tempfile.mkdtemp(prefix="londiste-rs-bench-")) if args.quick
                       else RESULTS)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, flush=True)

    try:
        deps.ensure(say)
    except deps.MissingDependency as e:
        print(f"bench: {e}", file=sys.stderr)
        return 3

    workdir = Path(tempfile.mkdtemp(prefix="londiste-rs-bench-work-"))
    results = Results(meta={"mode": "quick" if args.quick else "full", "runs": sizes.runs,
                            "sizes": dataclasses.asdict(sizes)})  # fmt: skip
    tools = [t for t in all_tools() if not args.tool or t.key in args.tool]
    started = time.monotonic()
    say(f"bench ({results.meta['mode']}): results in {out}, tools' logs in {workdir}")
    with BenchEnv(workdir) as env:
        ctx = Context(env, tools, sizes, results, say)
        for key, module in SCENARIOS.items():
            if args.only and key not in args.only:
                continue
            say(f"scenario {key}:")
            module.run(ctx)
            results.save(out / "results.json")
    results.meta["finished"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results.meta["duration_s"] = time.monotonic() - started
    write_outputs(results, out, tools)
    say(f"wrote {out / 'results.md'}, {out / 'chart.png'}, {out / 'results.json'}")
    unverified = [s for s in results.samples if not s.verified]
    if unverified:
        say(f"{len(unverified)} run(s) did not verify: see results.md")
    if args.keep_logs or results.errors or unverified:
        say(f"tools' logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def write_outputs(results: Results, out: Path, tools: list[Tool]) -> None:
    """results.json, machine.md, chart.png and results.md into `out`."""
    results.save(out / "results.json")
    described = machine.describe()
    (out / "machine.md").write_text(f"# Machine\n\n{described}\n")
    chart.draw(results, out / "chart.png", NAMES)
    peers = [(t.key, t.name) for t in tools]
    (out / "results.md").write_text(report.render(results, peers, described, "chart.png"))


if __name__ == "__main__":
    sys.exit(main())
