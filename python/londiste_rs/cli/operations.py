"""The end of a migration: compare and repair (londiste3's verbs, with the differing rows
named and repaired one by one)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from londiste_rs.cli.app import app
from londiste_rs.cli.common import ConfigArg, JsonOpt, cfg_of, echo_json

if TYPE_CHECKING:  # the verbs import it when they run: the worker's start does not need it
    from londiste_rs.operations.compare import TableDiff

TablesArg = typer.Argument(None, help="Tables: [schema.]name, globs allowed (default: all ok).")


def _describe(d: TableDiff) -> list[str]:
    rows = (
        f"{d.provider_rows} rows"
        if d.provider_rows == d.local_rows
        else f"{d.provider_rows} rows on the provider, {d.local_rows} here"
    )
    if d.equal:
        lines = [f"{d.table}: {rows}, equal"]
    else:
        lines = [
            f"{d.table}: {rows}, different: {len(d.missing)} missing here, "
            f"{len(d.extra)} extra here, {len(d.different)} different"
        ]
        lines += [f"  {what}: ({', '.join(key)})" for what, key in d.shown()]
        hidden = len(d.missing) + len(d.extra) + len(d.different) - len(d.shown())
        if hidden > 0:
            lines.append(f"  ... and {hidden} more")
    lines += [f"  note: {n}" for n in d.notes]
    return lines


def _as_json(d: TableDiff) -> dict[str, object]:
    return {
        "table": d.table,
        "equal": d.equal,
        "provider_rows": d.provider_rows,
        "local_rows": d.local_rows,
        "missing_here": [list(k) for k in d.missing],
        "extra_here": [list(k) for k in d.extra],
        "different": [list(k) for k in d.different],
        "notes": d.notes,
    }


@app.command("compare")
def compare_cmd(
    config: Path = ConfigArg, tables: list[str] = TablesArg, as_json: bool = JsonOpt
) -> None:
    """Compare this node's tables with the provider's at one consistent point; name the
    differing rows. Exit 0 only when every table is equal. Needs the node's worker running."""
    from londiste_rs.operations.compare import compare

    diffs = compare(cfg_of(config), list(tables or []))
    if as_json:
        echo_json([_as_json(d) for d in diffs])
    else:
        for d in diffs:
            for line in _describe(d):
                typer.echo(line)
    if not all(d.equal for d in diffs):
        raise typer.Exit(1)


@app.command("repair")
def repair_cmd(
    config: Path = ConfigArg,
    tables: list[str] = TablesArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the SQL, change nothing."),
) -> None:
    """Make this node's differing rows equal to the provider's, in one transaction on this
    node (the provider is only read). Needs the node's worker running."""
    from londiste_rs.operations.repair import repair

    for r in repair(cfg_of(config), list(tables or []), dry_run):
        d = r.diff
        if d.equal:
            typer.echo(f"{d.table}: equal, nothing to repair")
            continue
        if dry_run:
            typer.echo(f"-- {d.table}: {len(r.statements)} statements")
            for s in r.statements:
                typer.echo(s + ";")
        else:
            typer.echo(
                f"{d.table}: repaired {len(d.missing)} missing, {len(d.extra)} extra, "
                f"{len(d.different)} different rows"
            )
