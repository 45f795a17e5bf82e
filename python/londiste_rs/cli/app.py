"""The Typer application and the global options all verbs share (londiste3's -d -s -k -r -v -q,
held in cli/options.py)."""

from __future__ import annotations

import typer

from londiste_rs.cli.options import OPTIONS, GlobalOptions

app = typer.Typer(
    name="londiste-rs",
    help=(
        "PostgreSQL replication in the Londiste tradition: no C extension, no superuser.\n\n"
        "Used like londiste3: 'londiste-rs [-d] CONFIG.ini VERB \\[args]', and the ticker as\n"
        "'londiste-rs ticker [-d|-s|-k|-r] ticker.ini' (pgqd's config format).\n"
        "'londiste-rs demo' replicates between two throwaway local clusters."
    ),
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from londiste_rs import __version__

        typer.echo(f"londiste-rs {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    daemon: bool = typer.Option(False, "-d", "--daemon", help="Run in the background."),
    stop: bool = typer.Option(False, "-s", "--stop", help="Stop the running daemon (safe)."),
    kill: bool = typer.Option(False, "-k", "--kill", help="Kill the running daemon."),
    reload: bool = typer.Option(False, "-r", "--reload", help="Reload the running daemon."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="More output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors."),
    version: bool = typer.Option(
        False, "-V", "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    OPTIONS.daemon, OPTIONS.stop, OPTIONS.kill, OPTIONS.reload = daemon, stop, kill, reload
    OPTIONS.verbose, OPTIONS.quiet = verbose, quiet


__all__ = ["OPTIONS", "GlobalOptions", "app"]
