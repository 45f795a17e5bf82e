"""Node verbs, as londiste3 has them: create-root/-branch/-leaf, worker, members, node-info,
status, pause, resume, wait-root, wait-provider, change-provider, drop-node; and
unregister-consumer."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from londiste_rs.cli.app import OPTIONS, app
from londiste_rs.cli.common import ConfigArg, JsonOpt, ProviderOpt, TimeoutOpt, cfg_of, echo_json
from londiste_rs.pg.db import redact

if TYPE_CHECKING:
    from londiste_rs.cascade.status import NodeStatus
    from londiste_rs.store.health import QueueTicks
    from londiste_rs.store.node import Consumer


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

    _created("root", name, make(cfg_of(config), name, connstr))


@app.command("create-branch")
def create_branch(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Node name."),
    connstr: str = typer.Argument(None, help="Public connect string of this node."),
    provider: str = ProviderOpt,
) -> None:
    """Make this database a branch: it applies the provider's events and re-queues them."""
    from londiste_rs.cascade.node import create_subscriber

    _created("branch", name, create_subscriber(cfg_of(config), "branch", name, connstr, provider))


@app.command("create-leaf")
def create_leaf(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Node name."),
    connstr: str = typer.Argument(None, help="Public connect string of this node."),
    provider: str = ProviderOpt,
) -> None:
    """Make this database a leaf: it applies the provider's events."""
    from londiste_rs.cascade.node import create_subscriber

    _created("leaf", name, create_subscriber(cfg_of(config), "leaf", name, connstr, provider))


@app.command()
def worker(config: Path = ConfigArg) -> None:
    """Run the node's worker (replay on branch/leaf, housekeeping on root); -d daemonizes."""
    from londiste_rs.cli import worker as verb

    verb.run(config, OPTIONS)


