"""Node verbs, as londiste3 has them: create-root/-branch/-leaf, worker, members, node-info,
status, pause, resume, wait-root, wait-provider, change-provider, drop-node."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path

import typer

from londiste_rs import daemon
from londiste_rs.cli.app import OPTIONS, app
from londiste_rs.config import JobConfig, load_job_config
from londiste_rs.pg.db import connect, redact

ConfigArg = typer.Argument(..., metavar="CONFIG.ini", help="The node's job file ([londiste3]).")
ProviderOpt = typer.Option(None, "--provider", help="Connect string of the node to follow.")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")


def _cfg(config: Path) -> JobConfig:
    return load_job_config(config)


def _json(data: object) -> None:
    """Prints `data` as one JSON document: times as ISO text, every password redacted."""

    def clean(v: object) -> object:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        if isinstance(v, str):
            return redact(v)
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        return v

    typer.echo(json.dumps(clean(data)))


def _created(kind: str, name: str, created: bool) -> None:
    typer.echo(f"{kind} node {name} {'created' if created else 'already exists'}")
    typer.echo("Done")


@app.command("create-root")
def create_root(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Node name."),
    connstr: str = typer.Argument(None, help="Public connect string of this node."),
) -> None:
    """Make this database the root of the queue (installs the schema, creates the queue)."""
    from londiste_rs.cascade.node import create_root as make

    _created("root", name, make(_cfg(config), name, connstr))


@app.command("create-branch")
def create_branch(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Node name."),
    connstr: str = typer.Argument(None, help="Public connect string of this node."),
    provider: str = ProviderOpt,
) -> None:
    """Make this database a branch: it applies the provider's events and re-queues them."""
    from londiste_rs.cascade.node import create_subscriber

    _created("branch", name, create_subscriber(_cfg(config), "branch", name, connstr, provider))


@app.command("create-leaf")
def create_leaf(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Node name."),
    connstr: str = typer.Argument(None, help="Public connect string of this node."),
    provider: str = ProviderOpt,
) -> None:
    """Make this database a leaf: it applies the provider's events."""
    from londiste_rs.cascade.node import create_subscriber

    _created("leaf", name, create_subscriber(_cfg(config), "leaf", name, connstr, provider))


@app.command()
def worker(config: Path = ConfigArg) -> None:
    """Run the node's worker (replay on branch/leaf, housekeeping on root); -d daemonizes."""
    from londiste_rs.replication.worker import run_worker

    cfg = _cfg(config)
    daemon.dispatch(
        cfg.job_name,
        lambda: run_worker(cfg),
        config=cfg.path,
        pidfile=cfg.pidfile,
        logfile=cfg.logfile,
        flags=OPTIONS,
    )


