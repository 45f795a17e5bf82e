"""The worker verb (`londiste-rs [-d] CONFIG.ini worker`), started without Typer.

Typer (0.29) imports pydantic to convert any argument that is not a flag: 60 to 100 ms of a
worker's start, which the timer of a backlog's drain counts, and more than a small batch
takes. So `main` runs this verb itself when the command is exactly the global flags, `worker`
and the job file (what a service runs); anything else, `--help` included, goes through
Typer, whose `worker` command calls `run` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from londiste_rs import daemon
from londiste_rs.cli.options import GlobalOptions, is_verbose
from londiste_rs.config import load_job_config

VERB = "worker"


def plain_args(args: Sequence[str]) -> tuple[Path, GlobalOptions] | None:
    """The job file and the flags of `[FLAGS] worker CONFIG.ini` (after `normalize_argv`),
    else None. FLAGS: -d -s -k -r -q -v... and their long forms, as the global options take."""
    flags = GlobalOptions()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-d", "--daemon"):
            flags.daemon = True
        elif arg in ("-s", "--stop"):
            flags.stop = True
        elif arg in ("-k", "--kill"):
            flags.kill = True
        elif arg in ("-r", "--reload"):
            flags.reload = True
        elif arg in ("-q", "--quiet"):
            flags.quiet = True
        elif is_verbose(arg):
            flags.verbose += 1 if arg == "--verbose" else len(arg) - 1
        else:
            break
        i += 1
    rest = list(args[i:])
    if len(rest) != 2 or rest[0] != VERB or rest[1].startswith("-"):
        return None
    return Path(rest[1]), flags


def run(config: Path, flags: GlobalOptions) -> None:
    """Run the node's worker (replay on branch/leaf, housekeeping on root); -d daemonizes."""
    from londiste_rs.replication.worker import check_worker, run_worker

    cfg = load_job_config(config)

    def check() -> None:
        if cfg.metrics_listen is not None:  # (prometheus-client only when asked for)
            from londiste_rs import metrics

            metrics.check_listen(cfg.metrics_listen, cfg.path)
        check_worker(cfg)

    def body() -> None:
        if cfg.metrics_listen is None:
            run_worker(cfg)
            return
        from londiste_rs import metrics

        with metrics.serving(cfg.metrics_listen, cfg.path):
            run_worker(cfg)

    daemon.dispatch(
        cfg.job_name,
        body,
        config=cfg.path,
        pidfile=cfg.pidfile,
        logfile=cfg.logfile,
        flags=flags,
        check=check,
        log_format=cfg.log_format,
    )
