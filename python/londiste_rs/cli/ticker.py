"""`londiste-rs ticker [-d|-s|-k|-r|-v|-q] ticker.ini`, and the hidden `stop`/`kill`/`reload`
verbs that `londiste-rs -s|-k|-r CONFIG.ini` becomes (for ticker files and job files alike)."""

from __future__ import annotations

import configparser
from pathlib import Path

import typer

from londiste_rs import daemon
from londiste_rs.cli.app import OPTIONS, GlobalOptions, app
from londiste_rs.config import TICKER_SECTION, load_job_config, load_ticker_config

TickerConfigArg = typer.Argument(
    ..., metavar="CONFIG.ini", help="pgqd-style ticker file (\\[pgqd] section)."
)
# -s/-k/-r take a ticker file or a job file ([londiste3]/[londiste]): both name a pidfile.
AnyConfigArg = typer.Argument(..., metavar="CONFIG.ini", help="Ticker file or job file.")


@app.command()
def ticker(
    config: Path = TickerConfigArg,
    daemon_: bool = typer.Option(False, "-d", "--daemon", help="Run in the background."),
    stop: bool = typer.Option(False, "-s", "--stop", help="Stop the running ticker (safe)."),
    kill: bool = typer.Option(False, "-k", "--kill", help="Kill the running ticker."),
    reload: bool = typer.Option(False, "-r", "--reload", help="Reload the running ticker."),
    verbose: int = typer.Option(0, "-v", "--verbose", count=True, help="Debug output."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="Only warnings and errors."),
) -> None:
    """Create ticks and run queue maintenance in every listed database (pgqd's job)."""
    from londiste_rs import metrics
    from londiste_rs.ticker import check_config, check_databases, run_ticker

    cfg = load_ticker_config(config)
    # The flags may stand before the verb (global options) or after it (these).
    flags = GlobalOptions(
        daemon=OPTIONS.daemon or daemon_,
        stop=OPTIONS.stop or stop,
        kill=OPTIONS.kill or kill,
        reload=OPTIONS.reload or reload,
        verbose=OPTIONS.verbose + verbose,
        quiet=OPTIONS.quiet or quiet,
    )
    if not (flags.stop or flags.kill or flags.reload):
        check_config(cfg)

    def check() -> None:
        metrics.check_listen(cfg.metrics_listen, cfg.path)
        check_databases(cfg)

    def body() -> None:
        with metrics.serving(cfg.metrics_listen, cfg.path):
            run_ticker(cfg)

    daemon.dispatch(
        "ticker",
        body,
        config=cfg.path,
        pidfile=cfg.pidfile,
        logfile=cfg.logfile,
        flags=flags,
        check=check,
        log_format=cfg.log_format,
    )


def _signal(action: str, config: Path) -> None:
    """Signals the daemon a ticker file or a job file belongs to, through its pidfile."""
    if _is_ticker_file(config):
        tcfg = load_ticker_config(config)
        daemon.control(action, config=tcfg.path, pidfile=tcfg.pidfile, name="ticker")
    else:
        jcfg = load_job_config(config)
        daemon.control(action, config=jcfg.path, pidfile=jcfg.pidfile, name=jcfg.job_name)


def _is_ticker_file(config: Path) -> bool:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(config, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return False  # the job-file loader reports what is wrong with it
    return parser.has_section(TICKER_SECTION)


@app.command("stop", hidden=True)
def stop_cmd(config: Path = AnyConfigArg) -> None:
    """Stop the daemon of CONFIG.ini safely (SIGINT) and wait until it exits (-s)."""
    _signal("stop", config)


@app.command("kill", hidden=True)
def kill_cmd(config: Path = AnyConfigArg) -> None:
    """Kill the daemon of CONFIG.ini (SIGTERM, then SIGKILL) (-k)."""
    _signal("kill", config)


@app.command("reload", hidden=True)
def reload_cmd(config: Path = AnyConfigArg) -> None:
    """Make the daemon of CONFIG.ini reload its config and reopen its logfile (-r)."""
    _signal("reload", config)
