"""What every verb module shares: the config argument, common options, JSON output."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import typer

from londiste_rs.config import JobConfig, load_job_config
from londiste_rs.pg.db import redact

ConfigArg = typer.Argument(..., metavar="CONFIG.ini", help="The node's job file ([londiste3]).")
ProviderOpt = typer.Option(None, "--provider", help="Connect string of the node to follow.")
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")


def cfg_of(config: Path) -> JobConfig:
    return load_job_config(config)


def echo_json(data: object) -> None:
    """Prints `data` as one JSON document: times as ISO text, every password redacted."""

    def clean(v: object) -> object:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):  # tuples: the fields of dataclasses (asdict)
            return [clean(x) for x in v]
        if isinstance(v, str):
            return redact(v)
        if isinstance(v, (datetime, date)):
            return v.isoformat()
        return v

    typer.echo(json.dumps(clean(data)))


TimeoutOpt = typer.Option(None, "--timeout", help="Give up after this many seconds.")
