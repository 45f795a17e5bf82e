"""takeover and resurrect: the switch of a queue's root (londiste3's verbs), with the pre-flight,
the write fence, a timeline and the measured write downtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from londiste_rs.cli.app import app
from londiste_rs.cli.common import ConfigArg, JsonOpt, cfg_of, echo_json

if TYPE_CHECKING:  # (the verbs import their modules when run)
    from londiste_rs.operations.resurrect import Resurrected
    from londiste_rs.operations.takeover import Report


def _timeline(report: Report) -> list[str]:
    if not report.timeline:
        return []
    start = report.at("fence") or report.timeline[0][1]
    words = {
        "started": "takeover started",
        "prepared": f"{report.new} armed: its capture attached, fenced",
        "fence": f"fence: writes on {report.old} refused from here",
        "final tick": f"final tick {report.last_tick} on {report.old}",
        "applied": f"applied: {report.new} has tick {report.last_tick}",
        "promoted": f"promoted: {report.new} is the root and accepts writes",
        "reverse link": f"reverse link: {report.old} follows {report.new}",
        "reverse applied": f"{report.old} applied a tick of {report.new}",
        "tagged dead": f"{report.old} tagged dead",
        "caught up": f"{report.new} caught up",
        "done": "done",
    }
    return [f"  {t - start:+8.3f}s  {words.get(e, e)}" for e, t in report.timeline]


def _as_json(report: Report) -> dict[str, object]:
    return {
        "queue": report.queue,
        "mode": report.mode,
        "old": report.old,
        "new": report.new,
        "dry_run": report.dry_run,
        "complete": report.complete,
        "resumed_from": report.resumed_from,
        "last_tick": report.last_tick,
        "checks": [{"check": c.what, "ok": c.ok, "detail": c.detail} for c in report.checks],
        "plan": report.plan,
        "timeline": [{"event": e, "at": t} for e, t in report.timeline],
        "write_downtime_seconds": report.downtime,
        "notes": report.notes,
    }


@app.command("takeover")
def takeover_cmd(
    config: Path = ConfigArg,
    old: str = typer.Argument(..., help="The node to take over (the root, as a rule)."),
    all_: bool = typer.Option(False, "--all", help="Also move OLD's other subscribers here."),
    dead_root: bool = typer.Option(
        False, "--dead-root", help="OLD is gone: fail over (tag it dead, promote this node)."
    ),
    dead_branch: bool = typer.Option(
        False,
        "--dead-branch",
        help="OLD is a branch that is gone: take its place, move its subscribers here.",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the checks and the plan only."),
    abort: bool = typer.Option(
        False, "--abort", help="Cancel a takeover stopped before this node was promoted."
    ),
    max_lag: float = typer.Option(
        None, "--max-lag", help="Lag bound of the pre-flight in seconds (ini: takeover_max_lag)."
    ),
    timeout: float = typer.Option(
        None, "--timeout", help="Seconds to wait for the final tick (ini: takeover_timeout)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Make this node the root of the queue in place of OLD, which then follows it: pre-flight,
    write fence on OLD, final tick, promote, reverse link; prints the timeline and the write
    downtime. Run it again to complete a takeover that stopped."""
    from londiste_rs.errors import UsageError
    from londiste_rs.operations.takeover import TakeoverRefused, takeover

    if dead_root and dead_branch:
        raise UsageError(
            "--dead-root and --dead-branch exclude each other; OLD is one or the other"
        )
    try:
        report = takeover(
            cfg_of(config), old, all_subscribers=all_, dead_root=dead_root,
            dead_branch=dead_branch, dry_run=dry_run, abort=abort, max_lag=max_lag,
            timeout=timeout,
        )  # fmt: skip
    except TakeoverRefused as e:
        for line in e.problems:
            typer.echo(f"ERROR: takeover refused: {line}", err=True)
        raise typer.Exit(e.exit_code) from None
    if as_json:
        echo_json(_as_json(report))
    else:
        _print(report)
    if report.dry_run and not all(c.ok for c in report.checks):
        raise typer.Exit(2)


def _print(report: Report) -> None:
    what = "failover" if report.mode == "failover" else "takeover"
    if report.dry_run:
        typer.echo(f"{what} of {report.old} by {report.new} (queue {report.queue}), dry run:")
        if report.checks:
            typer.echo("checks:")
            for c in report.checks:
                typer.echo(f"  {'ok  ' if c.ok else 'FAIL'}  {c.detail}")
        typer.echo("plan:")
        for n, step in enumerate(report.plan, 1):
            typer.echo(f"  {n}. {step}")
        return
    head = f"{what} of {report.old} by {report.new} (queue {report.queue})"
    if report.resumed_from:
        head += f", resumed after step {report.resumed_from}"
    typer.echo(head + (": done" if report.complete else ""))
    for c in report.checks:
        typer.echo(f"  check: {c.detail}")
    for line in _timeline(report):
        typer.echo(line)
    if report.downtime is not None:
        typer.echo(
            f"write downtime: {report.downtime:.3f}s (fence on {report.old} -> {report.new} "
            "accepts writes)"
        )
    for note in report.notes:
        typer.echo(f"note: {note}")


DumpOpt = typer.Option(
    None, "--dump", help="Where to write the events that never propagated (JSON)."
)


@app.command("resurrect")
def resurrect_cmd(
    config: Path = ConfigArg,
    dump: Path = DumpOpt,
    as_json: bool = JsonOpt,
) -> None:
    """On an old root that a failover (takeover --dead-root) left behind: make it a branch of
    the new root; names the events it has that never reached the new root (table data is not
    touched)."""
    from londiste_rs.operations.resurrect import resurrect

    done = resurrect(cfg_of(config), dump)
    if as_json:
        echo_json(_resurrected_json(done))
        return
    typer.echo(
        f"{done.node} follows {done.new_root} from tick {done.tick} (queue {done.queue}); its "
        "writes are refused from now on"
    )
    if not done.lost:
        typer.echo("every event of it had reached the new root: none lost")
    else:
        per = ", ".join(
            f"{t}: {sum(c.values())} ({' '.join(f'{k} {n}' for k, n in sorted(c.items()))})"
            for t, c in sorted(done.per_table().items())
        )
        ids = [e.ev_id for e in done.lost]
        shown = ", ".join(map(str, ids[:20])) + (
            f" and {len(ids) - 20} more" if len(ids) > 20 else ""
        )
        typer.echo(f"{len(ids)} events never reached {done.new_root}: {per}")
        typer.echo(f"event ids: {shown}; all of them in {done.dump}")
        typer.echo(
            f"their rows stay in {done.node}'s tables (not changed): 'compare' shows them, "
            f"'repair' sets them to {done.new_root}'s, or replay them on {done.new_root}"
        )
    for note in done.notes:
        typer.echo(f"note: {note}")


def _resurrected_json(done: Resurrected) -> dict[str, object]:
    return {
        "queue": done.queue,
        "node": done.node,
        "new_root": done.new_root,
        "tick": done.tick,
        "lost_events": len(done.lost),
        "lost_event_ids": [e.ev_id for e in done.lost],
        "per_table": {t: dict(c) for t, c in done.per_table().items()},
        "dump": None if done.dump is None else str(done.dump),
        "notes": done.notes,
    }
