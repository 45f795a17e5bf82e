"""`londiste-rs demo`."""

from __future__ import annotations

import typer

from londiste_rs.cli.app import app


@app.command()
def demo(
    scale: int = typer.Option(1, help="pgbench scale: 10000 accounts per unit."),
) -> None:
    """Replicate a pgbench-like schema between two throwaway local clusters, then clean up."""
    from londiste_rs.devtools.demo import run_demo

    ok = run_demo(typer.echo, scale=scale)
    typer.echo("demo finished: subscriber equals provider" if ok else "demo FAILED: tables differ")
    raise typer.Exit(0 if ok else 1)