@app.command()
def members(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """List the members of the cascade this node knows."""
    from londiste_rs.cascade.node import members as list_members
    from londiste_rs.cascade.node import require_node

    cfg = _cfg(config)
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        require_node(conn, cfg, verb="members")
        rows = list_members(conn, cfg.queue_name)
    if as_json:
        _json([{"node_name": n, "dead": d, "node_location": loc} for n, loc, d in rows])
        return
    typer.echo(f"{'node_name':<20} {'dead':<5} node_location")
    for name, location, dead in rows:
        typer.echo(f"{name:<20} {dead!s:<5} {redact(location)}")


@app.command("node-info")
def node_info(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """Show this node: name, type, queue, provider, position, flags."""
    from londiste_rs.cascade.node import require_node

    cfg = _cfg(config)
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, verb="node-info")
    if as_json:
        _json({"queue_name": cfg.queue_name, **asdict(info)})
        return
    data = {k: redact(v) if isinstance(v, str) else v for k, v in asdict(info).items()}
    flags = [f for f, on in (("PAUSED", info.paused), ("NOT-UPTODATE", not info.uptodate)) if on]
    typer.echo(f"Node: {info.node_name}  Type: {info.node_type}  Queue: {cfg.queue_name}")
    typer.echo(f"Status: {', '.join(flags) or 'ok'}")
    typer.echo(f"Location: {data['node_location']}")
    if info.provider_node:
        typer.echo(f"Provider: {info.provider_node} ({data['provider_location']})")
    typer.echo(f"Last tick: {info.last_tick_id} at {info.last_tick_time}")
    if info.cur_error:
        typer.echo(f"ERR: {redact(info.cur_error)}")


@app.command()
def status(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """Every node of the cascade: lag in seconds and ticks, last error, paused, tables."""
    from londiste_rs.cascade.node import cascade_status

    nodes = cascade_status(_cfg(config))
    if as_json:
        _json([{"depth": d, **asdict(s)} for d, s in nodes])
        return
    for depth, s in nodes:
        pad = "  " * depth + ("+--" if depth else "")
        if s.unreachable:
            typer.echo(f"{pad}{s.name} (unreachable: {redact(s.unreachable)})")
            continue
        flags = [f for f, on in (("PAUSED", s.paused), ("NOT-UPTODATE", not s.uptodate)) if on]
        lag = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}s"
        typer.echo(f"{pad}{s.name} ({s.node_type}){' ' + ','.join(flags) if flags else ''}")
        typer.echo(f"{'  ' * depth}    Tables: {s.tables_ok}/{s.tables_half}/0")
        typer.echo(f"{'  ' * depth}    Lag: {lag}, Tick: {s.last_tick_id}, "
                   f"ticks behind: {'-' if s.lag_ticks is None else s.lag_ticks}")  # fmt: skip
        if s.error:
            typer.echo(f"{'  ' * depth}    ERR: {redact(s.error)}")
        if s.tables_failed:
            typer.echo(f"{'  ' * depth}    ERR: {s.tables_failed} table copies failed "
                       "(see 'tables'; fix, then resync)")  # fmt: skip


def _pause(config: Path, paused: bool) -> None:
    from londiste_rs.cascade.node import get_node_info, set_paused, worker_running
    from londiste_rs.waiting import wait_for

    cfg = _cfg(config)
    info = set_paused(cfg, paused)
    word = "paused" if paused else "resumed"
    with connect(cfg.db, autocommit=True, what="node database") as conn:

        def acked() -> bool:
            cur = get_node_info(conn, cfg.queue_name)
            return cur is None or cur.uptodate

        try:
            wait_for("the worker to acknowledge", acked, timeout=10 if worker_running(cfg) else 0)
            typer.echo(f"node {info.node_name} {word}")
        except TimeoutError:
            typer.echo(f"node {info.node_name} {word} (no running worker acknowledged it yet)")


@app.command()
def pause(config: Path = ConfigArg) -> None:
    """Pause the node's worker (it stops applying after the current batch)."""
    _pause(config, True)


@app.command()
def resume(config: Path = ConfigArg) -> None:
    """Resume a paused worker."""
    _pause(config, False)


TimeoutOpt = typer.Option(None, "--timeout", help="Give up after this many seconds.")


@app.command("wait-root")
def wait_root(config: Path = ConfigArg, timeout: float = TimeoutOpt) -> None:
    """Wait until this node has applied the root's current last tick."""
    from londiste_rs.cascade.node import root_location, wait_for_tick

    cfg = _cfg(config)
    tick = wait_for_tick(cfg, root_location(cfg), timeout)
    typer.echo(f"caught up with the root (tick {tick})")


@app.command("wait-provider")
def wait_provider(config: Path = ConfigArg, timeout: float = TimeoutOpt) -> None:
    """Wait until this node has applied its provider's current last tick."""
    from londiste_rs.cascade.node import require_node, wait_for_tick

    cfg = _cfg(config)
    with connect(cfg.db, autocommit=True, what="node database") as conn:
        info = require_node(conn, cfg, ("branch", "leaf"), "wait-provider")
    assert info.provider_location is not None
    tick = wait_for_tick(cfg, info.provider_location, timeout)
    typer.echo(f"caught up with provider {info.provider_node} (tick {tick})")


@app.command("change-provider")
def change_provider(
    config: Path = ConfigArg,
    provider: str = typer.Option(..., "--provider", help="Name (or connect string) of the node."),
) -> None:
    """Follow another provider from the current tick on (nothing lost, nothing repeated)."""
    from londiste_rs.cascade.node import change_provider as move

    typer.echo(f"now following {move(_cfg(config), provider)}")


@app.command("drop-node")
def drop_node(config: Path = ConfigArg, name: str = typer.Argument(..., help="Node name.")) -> None:
    """Remove a node (this one, or another member, also a dead one): refused while it has
    subscribers; drops it in its database and from every member's list."""
    from londiste_rs.cascade.node import drop_node as drop

    unreached = drop(_cfg(config), name)
    typer.echo(f"node {name} dropped")
    for member, why in sorted(unreached.items()):
        typer.echo(
            f"not removed from member {member} ({redact(why)}); when it is back, run "
            f"drop-node {name} with {member}'s config"
        )
