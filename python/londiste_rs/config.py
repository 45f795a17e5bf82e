"""Config files, parsed once into frozen dataclasses; the rest of the code never reads raw keys.

Two formats, both londiste3's own:
- job files (`master.ini`, `slave.ini`): section `[londiste3]` (as in the walkthrough) or
  `[londiste]` (as Debian's londiste 3.11 wants); skytools-style `%(key)s` references work;
- ticker files: pgqd's `[pgqd]` section.
Relative log and pid paths are taken relative to the directory the command runs in, as
londiste3 and pgqd do, and made absolute once, so daemonizing cannot change their meaning.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from londiste_rs.errors import ConfigError

JOB_SECTIONS = ("londiste3", "londiste")
TICKER_SECTION = "pgqd"
LOG_FORMATS = ("text", "json")  # log_format: the first is the default

T = TypeVar("T")

log = logging.getLogger(__name__)

# londiste3 and pgqd settings for what londiste-rs does its own way (fetching, logging, error
# back-off, stats, watermarks): accepted without a word, so a londiste3 ini works as it is.
LONDISTE3_TUNING = frozenset({
    "pgq_lazy_fetch", "pgq_autocommit", "keepalive_stats", "use_skylog", "log_size",
    "log_count", "exception_grace", "exception_reset", "exception_quiet",
    "global_wm_publish_period", "local_wm_publish_period", "syslog", "syslog_ident",
    "syslog_facility", "verbose",
})  # fmt: skip
# londiste3 settings that change what it replicates or how it copies, which londiste-rs does
# not implement: ignored with a warning, as the user expects them to act.
LONDISTE3_FEATURES = frozenset({
    "local_only", "local_only_drop_execute", "table_filter", "register_only_tables",
    "register_only_seqs", "register_skip_tables", "register_skip_seqs", "handler_modules",
    "shard_hash_func", "shard_info_sql", "obfuscator_map", "obfuscator_key", "compare_sql",
    "compare_fmt", "threaded_copy_tables", "threaded_copy_pool_size",
})  # fmt: skip
# Keys every section has (configparser's defaults, for %(key)s references).
_PREDEFINED = ("job_name", "config_dir")

# What a running daemon set up at its start and keeps through a reload (SIGHUP): its pid and
# log files, the metrics endpoint and the log lines' format.
STARTUP_SETTINGS = ("pidfile", "logfile", "metrics_listen", "log_format")


@dataclass(frozen=True)
class JobConfig:
    """A node's job file: which database, which queue, where to log."""

    path: Path
    job_name: str
    db: str
    queue_name: str
    consumer_name: str
    logfile: Path | None
    pidfile: Path | None
    loop_delay: float
    connection_lifetime: float
    parallel_copies: int
    batch_collect_events: int
    batch_collect_interval: float | None
    keep_lag: float | None
    apply_chunk_bytes: int
    # work_mem of the provider session reading a batch: its ORDER BY ev_id sorts in memory
    batch_work_mem: int
    # work_mem of the subscriber's apply transaction: the merge statements' hash joins of a
    # staging table with its target stay in memory
    apply_work_mem: int
    remote_extra_connstr: str
    node_name: str | None
    public_node_location: str | None
    initial_provider_location: str | None
    lock_timeout: float
    exception_sleep: float
    # seconds between the worker's heartbeats, which `status` reads (replication/heartbeat.py)
    heartbeat_period: float = 5.0
    # takeover: the pre-flight's bound on the new root's lag (seconds), and how long the switch
    # waits for it to apply the old root's final tick before lifting the fence again
    takeover_max_lag: float = 5.0
    takeover_timeout: float = 30.0
    # takeover --dead-root: sequences move this many increments past what the new root knows
    # (the dead root may have handed out values since the last sync; londiste3 keeps its
    # subscribers 10000 to 30000 ahead for this)
    failover_seq_gap: int = 10000
    # service (issue 15): the Prometheus endpoint (off when None) and the log lines' format
    metrics_listen: tuple[str, int] | None = None
    log_format: str = "text"


@dataclass(frozen=True)
class TickerConfig:
    """pgqd's `[pgqd]` section."""

    path: Path
    base_connstr: str
    initial_database: str
    database_list: tuple[str, ...]
    logfile: Path | None
    pidfile: Path | None
    ticker_period: float
    maint_period: float
    retry_period: float
    check_period: float
    stats_period: float
    connection_lifetime: float
    metrics_listen: tuple[str, int] | None = None
    log_format: str = "text"


