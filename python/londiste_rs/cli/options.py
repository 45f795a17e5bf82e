"""The global options all verbs share (londiste3's -d -s -k -r -v -q), apart from Typer so
that the worker's start (cli/worker.py) can read them without it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GlobalOptions:
    daemon: bool = False
    stop: bool = False
    kill: bool = False
    reload: bool = False
    verbose: int = 0
    quiet: bool = False


OPTIONS = GlobalOptions()


def is_verbose(arg: str) -> bool:
    """-v, -vv, ... or --verbose."""
    return (arg.startswith("-v") and set(arg[1:]) == {"v"}) or arg == "--verbose"
