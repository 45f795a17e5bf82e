"""Node locations: the connection strings of a cascade's members, as the node tables store
them and as this machine uses them (DESIGN I6).

- **Stored: no secrets.** `for_storing` removes `password` and `sslpassword` from every
  location before it goes into a node table (`store/node.py` calls it on every write);
  `report_removed` says so to the user in one line. A database, its backups and anyone who
  can read it never hold a password.
- **Read: only where, never how.** A location read from a database (this node's or another
  member's) was written by whoever owns that database. `trusted_location` takes from it only
  the keys in `TRUSTED_KEYS`, which say which server, database and role to reach, and how
  strictly to check the server (`sslmode`). It never takes a key that would make this machine
  read a file or use a secret: `passfile`, `sslkey`, `sslcert`, `sslrootcert`, `sslcrl`,
  `service` (a service file entry may carry any of these), `options` (server settings of our
  session), and nothing else either. The credentials then come from this machine only:
  libpq's own (`~/.pgpass` or `PGPASSFILE`, which libpq matches per host, port, database and
  role; `PGPASSWORD`; `PGSSLMODE` and the like), and the job's ini:
  * a connection string of the ini (`db`, `public_node_location`,
    `initial_provider_location`) that names the same host, hostaddr, port, dbname and user as
    the stored location is used as written in the ini, with its password and other keys;
  * otherwise londiste3's `remote_extra_connstr` is added to the stored keys (its keys win,
    so it can also force `sslmode=verify-full`).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError

log = logging.getLogger(__name__)

# Keys a node table never holds.
SECRET_KEYS = ("password", "sslpassword")

# Keys taken from a location read from a database: which server, database and role, and
# checks that only make the connection stricter or bounded. Everything else is the operator's
# to give (ini, environment, service files), because a key such as passfile, sslkey, sslcert,
# sslrootcert, service or options would let a database's owner make this machine read its
# files, present its client certificate, or change settings of our session.
# (sslmode from a database could weaken a connection the environment's PGSSLMODE would have
# verified; remote_extra_connstr = sslmode=verify-full overrides it.)
TRUSTED_KEYS = (
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "sslmode",
    "target_session_attrs",
    "connect_timeout",
)

# What a location points at: a stored location and an ini connection string with the same
# values name the same server, database and role.
TARGET_KEYS = ("host", "hostaddr", "port", "dbname", "user")

PASSWORD_SOURCES = (
    "~/.pgpass (or PGPASSFILE), a service file, PGPASSWORD, or the ini "
    "(a connection string for that server such as initial_provider_location, or "
    "remote_extra_connstr)"
)

# Stored locations already warned about (ignored keys), so a worker's loop says it once.
_warned: set[str] = set()


def _params(connstr: str) -> dict[str, str]:
    try:
        parsed = conninfo_to_dict(connstr)
    except psycopg.ProgrammingError:
        raise LondisteError(
            "a node location is not a valid connection string (not shown); write it as "
            "'host=... port=... dbname=... user=...'"
        ) from None
    return {k: str(v) for k, v in parsed.items() if v is not None}


def for_storing(location: str) -> str:
    """`location` without password and sslpassword (as written when it holds neither)."""
    params = _params(location)
    if not any(k in params for k in SECRET_KEYS):
        return location
    return _conninfo({k: v for k, v in params.items() if k not in SECRET_KEYS})


def report_removed(location: str, what: str) -> None:
    """Says in one line that `for_storing` left the secrets of `location` out, and where the
    password must come from instead."""
    try:
        removed = [k for k in SECRET_KEYS if k in _params(location)]
    except LondisteError:
        return
    if removed:
        log.warning(
            "%s: %s not stored (node tables hold no passwords); the password must come from %s",
            what,
            " and ".join(removed),
            PASSWORD_SOURCES,
        )


def _conninfo(params: dict[str, str]) -> str:
    """A key=value connection string, the keys that say where first."""
    first = {k: params[k] for k in TARGET_KEYS if k in params}
    return make_conninfo(**first, **{k: v for k, v in params.items() if k not in first})


def _target(params: dict[str, str]) -> tuple[str | None, ...]:
    return tuple(params.get(k) for k in TARGET_KEYS)


def _ini_locations(cfg: JobConfig) -> list[str]:
    found = [cfg.db, cfg.public_node_location, cfg.initial_provider_location]
    return [c for c in found if c]


def trusted_location(stored: str, cfg: JobConfig) -> str:
    """The connection string to reach a node whose location was read from a database: only
    `TRUSTED_KEYS` of it, with this machine's credentials (see the module doc)."""
    params = _params(stored)
    kept = {k: params[k] for k in TRUSTED_KEYS if k in params}
    dbname = kept.get("dbname", "")
    if "=" in dbname or "://" in dbname:
        raise LondisteError(
            "a node location read from a database has a connection string in place of its "
            "database name (not followed); fix that node's location (create-* with a public "
            "location, or change-provider)"
        )
    ignored = sorted(set(params) - set(kept) - set(SECRET_KEYS))
    if ignored and stored not in _warned:
        _warned.add(stored)
        log.warning(
            "node location %s: ignored %s (only %s are taken from a database; give the rest "
            "in remote_extra_connstr or libpq's environment)",
            _conninfo({k: kept[k] for k in TARGET_KEYS if k in kept}) or "''",
            ", ".join(ignored),
            ", ".join(TRUSTED_KEYS),
        )
    target = _target(kept)
    for own in _ini_locations(cfg):
        try:
            mine = _params(own)
        except LondisteError:
            continue
        if "service" not in mine and _target(mine) == target:
            return own
    if cfg.remote_extra_connstr:
        try:
            kept.update(_params(cfg.remote_extra_connstr))
        except LondisteError:
            raise LondisteError(
                f"{cfg.path}: remote_extra_connstr is not a valid connection string (not "
                "shown); write it as 'key=value ...', e.g. 'sslmode=verify-full'"
            ) from None
    return _conninfo(kept)


def optional_trusted(stored: str | None, cfg: JobConfig) -> str | None:
    """`trusted_location` of a location that may be missing."""
    return None if stored is None else trusted_location(stored, cfg)
