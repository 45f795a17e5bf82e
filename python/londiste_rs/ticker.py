"""The ticker (pgqd's job): ticks, maintenance and retry for every database that has our schema.

One loop, one autocommit connection per database. Per database, every
- `ticker_period` (0.02 s; pgqd's is 1 s): `londiste_rs.ticker()` (the SQL decides whether each
  queue needs a tick, never makes two ticks for one snapshot, and writes nothing when no queue
  needs one, so asking often is cheap: events wait tens of milliseconds, not seconds, issue 14;
  a lagging worker reads many ticks in one scan, replication/batches.py);
- `maint_period`: each `func_name(func_arg)` that `londiste_rs.maint_operations()` lists, called
  again while it returns a positive count (`vacuum` means VACUUM of the named table);
- `retry_period`: `londiste_rs.maint_retry_events()`, again while it returns a positive count;
- `check_period`: the database list is rescanned (an empty `database_list` means every database
  that accepts connections, found from `initial_database`) and the schema's ownership checked
  again;
- SCHEMA_PROBE (1 s): a database without our schema yet is asked whether it has it now (one
  catalog lookup on the connection kept open for it), so a `create-root` made after the ticker
  started is ticked within a second, not after a check_period;
- `stats_period`: one log line of ticks and maintenance done.
A database that fails (server restart, dropped schema, bad SQL) logs one line, loses its
connection and is retried with a backoff; the ticker itself never stops for it.

The ticker runs the schema's functions with its own rights, so before calling anything in a
database (and again at every check) it makes sure nobody it should not trust can have put code
there (`ownership.ticker_refusal`): the schema's owner must be the ticker's own role, a superuser,
or, for a ticker that is not a superuser, the database's owner; no other role may own
anything in the schema, create objects in it or triggers on its tables. Otherwise the
database is skipped with a warning naming the fix. A superuser ticker thus ticks only schemas
of superusers: run it as the schema's owner instead. Maintenance calls only functions of
schema londiste_rs (`maint_operations()` and `extra_maint` may name others: skipped) and
vacuums only its tables.
- every maintenance round also looks for consumers that hold back the rotation of the event
  tables (`rotation_blockers()`): a warning names each one (at most every BLOCKED_WARN_EVERY
  seconds), and one whose lag passed the queue's `max_consumer_lag` is unregistered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs import daemon, metrics
from londiste_rs.config import TickerConfig, load_ticker_config, reloaded
from londiste_rs.errors import ConfigError, ConnectError, LondisteError
from londiste_rs.logsetup import figures
from londiste_rs.pg.db import connect, first_line, redact, with_fix
from londiste_rs.retry import Backoff, classify
from londiste_rs.store import maintenance, ownership
from londiste_rs.store.schema import SCHEMA

log = logging.getLogger(__name__)

BACKOFF_MAX = 30.0  # seconds between reconnect attempts, at most
SCHEMA_PROBE = 1.0  # seconds between looks for the schema in a database that has none yet
BLOCKED_WARN_EVERY = 600.0  # seconds between warnings about one consumer blocking rotation


# libpq settings the ticker wants unless base_connstr says otherwise: an unreachable server must
# not hang the loop that ticks every other database, and a dead one must be noticed.
CONNECT_DEFAULTS = {"connect_timeout": "10", "keepalives_idle": "30", "keepalives_interval": "10"}


def database_dsn(cfg: TickerConfig, dbname: str) -> str:
    """`base_connstr` (libpq, without dbname) plus the database name."""
    given = conninfo_to_dict(cfg.base_connstr)
    defaults = {k: v for k, v in CONNECT_DEFAULTS.items() if k not in given}
    return make_conninfo(cfg.base_connstr, dbname=dbname, **defaults)


def check_config(cfg: TickerConfig) -> None:
    """Refuses, with one line, a base_connstr libpq cannot parse (before daemonizing)."""
    try:
        conninfo_to_dict(cfg.base_connstr)
    except psycopg.ProgrammingError as e:
        raise ConfigError(
            f"{cfg.path}: [pgqd] base_connstr is not a libpq connection string "
            f"({redact(first_line(e))}); write it as 'host=... port=... user=...'"
        ) from None


def check_databases(cfg: TickerConfig) -> None:
    """The ticker's start-up checks (before -d detaches): the server answers and every database
    of database_list exists (with an empty list: initial_database, from which the ticker finds
    them). One line naming the fix otherwise; later failures are retried, never fatal."""
    for name in cfg.database_list or (cfg.initial_database,):
        try:
            with connect(database_dsn(cfg, name), autocommit=True, what=f"database {name}"):
                pass
        except ConnectError as e:
            raise with_fix(e, f"base_connstr or database_list in {cfg.path.name}") from None


_superuser_warned: set[str] = set()


class DatabaseTicker:
    """One database: its connection, whether it has our schema, its timers and failures."""

    def __init__(self, name: str, cfg: TickerConfig):
        self.name = name
        self.cfg = cfg
        self.conn: psycopg.Connection[Any] | None = None
        self.connected_at = 0.0
        self.has_schema: bool | None = None  # None: not looked yet
        self.backoff = Backoff(BACKOFF_MAX, first=1.0)
        self.next_check = self.next_tick = self.next_maint = self.next_retry = 0.0
        self.ticks = self.maint_calls = self.retry_calls = 0
        self.refusal: str | None = None  # why this database's schema is not used
        self.skipped: set[str] = set()  # maintenance names not called (warned once each)
        self.blocked_warned: dict[tuple[str, str], float] = {}  # (queue, consumer) -> when

    # -- connection ---------------------------------------------------------------------
    def _connection(self, now: float) -> psycopg.Connection[Any]:
        if self.conn is not None and now - self.connected_at > self.cfg.connection_lifetime:
            self.close()  # connection_lifetime: start afresh now and then, as pgqd does
        if self.conn is None or self.conn.closed:
            self.conn = connect(
                database_dsn(self.cfg, self.name), autocommit=True, what=f"database {self.name}"
            )
            self.connected_at = now
            self._warn_superuser(self.conn)
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- work ---------------------------------------------------------------------------
    def step(self, now: float) -> None:
        """Does whatever is due; a failure is logged on one line and retried later."""
        try:
            if now >= self.next_check:
                self._check_schema(now)
            if self.has_schema:
                self._work(now)
        except Exception as e:  # the policy decides; the ticker never dies of one database
            self._failed(now, e)
            return
        if self.backoff.failures:
            log.info("%s: working again after %d failed attempts", self.name,
                     self.backoff.failures)  # fmt: skip
            self.backoff.reset()

    def _work(self, now: float) -> None:
        conn = self._connection(now)
        if now >= self.next_tick:
            made = maintenance.tick_all(conn)
            self.ticks += made
            metrics.ticked(self.name, made)
            # counted from the call's end, as pgqd does: a tick is due when the last one is
            # ticker_max_lag old, and calls exactly ticker_period apart would find it just
            # short of that half of the time (a tick every 2 periods instead of every one)
            self.next_tick = time.monotonic() + self.cfg.ticker_period
        if now >= self.next_retry:
            self.next_retry = now + self.cfg.retry_period
            self.retry_calls += maintenance.retry_events(conn)
        if now >= self.next_maint:
            self.next_maint = now + self.cfg.maint_period
            self._maintenance(conn)

    def _check_schema(self, now: float) -> None:
        conn = self._connection(now)
        has = maintenance.has_schema(conn)
        refusal = ownership.ticker_refusal(conn) if has else None
        if refusal is not None:
            if refusal != self.refusal:
                log.warning("%s: not ticked: %s", self.name, refusal)
        elif has != self.has_schema or self.refusal is not None:
            log.info("%s: %s", self.name, "ticking" if has else f"no {SCHEMA} schema, skipped")
        self.refusal = refusal
        has = has and refusal is None
        self.has_schema = has
        # Without the schema (not yet installed): looked at again soon, on the connection kept
        # for it (the one lookup is all it costs; DROP DATABASE of it needs WITH (FORCE) while
        # the ticker runs, as for any database the ticker ticks). A refused schema waits for
        # its fix at the slower pace.
        soon = not has and refusal is None
        self.next_check = now + (min(SCHEMA_PROBE, self.cfg.check_period) if soon else
                                 self.cfg.check_period)  # fmt: skip

    def _warn_superuser(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute(
            "select current_user::pg_catalog.text, rolsuper from pg_catalog.pg_roles"
            " where rolname operator(pg_catalog.=) current_user"
        ).fetchone()
        if row and row[1] and row[0] not in _superuser_warned:
            _superuser_warned.add(row[0])
            log.warning(
                "the ticker connects as superuser %s, which it does not need: it ticks only "
                "databases whose %s schema belongs to a superuser; run it as the role that "
                "owns the schema (base_connstr user=...)",
                row[0], SCHEMA,
            )  # fmt: skip

    def _maintenance(self, conn: psycopg.Connection[Any]) -> None:
        for func, arg in maintenance.operations(conn):
            calls = maintenance.run_operation(conn, func, arg)
            if calls is None:
                if func.lower() != "vacuum":
                    self._skip(f"maintenance function {func}")
                elif arg:
                    self._skip(f"vacuum of {arg}")
                continue
            self.maint_calls += calls
            log.debug("%s: maintenance %s(%s)", self.name, func, arg or "")
        self._rotation_blockers(conn)

    def _skip(self, what: str) -> None:
        if what not in self.skipped:
            self.skipped.add(what)
            log.warning(
                "%s: %s skipped: the ticker calls only functions and vacuums only tables of "
                "schema %s; move it there (extra_maint)",
                self.name, what, SCHEMA,
            )  # fmt: skip

    def _rotation_blockers(self, conn: psycopg.Connection[Any]) -> None:
        """Warns about consumers that hold back rotation (the event tables grow meanwhile);
        unregisters those whose lag passed their queue's max_consumer_lag."""
        now = time.monotonic()
        for b in maintenance.rotation_blockers(conn):
            queue, consumer, lag, pending = b.queue, b.consumer, b.lag, b.pending_events
            behind, max_lag = b.behind_switch, b.max_consumer_lag
            if behind and max_lag is not None and lag is not None and lag > max_lag:
                maintenance.unregister_consumer(conn, queue, consumer)
                log.warning(
                    "%s: queue %s: consumer %s unregistered: it held back the rotation of the "
                    "event tables with a lag of %s, above max_consumer_lag %s (%d events it "
                    "had not read are dropped; register it again, or resync its node)",
                    self.name, queue, consumer, lag, max_lag, pending or 0,
                )  # fmt: skip
                self.blocked_warned.pop((queue, consumer), None)
                continue
            last = self.blocked_warned.get((queue, consumer))
            if last is not None and now - last < BLOCKED_WARN_EVERY:
                continue
            self.blocked_warned[(queue, consumer)] = now
            if behind:
                log.warning(
                    "%s: queue %s: consumer %s holds back the rotation of the event tables "
                    "(lag %s, %d events pending), so they grow; start its worker, or "
                    "unregister it ('londiste-rs NODE.ini unregister-consumer %s' with a "
                    "config of this queue's node here), or set max_consumer_lag (%s)",
                    self.name, queue, consumer, lag, pending or 0, consumer,
                    maintenance.max_lag_statement(queue, "1 day"),
                )  # fmt: skip
            else:
                log.warning(
                    "%s: queue %s: rotation of the event tables waits for a transaction "
                    "that was open at consumer %s's last tick, older than the last switch; "
                    "end it (see pg_stat_activity.xact_start)",
                    self.name, queue, consumer,
                )  # fmt: skip

    def _failed(self, now: float, e: BaseException) -> None:
        verdict = classify(e)
        delay = self.backoff.failed(verdict)
        log.error("%s: %s; retrying in %.0fs", self.name, verdict.message, delay)
        try:
            self.close()
        except psycopg.Error:
            self.conn = None
        # Everything waits for the retry; the schema is looked at again then.
        self.next_check = self.next_tick = now + delay
        self.has_schema = None

    def next_due(self) -> float:
        if not self.has_schema:
            return self.next_check
        return min(self.next_check, self.next_tick, self.next_retry, self.next_maint)


