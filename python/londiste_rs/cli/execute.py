"""`execute`: schema changes run on the root and queued for every node at the same point of
the stream; `execute --skip` records files as applied on one node without running them."""

from __future__ import annotations

from pathlib import Path

import typer

from londiste_rs.cli.app import app
from londiste_rs.cli.common import ConfigArg, cfg_of
from londiste_rs.errors import UsageError

FilesArg = typer.Argument(..., metavar="FILE.sql...", help="SQL files to run.")
ForceOpt = typer.Option(False, "--force", help="Run files already applied again (on every node).")
SkipOpt = typer.Option(
    False,
    "--skip",
    help="Record the files as applied on this node without running them (a worker stopped on "
    "one of them goes on).",
)


@app.command("execute")
def execute_cmd(
    config: Path = ConfigArg,
    files: list[Path] = FilesArg,
    force: bool = ForceOpt,
    skip: bool = SkipOpt,
) -> None:
    """Run SQL files on the root and queue them in the same transaction: every branch and
    leaf runs them at exactly that point of the stream. Files are known by name: one applied
    already is skipped. Its --*-- header attributes (Local-Table, Need-Table, ...) decide
    which nodes need it; @table@ tags become the local table's name."""
    from londiste_rs.operations.execute import execute, skip_files

    if force and skip:
        raise UsageError("--force and --skip exclude each other; give one")
    cfg = cfg_of(config)
    lines = skip_files(cfg, files) if skip else execute(cfg, files, force)
    for line in lines:
        typer.echo(line)