class _Section:
    """Typed reads from one ini section, each failure a ConfigError naming file and key."""

    def __init__(self, path: Path, name: str, values: Mapping[str, str]):
        self.path = path
        self.name = name
        self.values = values
        self.read: set[str] = set(_PREDEFINED)

    def warn_unread(self) -> None:
        """A warning for each key of the section that no setting read, but londiste3's own
        tuning: a londiste3 feature londiste-rs does not implement, or a misspelt key, would
        otherwise be ignored without a word."""
        for key in sorted(set(self.values) - self.read - LONDISTE3_TUNING):
            if key.startswith("logfmt_"):
                continue
            why = (
                "a londiste3 setting londiste-rs does not implement (docs/migrating.md)"
                if key in LONDISTE3_FEATURES
                else "not a setting of londiste-rs (check its spelling)"
            )
            log.warning("%s: [%s] %s is ignored: %s", self.path, self.name, key, why)

    def _convert(self, key: str, kind: str, conv: Callable[[str], T], default: T) -> T:
        self.read.add(key)
        raw = self.values.get(key)
        if raw is None or raw.strip() == "":
            return default
        try:
            return conv(raw.strip())
        except ValueError:
            raise ConfigError(
                f"{self.path}: [{self.name}] {key} = {raw!r} is not {kind}; fix the value"
            ) from None

    def text(self, key: str, default: str = "") -> str:
        self.read.add(key)
        raw = self.values.get(key)
        return default if raw is None else raw.strip()

    def required(self, key: str, hint: str) -> str:
        value = self.text(key)
        if not value:
            raise ConfigError(f"{self.path}: [{self.name}] has no '{key}'; add {hint}")
        return value

    def number(self, key: str, default: float) -> float:
        return self._convert(key, "a number", _seconds, default)

    def optional_number(self, key: str) -> float | None:
        return self._convert(key, "a number", _seconds, None)

    def integer(self, key: str, default: int) -> int:
        return self._convert(key, "a whole number", int, default)

    def size(self, key: str, default: int) -> int:
        return self._convert(key, "a size such as 64MB", _size, default)

    def path_or_none(self, key: str) -> Path | None:
        value = self.text(key)
        return Path(value).expanduser().absolute() if value else None

    def listen(self, key: str) -> tuple[str, int] | None:
        """`HOST:PORT` to listen on, None when not set."""
        return self._convert(key, "HOST:PORT such as 127.0.0.1:9187", _listen_address, None)

    def choice(self, key: str, choices: tuple[str, ...]) -> str:
        """One of `choices` (case-insensitive); the first one when not set."""
        value = self.text(key, choices[0]).lower() or choices[0]
        if value not in choices:
            raise ConfigError(
                f"{self.path}: [{self.name}] {key} = {value!r} is not one of "
                f"{', '.join(choices)}; fix the value"
            )
        return value

    def names(self, key: str) -> tuple[str, ...]:
        value = self.text(key)
        return tuple(n.strip() for n in value.replace("\n", ",").split(",") if n.strip())


_NUMBER_WITH_UNIT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")
_SECONDS = {"": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 0.001}
_SECONDS |= {"m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0}
_SECONDS |= {"h": 3600.0, "hour": 3600.0, "hours": 3600.0}
_BYTES = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20}
_BYTES |= {"g": 1 << 30, "gb": 1 << 30}


def _with_unit(raw: str, units: Mapping[str, float]) -> float:
    m = _NUMBER_WITH_UNIT.match(raw)
    if not m or m.group(2).lower() not in units:
        raise ValueError(raw)
    return float(m.group(1)) * units[m.group(2).lower()]


def _seconds(raw: str) -> float:
    """Seconds, optionally with a unit as pgq intervals have them ('5 min', '500ms')."""
    return _with_unit(raw, _SECONDS)


def _size(raw: str) -> int:
    """Bytes, optionally with a unit ('64MB')."""
    return int(_with_unit(raw, _BYTES))