@app.command()
def members(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """List the members of the cascade this node knows."""
    from londiste_rs.cascade.node import list_members

    rows = list_members(cfg_of(config))
    if as_json:
        echo_json(
            [{"node_name": m.name, "dead": m.dead, "node_location": m.location} for m in rows]
        )
        return
    typer.echo(f"{'node_name':<20} {'dead':<5} node_location")
    for m in rows:
        typer.echo(f"{m.name:<20} {m.dead!s:<5} {redact(m.location)}")


@app.command("node-info")
def node_info(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """Show this node: name, type, queue, provider, position, flags."""
    from londiste_rs.cascade.node import local_node

    cfg = cfg_of(config)
    info = local_node(cfg, "node-info")
    if as_json:
        echo_json({"queue_name": cfg.queue_name, **asdict(info)})
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


WatchOpt = typer.Option(
    None,
    "--watch",
    metavar="[SECONDS]",
    help="Redraw the cascade every SECONDS (default 2) until Ctrl-C.",
)


@app.command()
def status(
    config: Path = ConfigArg, as_json: bool = JsonOpt, watch: float | None = WatchOpt
) -> None:
    """Every node of the cascade: lag in seconds and ticks, last error, paused, tables, copies,
    whether its worker is alive, its queue's ticks. Exits 1 when something needs attention."""
    from londiste_rs.cascade.status import cascade_status

    cfg = cfg_of(config)
    if watch is not None:
        from londiste_rs.cli.watch import watch_status
        from londiste_rs.errors import UsageError

        if as_json:
            raise UsageError("status: --watch redraws text; leave out --json (or --watch)")

        watch_status(cfg, max(watch, 0.1), _status_lines)
        return
    nodes = cascade_status(cfg)
    attention = sum(len(s.problems) for _, s in nodes)
    if as_json:
        echo_json([{"depth": d, **asdict(s), "needs_attention": bool(s.problems)}
                   for d, s in nodes])  # fmt: skip
        if attention:
            raise typer.Exit(1)
        return
    for line in _status_lines(nodes):
        typer.echo(line)
    if attention:
        raise typer.Exit(1)


def _status_lines(nodes: list[tuple[int, NodeStatus]]) -> list[str]:
    """`status`'s text: the cascade as a tree, then how many problems need attention."""
    from londiste_rs.progress import describe

    out = []
    for depth, s in nodes:
        pad = "  " * depth + ("+--" if depth else "")
        ind = "  " * depth + "    "
        if s.unreachable:
            out.append(f"{pad}{s.name} (unreachable: {redact(s.unreachable)})")
            continue
        flags = [f for f, on in (("PAUSED", s.paused), ("NOT-UPTODATE", not s.uptodate)) if on]
        lag = "-" if s.lag_seconds is None else f"{s.lag_seconds:.1f}s"
        out.append(f"{pad}{s.name} ({s.node_type}){' ' + ','.join(flags) if flags else ''}")
        out.append(f"{ind}Tables: {s.tables_ok}/{s.tables_half}/0")
        out.append(f"{ind}Lag: {lag}, Tick: {s.last_tick_id}, "
                   f"ticks behind: {'-' if s.lag_ticks is None else s.lag_ticks}")  # fmt: skip
        out.append(f"{ind}{_worker_line(s)}")
        if s.ticks is not None:
            out.append(f"{ind}{_ticks_line(s.ticks)}")
        out += [f"{ind}Copy {describe(p)}" for p in s.copies]
        if s.takeover:
            out.append(f"{ind}TAKEOVER: {redact(s.takeover)}")
        if s.fence:
            out.append(f"{ind}Writes refused here: {redact(s.fence)}")
        out += [f"{ind}{_consumer_line(s.name, c)}" for c in s.consumers]
        out += [f"{ind}ERR: {redact(problem)}" for problem in s.problems]
    attention = sum(len(s.problems) for _, s in nodes)
    if attention:
        many = attention > 1
        out.append(f"{attention} problem{'s need' if many else ' needs'} attention (exit code 1)")
    return out


def _worker_line(s: NodeStatus) -> str:
    from londiste_rs.cascade.health import ago

    applied = "never" if s.last_apply_seconds is None else f"{ago(s.last_apply_seconds)} ago"
    w = s.worker
    if s.worker_alive is None:
        state = "unknown (the schema here is older than worker heartbeats)"
    elif w is None:
        state = "NOT RUNNING (never started)"
    elif s.worker_alive:
        doing = w.activity or "running"
        if w.activity_seconds is not None and w.activity_seconds >= 60:
            doing += f" for {ago(w.activity_seconds)}"
        state = f"alive (pid {w.pid} on {w.host}, {doing})"
    elif w.stopped_at is not None:
        state = f"STOPPED {ago(w.beat_age)} ago"
    else:
        state = f"NOT ALIVE (last heartbeat {ago(w.beat_age)} ago)"
    return f"Worker: {state}, last applied {applied}"


def _ticks_line(t: QueueTicks) -> str:
    from londiste_rs.cascade.health import ago

    age = "never" if t.tick_age is None else f"{ago(t.tick_age)} ago"
    by = "by its worker" if t.external_ticker else "paused" if t.ticker_paused else "by the ticker"
    return f"Queue: last tick {t.last_tick_id} {age} ({by}), {t.events_waiting:,} events waiting"


def _consumer_line(node: str, c: Consumer) -> str:
    lag = "-" if c.lag_seconds is None else f"{c.lag_seconds:.1f}s"
    pending = "-" if c.pending_events is None else str(c.pending_events)
    line = f"Consumer {c.name}: lag {lag}, pending events {pending}"
    if c.subscriber_node is None and c.name.endswith(".gravestone"):
        dead = c.name.removesuffix(".gravestone")
        return (
            f"{line}; GRAVESTONE of node {dead}, failed over: kept at the last tick it sent "
            f"for its 'resurrect' (it holds back rotation; 'unregister-consumer {c.name}' "
            "if it never comes back)"
        )
    if c.subscriber_node is None:
        return (
            f"{line}; ORPHAN: no subscriber node reads it, and it holds back the queue's "
            f"rotation; drop it with 'unregister-consumer {c.name}' (with {node}'s config)"
        )
    if c.node_dead:
        return f"{line} (subscriber {c.subscriber_node}, DEAD)"
    return f"{line} (subscriber {c.subscriber_node})"


def _pause(config: Path, paused: bool) -> None:
    from londiste_rs.cascade.node import set_paused, worker_acknowledged

    cfg = cfg_of(config)
    info = set_paused(cfg, paused)
    word = "paused" if paused else "resumed"
    if worker_acknowledged(cfg):
        typer.echo(f"node {info.node_name} {word}")
    else:
        typer.echo(f"node {info.node_name} {word} (no running worker acknowledged it yet)")


@app.command()
def pause(config: Path = ConfigArg) -> None:
    """Pause the node's worker (it stops applying after the current batch)."""
    _pause(config, True)


@app.command()
def resume(config: Path = ConfigArg) -> None:
    """Resume a paused worker."""
    _pause(config, False)


@app.command("wait-root")
def wait_root(config: Path = ConfigArg, timeout: float = TimeoutOpt) -> None:
    """Wait until this node has applied the root's current last tick."""
    from londiste_rs.cascade.node import root_location, wait_for_tick

    cfg = cfg_of(config)
    tick = wait_for_tick(cfg, root_location(cfg), timeout)
    typer.echo(f"caught up with the root (tick {tick})")


@app.command("wait-provider")
def wait_provider(config: Path = ConfigArg, timeout: float = TimeoutOpt) -> None:
    """Wait until this node has applied its provider's current last tick."""
    from londiste_rs.cascade.node import local_node, wait_for_tick
    from londiste_rs.tables.common import provider_location

    cfg = cfg_of(config)
    info = local_node(cfg, "wait-provider", ("branch", "leaf"))
    tick = wait_for_tick(cfg, provider_location(cfg, info), timeout)
    typer.echo(f"caught up with provider {info.provider_node} (tick {tick})")


@app.command("change-provider")
def change_provider(
    config: Path = ConfigArg,
    provider: str = typer.Option(..., "--provider", help="Name (or connect string) of the node."),
) -> None:
    """Follow another provider from the current tick on (nothing lost, nothing repeated)."""
    from londiste_rs.cascade.node import change_provider as move

    typer.echo(f"now following {move(cfg_of(config), provider)}")


@app.command("unregister-consumer")
def unregister_consumer(
    config: Path = ConfigArg,
    name: str = typer.Argument(..., help="Consumer name (as 'status' lists it)."),
    force: bool = typer.Option(
        False, "--force", help="Also when a live subscriber node reads it (its worker stops)."
    ),
) -> None:
    """Remove a consumer from this node's queue, such as an orphan that holds back rotation;
    refused for a live subscriber node's consumer unless --force."""
    from londiste_rs.cascade.node import unregister_consumer as unregister

    typer.echo(unregister(cfg_of(config), name, force))


@app.command("drop-node")
def drop_node(config: Path = ConfigArg, name: str = typer.Argument(..., help="Node name.")) -> None:
    """Remove a node (this one, or another member, also a dead one): refused while it has
    subscribers; drops it in its database and from every member's list."""
    from londiste_rs.cascade.node import drop_node as drop

    unreached = drop(cfg_of(config), name)
    typer.echo(f"node {name} dropped")
    for member, why in sorted(unreached.items()):
        typer.echo(
            f"not removed from member {member} ({redact(why)}); when it is back, run "
            f"drop-node {name} with {member}'s config"
        )
