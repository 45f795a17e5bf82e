"""What the table and sequence verbs and the copy share: the node a verb runs on, its
provider, and the registered tables and sequences as relation names."""

from __future__ import annotations

from typing import Any

import psycopg

from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, TableError
from londiste_rs.pg import names as pgnames
from londiste_rs.pg.location import trusted_location
from londiste_rs.pg.names import TableName, name_of
from londiste_rs.store import tables as store_tables
from londiste_rs.store.node import NodeInfo, require_node

Conn = psycopg.Connection[Any]

SUBSCRIBERS = ("branch", "leaf")


def local_tables(conn: Conn, queue: str) -> list[TableName]:
    return [name_of(t) for t in store_tables.table_names(conn, queue)]


def local_seqs(conn: Conn, queue: str) -> list[TableName]:
    return [name_of(s) for s in store_tables.seq_names(conn, queue)]


def node_for(
    cfg: JobConfig, conn: Conn, verb: str, kinds: tuple[str, ...] | None = None
) -> NodeInfo:
    return require_node(conn, cfg, kinds or ("root", *SUBSCRIBERS), verb)


def provider_location(cfg: JobConfig, info: NodeInfo) -> str:
    """The connection string of this node's provider: its stored location, only as far as
    `trusted_location` takes it, with this machine's credentials."""
    if not info.provider_location:
        raise LondisteError(
            f"provider {info.provider_node} has no known location; register it with change-provider"
        )
    return trusted_location(info.provider_location, cfg)


def all_user(conn: Conn, kinds: tuple[str, ...]) -> list[TableName]:
    """Every user relation of these kinds in the database."""
    try:
        return pgnames.resolve(conn, ["*.*"], kinds=kinds)
    except TableError:  # nothing there
        return []
