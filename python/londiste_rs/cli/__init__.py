"""Command line entry point: londiste3's argument order, one-line errors, exit codes.

londiste3 takes the config before the verb (`londiste3 -d slave.ini worker`); Typer wants the
verb first. `main` swaps the two before Typer sees them, so both orders work.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

import psycopg

from londiste_rs.cli import worker
from londiste_rs.cli.options import is_verbose
from londiste_rs.errors import LondisteError
from londiste_rs.pg.db import redact

# Options that take no value, and so can stand anywhere before the config file.
_FLAGS = {"-d", "--daemon", "-s", "--stop", "-k", "--kill", "-r", "--reload", "-q", "--quiet"}
# Verbs a bare `-s/-k/-r CONFIG.ini` (no verb) maps to, as with londiste3 and pgqd.
_SIGNAL_VERBS = {"-s": "stop", "--stop": "stop", "-k": "kill", "--kill": "kill"}
_SIGNAL_VERBS |= {"-r": "reload", "--reload": "reload"}


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """`[opts] CONFIG.ini VERB args` -> `[opts] VERB CONFIG.ini args`; a config file with no
    verb and -s/-k/-r becomes the stop/kill/reload verb."""
    args = list(argv)
    i = 0
    while i < len(args) and (args[i] in _FLAGS or is_verbose(args[i])):
        i += 1
    if i >= len(args) or not args[i].endswith(".ini"):
        return args
    config = args[i]
    rest = args[i + 1 :]
    if rest and not rest[0].startswith("-"):
        return [*args[:i], rest[0], config, *rest[1:]]
    signal = next((_SIGNAL_VERBS[a] for a in args[:i] if a in _SIGNAL_VERBS), None)
    if signal:
        return [*args[:i], signal, config, *rest]
    return args


# `status --watch` without SECONDS redraws every this many seconds.
WATCH_DEFAULT = "2"


def watch_default(args: list[str]) -> list[str]:
    """`--watch` not followed by a number gets WATCH_DEFAULT (Typer has no option whose
    value may be left out)."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--watch" and not _is_number(args[i + 1] if i + 1 < len(args) else ""):
            out.append(WATCH_DEFAULT)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    args = watch_default(normalize_argv(sys.argv[1:] if argv is None else argv))
    debug = bool(os.environ.get("LONDISTE_RS_DEBUG")) or any(is_verbose(a) for a in args)
    try:
        code = _run(args)
    except LondisteError as e:
        _fail(f"ERROR: {redact(str(e))}", e.exit_code, debug)
    except psycopg.Error as e:
        # A database error nobody translated: still one line, with the server's own words.
        msg = redact(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        _fail(f"ERROR: database error: {msg}", 1, debug)
    except KeyboardInterrupt:
        _fail("interrupted", 130, False)
    except Exception as e:
        usage = _usage_error(e)
        if usage is not None:
            _fail(f"ERROR: {usage}", int(getattr(e, "exit_code", 2)), debug)
        _fail(
            f"internal error: {type(e).__name__}: {redact(str(e))} "
            "(run with -v for the traceback, and please report it)",
            70,
            debug,
        )

    if isinstance(code, int) and code != 0:  # typer.Exit(n), or Ctrl-C during a verb (130)
        sys.exit(code)


def _run(args: list[str]) -> object:
    """Runs the verb: the worker's plain start without Typer (cli/worker.py), the rest with it."""
    plain = worker.plain_args(args)
    if plain is not None:
        worker.run(*plain)
        return 0
    import typer

    # The verb modules: each registers its verbs on `app` when imported.
    from londiste_rs.cli import demo, execute, node, operations, tables, takeover, ticker  # noqa: F401
    from londiste_rs.cli.app import app

    try:
        # not standalone: Typer's usage errors come out as exceptions too, for one line each
        return app(args=args, prog_name="londiste-rs", standalone_mode=False)
    except typer.Abort:
        raise KeyboardInterrupt from None


def _usage_error(e: Exception) -> str | None:
    """A wrong verb, option or argument (Click's usage errors, inside Typer): its message
    and where to look, else None."""
    message = getattr(e, "format_message", None)
    if not callable(message) or not hasattr(e, "exit_code"):
        return None
    ctx = getattr(e, "ctx", None)
    where = getattr(ctx, "command_path", None) or "londiste-rs"
    return f"{str(message()).rstrip('.')}; see '{where} --help'"


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    logging.shutdown()
    print(message, file=sys.stderr)
    sys.exit(code)


__all__ = ["main", "normalize_argv", "watch_default"]