def _listen_address(raw: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9187` for IPv6, `:9187` for every address) -> (host, port)."""
    host, sep, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif any(c in host for c in ":[]"):
        raise ValueError(raw)
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(raw)
    return host or "0.0.0.0", int(port)


def _read(path: Path, sections: tuple[str, ...], what: str) -> _Section:
    if not path.is_file():
        raise ConfigError(f"config file {path} not found; give the path of {what}")
    parser = configparser.ConfigParser(
        interpolation=configparser.BasicInterpolation(),
        defaults={"job_name": path.stem, "config_dir": str(path.parent.absolute())},
        inline_comment_prefixes=None,
    )
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{path}: cannot parse the file: {first}") from None
    for name in sections:
        if parser.has_section(name):
            try:
                values = dict(parser.items(name))
            except configparser.InterpolationError as e:
                # configparser's text shows the value, which may hold a password: name the key
                raise ConfigError(
                    f"{path}: [{name}] {e.option}: a '%' in its value starts a reference "
                    "to another key, written %(key)s (value not shown); write a literal % "
                    "as %%, or fix the reference"
                ) from None
            except configparser.Error as e:
                first = str(e).splitlines()[0]
                raise ConfigError(f"{path}: [{name}]: {first}") from None
            return _Section(path, name, values)
    found = ", ".join(f"[{s}]" for s in parser.sections()) or "no sections"
    wanted = " or ".join(f"[{s}]" for s in sections)
    raise ConfigError(f"{path}: has {found}; {what} needs a {wanted} section")


Config = TypeVar("Config", "JobConfig", "TickerConfig")


def reloaded(old: Config, new: Config, fixed: tuple[str, ...] = STARTUP_SETTINGS) -> Config:
    """`new` (the file read again on SIGHUP) with the `fixed` settings that changed set back to
    `old`'s, each named in a warning: they change when the daemon is started again."""
    kept = {k: getattr(old, k) for k in fixed if getattr(new, k) != getattr(old, k)}
    for key, value in kept.items():
        log.warning("reload: %s changed in %s; the running process keeps %s until it is "
                    "started again", key, new.path.name, value)  # fmt: skip
    return dataclasses.replace(new, **kept)


def load_job_config(path: str | os.PathLike[str]) -> JobConfig:
    """Reads a londiste3 job file (`[londiste3]` or `[londiste]`)."""
    p = Path(path)
    s = _read(p, JOB_SECTIONS, "a londiste job file")
    job_name = s.text("job_name", p.stem) or p.stem
    queue = s.text("queue_name") or s.text("pgq_queue_name")
    if not queue:
        raise ConfigError(
            f"{p}: [{s.name}] has no 'queue_name'; add queue_name = <name of the set>"
        )
    cfg = JobConfig(
        path=p.absolute(),
        job_name=job_name,
        db=s.required("db", "db = <connection string of this node's database>"),
        queue_name=queue,
        consumer_name=s.text("consumer_name") or s.text("pgq_consumer_id") or job_name,
        logfile=s.path_or_none("logfile"),
        pidfile=s.path_or_none("pidfile"),
        loop_delay=s.number("loop_delay", 1.0),
        connection_lifetime=s.number("connection_lifetime", 1200.0),
        parallel_copies=max(1, s.integer("parallel_copies", 1)),
        batch_collect_events=s.integer("pgq_batch_collect_events", 0),
        batch_collect_interval=s.optional_number("pgq_batch_collect_interval"),
        keep_lag=s.optional_number("pgq_keep_lag"),
        apply_chunk_bytes=s.size("apply_chunk_bytes", 12 << 20),
        batch_work_mem=s.size("batch_work_mem", 256 << 20),
        apply_work_mem=s.size("apply_work_mem", 64 << 20),
        remote_extra_connstr=s.text("remote_extra_connstr"),
        node_name=s.text("node_name") or None,
        public_node_location=s.text("public_node_location") or None,
        initial_provider_location=s.text("initial_provider_location") or None,
        lock_timeout=s.number("lock_timeout", 10.0),
        exception_sleep=s.number("exception_sleep", 20.0),
        heartbeat_period=max(0.1, s.number("heartbeat_period", 5.0)),
        takeover_max_lag=s.number("takeover_max_lag", 5.0),
        takeover_timeout=s.number("takeover_timeout", 30.0),
        failover_seq_gap=max(0, s.integer("failover_seq_gap", 10000)),
        metrics_listen=s.listen("metrics_listen"),
        log_format=s.choice("log_format", LOG_FORMATS),
    )
    s.warn_unread()
    return cfg


def load_ticker_config(path: str | os.PathLike[str]) -> TickerConfig:
    """Reads a pgqd ticker file (`[pgqd]`)."""
    p = Path(path)
    s = _read(p, (TICKER_SECTION,), "the ticker (pgqd format)")
    cfg = TickerConfig(
        path=p.absolute(),
        base_connstr=s.text("base_connstr"),
        initial_database=s.text("initial_database", "template1") or "template1",
        database_list=s.names("database_list"),
        logfile=s.path_or_none("logfile"),
        pidfile=s.path_or_none("pidfile"),
        ticker_period=s.number("ticker_period", 0.02),  # README: what it costs
        maint_period=s.number("maint_period", 120.0),
        retry_period=s.number("retry_period", 30.0),
        check_period=s.number("check_period", 60.0),
        stats_period=s.number("stats_period", 30.0),
        connection_lifetime=s.number("connection_lifetime", 3600.0),
        metrics_listen=s.listen("metrics_listen"),
        log_format=s.choice("log_format", LOG_FORMATS),
    )
    s.warn_unread()
    return cfg
