"""Table and sequence verbs, as londiste3 has them: add-table, remove-table, tables, missing,
resync, wait-sync, add-seq, remove-seq, seqs, and sync-seqs (--exact for a cut-over)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from londiste_rs.cli.app import app
from londiste_rs.cli.common import ConfigArg, JsonOpt, TimeoutOpt, cfg_of, echo_json
from londiste_rs.store.tables import MergeState

TablesArg = typer.Argument(None, help="Tables: [schema.]name, quoted as in SQL, globs allowed.")
SeqsArg = typer.Argument(None, help="Sequences: [schema.]name, quoted as in SQL, globs allowed.")
AllOpt = typer.Option(False, "--all", help="Every one (the provider's, on a branch or leaf).")
CopyNodeOpt = typer.Option(
    None,
    "--copy-node",
    metavar="NODE",
    help="Read the initial copy from this node of the cascade (a branch or leaf that has the "
    "table ok) instead of the provider; stored per table.",
)
FindCopyNodeOpt = typer.Option(
    False,
    "--find-copy-node",
    help="Read the initial copy from the nearest node up the provider chain that has the "
    "table (the provider need not replicate it); stored per table as its copy node.",
)


def _say(verb: str, names: list[str]) -> None:
    for name in names:
        typer.echo(f"{verb}: {name}")
    if not names:
        typer.echo("nothing to do")


def _wait(config: Path, timeout: float | None) -> None:
    from londiste_rs.tables.verbs import wait_sync

    def report(ok: int, total: int) -> None:
        typer.echo(f"{ok}/{total} tables in sync")

    n = wait_sync(cfg_of(config), timeout, report)
    typer.echo(f"all {n} tables in sync")


@app.command("add-table")
def add_table(
    config: Path = ConfigArg,
    tables: list[str] = TablesArg,
    all_: bool = AllOpt,
    expect_sync: bool = typer.Option(
        False, "--expect-sync", help="No initial copy: the table already has the provider's rows."
    ),
    create: bool = typer.Option(
        False, "--create", help="Create a missing table from the provider's (columns and key)."
    ),
    create_full: bool = typer.Option(
        False,
        "--create-full",
        help="Create a missing table with everything: defaults, identity, constraints, indexes, "
        "foreign keys (to tables this node has) and the sequences of serial and identity "
        "columns (moved to the provider's values).",
    ),
    dest_table: str = typer.Option(
        None, "--dest-table", help="Apply into this local table (one table only)."
    ),
    skip_truncate: bool = typer.Option(
        False, "--skip-truncate", help="The copy keeps the rows the local table has."
    ),
    copy_node: str = CopyNodeOpt,
    find_copy_node: bool = FindCopyNodeOpt,
    wait: bool = typer.Option(False, "--wait-sync", help="Then wait until all tables are ok."),
    timeout: float = TimeoutOpt,
) -> None:
    """Replicate tables: capture them on the root; on a branch or leaf, apply them after the
    worker's initial copy."""
    from londiste_rs.tables.verbs import add_tables

    added = add_tables(
        cfg_of(config),
        list(tables or []),
        all_,
        expect_sync,
        create=create,
        create_full=create_full,
        dest_table=dest_table,
        skip_truncate=skip_truncate,
        copy_node=copy_node,
        find_copy_node=find_copy_node,
    )
    _say("Table added", added)
    if wait:
        _wait(config, timeout)


@app.command("remove-table")
def remove_table(
    config: Path = ConfigArg, tables: list[str] = TablesArg, all_: bool = AllOpt
) -> None:
    """Stop replicating tables here (the tables and their rows stay)."""
    from londiste_rs.tables.verbs import remove_tables

    _say("Table removed", remove_tables(cfg_of(config), list(tables or []), all_))