class Ticker:
    """The loop: keeps the set of DatabaseTickers up to date and steps each one."""

    def __init__(self, cfg: TickerConfig):
        self.cfg = cfg
        self.dbs: dict[str, DatabaseTicker] = {}
        self.next_scan = 0.0
        self.scan_backoff = Backoff(BACKOFF_MAX, first=1.0)
        self.next_stats = time.monotonic() + self.cfg.stats_period

    def run(self) -> None:
        """The daemon body: runs until SIGINT/SIGTERM (see londiste_rs.daemon)."""
        try:
            while not daemon.stop_requested():
                if daemon.reload_requested():
                    self.reload()
                now = time.monotonic()
                if now >= self.next_scan:
                    self.scan(now)
                for db in list(self.dbs.values()):
                    if daemon.stop_requested():
                        break
                    db.step(time.monotonic())
                now = time.monotonic()
                if now >= self.next_stats:
                    self.log_stats(now)
                wake = min(
                    [self.next_scan, self.next_stats, *(d.next_due() for d in self.dbs.values())]
                )
                daemon.sleep(max(0.0, wake - time.monotonic()))
        finally:
            for db in self.dbs.values():
                db.close()

    def reload(self) -> None:
        try:
            cfg = load_ticker_config(self.cfg.path)
        except LondisteError as e:
            log.error("reload failed, keeping the old config: %s", e)
            return
        self.cfg = reloaded(self.cfg, cfg)
        for db in self.dbs.values():
            db.close()
        self.dbs.clear()
        self.next_scan = 0.0
        log.info("config reloaded from %s", cfg.path)

    def scan(self, now: float) -> None:
        """Brings the set of databases in line with the config (or with pg_database)."""
        self.next_scan = now + self.cfg.check_period
        try:
            names = list(self.cfg.database_list) or self._all_databases()
        except (psycopg.Error, LondisteError) as e:
            verdict = classify(e)
            delay = self.scan_backoff.failed(verdict)
            log.error("listing databases: %s; retrying in %.0fs", verdict.message, delay)
            self.next_scan = now + delay
            return
        self.scan_backoff.reset()
        log.debug("databases: %s", ", ".join(names) or "none")
        for gone in set(self.dbs) - set(names):
            log.info("%s: no longer listed, dropped", gone)
            self.dbs.pop(gone).close()
        for name in names:
            if name not in self.dbs:
                self.dbs[name] = DatabaseTicker(name, self.cfg)
            else:
                self.dbs[name].next_check = min(self.dbs[name].next_check, now)

    def _all_databases(self) -> list[str]:
        dsn = database_dsn(self.cfg, self.cfg.initial_database)
        with connect(dsn, autocommit=True, what="initial_database") as conn:
            rows = conn.execute(
                "select datname from pg_database"
                " where datallowconn and not datistemplate order by datname"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def log_stats(self, now: float) -> None:
        ticks = sum(d.ticks for d in self.dbs.values())
        maint = sum(d.maint_calls for d in self.dbs.values())
        retry = sum(d.retry_calls for d in self.dbs.values())
        ticking = sum(1 for d in self.dbs.values() if d.has_schema)
        log.info(
            "{ticks: %d, maint: %d, retry: %d, databases: %d}", ticks, maint, retry, ticking,
            extra=figures(ticks=ticks, maint=maint, retry=retry, databases=ticking),
        )  # fmt: skip
        for d in self.dbs.values():
            d.ticks = d.maint_calls = d.retry_calls = 0
        self.next_stats = now + self.cfg.stats_period


def run_ticker(cfg: TickerConfig) -> None:
    """The body `londiste-rs ticker` hands to londiste_rs.daemon (check_config ran before)."""
    Ticker(cfg).run()