@app.command("tables")
def tables_cmd(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """The node's tables: state, and the initial copy's rows, bytes, rate and ETA."""
    from londiste_rs.progress import describe
    from londiste_rs.tables.verbs import copy_progress, table_list

    states = table_list(cfg_of(config))
    if as_json:
        out = []
        for s in states:
            p = copy_progress(s)
            extra = {} if p is None else {"copy_rate": p.rate, "copy_eta": p.eta}
            out.append({**asdict(s), "state": s.state, **extra})
        echo_json(out)
        return
    for s in states:
        line = f"{s.table_name} {s.state}"
        if s.dest_table:
            line += f" -> {s.dest_table}"
        if s.copy_node:
            line += f"  copy-node {s.copy_node}"
        p = copy_progress(s)
        if p is not None and s.merge_state is not MergeState.FAILED:
            line += "  copy " + describe(p).split(": ", 1)[1]
        if s.copy_error:
            line += f"  ERR: {s.copy_error}"
        typer.echo(line)


@app.command("missing")
def missing_cmd(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """Tables and sequences this node could replicate but does not."""
    from londiste_rs.tables.verbs import missing

    found = missing(cfg_of(config))
    if as_json:
        echo_json([{"kind": k, "name": n} for k, n in found])
        return
    for kind, name in found:
        typer.echo(f"{kind} {name}")


@app.command("resync")
def resync_cmd(
    config: Path = ConfigArg,
    tables: list[str] = TablesArg,
    all_: bool = AllOpt,
    copy_node: str = CopyNodeOpt,
    find_copy_node: bool = FindCopyNodeOpt,
) -> None:
    """Copy tables again (also failed ones): the worker empties and reloads them
    (--copy-node=PROVIDER goes back to copying from the provider)."""
    from londiste_rs.tables.verbs import resync

    names = resync(cfg_of(config), list(tables or []), all_, copy_node, find_copy_node)
    _say("Table to copy again", names)


@app.command("wait-sync")
def wait_sync_cmd(config: Path = ConfigArg, timeout: float = TimeoutOpt) -> None:
    """Wait until every table of this node is ok (a failed copy ends the wait with its error)."""
    _wait(config, timeout)


@app.command("add-seq")
def add_seq(
    config: Path = ConfigArg,
    seqs: list[str] = SeqsArg,
    all_: bool = AllOpt,
    create: bool = typer.Option(
        False, "--create", "--create-full", help="Create a missing sequence like the provider's."
    ),
) -> None:
    """Replicate sequences: a branch or leaf keeps them at or ahead of its provider's."""
    from londiste_rs.tables.sequences import add_seqs

    _say("Sequence added", add_seqs(cfg_of(config), list(seqs or []), all_, create))


@app.command("remove-seq")
def remove_seq(config: Path = ConfigArg, seqs: list[str] = SeqsArg, all_: bool = AllOpt) -> None:
    """Stop replicating sequences here (they stay)."""
    from londiste_rs.tables.sequences import remove_seqs

    _say("Sequence removed", remove_seqs(cfg_of(config), list(seqs or []), all_))


@app.command("seqs")
def seqs_cmd(config: Path = ConfigArg, as_json: bool = JsonOpt) -> None:
    """The node's sequences: the next value here and on the provider."""
    from londiste_rs.tables.sequences import seq_states

    states = seq_states(cfg_of(config))
    if as_json:
        echo_json([asdict(s) for s in states])
        return
    for s in states:
        there = "" if s.provider_value is None else f"  provider {s.provider_value}"
        typer.echo(f"{s.seq_name} {s.local_value}{there}")


@app.command("sync-seqs")
def sync_seqs_cmd(
    config: Path = ConfigArg,
    seqs: list[str] = SeqsArg,
    exact: bool = typer.Option(
        False,
        "--exact",
        help="Set the provider's exact values, also backwards (a cut-over, writes stopped).",
    ),
) -> None:
    """Move this node's sequences to its provider's values now (the worker does it forward
    only every few seconds)."""
    from londiste_rs.tables.sequences import sync_seqs

    for s in sync_seqs(cfg_of(config), list(seqs or []), exact):
        change = f"{s.before} -> {s.provider}" if s.changed else f"{s.before} (unchanged)"
        typer.echo(f"{s.name} {change}")
