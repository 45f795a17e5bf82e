"""A consumer that is gone is visible (security review finding 9): `status` lists every
consumer of each root and branch queue with its lag and pending events, orphans flagged, and
`unregister-consumer` drops one (a live subscriber's only with --force)."""

from __future__ import annotations

import json
from typing import Any

from tests.fix_cli import job_ini, needs_attention, ok, one_line_error, run_cli


def consumers_of(status: list[dict[str, Any]], node: str) -> dict[str, dict[str, Any]]:
    entry = next(n for n in status if n["name"] == node)
    return {c["name"]: c for c in entry["consumers"]}


def test_orphan_consumer_is_listed_and_can_be_unregistered(tmp_path, provider_db, subscriber_db):
    """A consumer registered by a node that is gone (here: by hand) holds back rotation. It
    shows in status (text and --json) with its lag and pending events, as an orphan, and
    unregister-consumer removes it; the leaf's own consumer is protected."""
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    provider_db.sql("create table t (id int primary key)")
    ok(str(root), "add-table", "t")
    provider_db.sql("select londiste_rs.register_consumer('q1', 'ghost')")
    provider_db.sql("insert into t select generate_series(1, 5)")
    provider_db.sql("select londiste_rs.ticker('q1')")

    status = json.loads(needs_attention(str(leaf), "status", "--json"))
    on_root = consumers_of(status, "root")
    assert set(on_root) == {"ghost", "leaf"}
    assert on_root["ghost"]["subscriber_node"] is None
    assert on_root["leaf"]["subscriber_node"] == "leaf"
    assert on_root["ghost"]["pending_events"] >= 5 and on_root["ghost"]["lag_seconds"] >= 0
    assert consumers_of(status, "leaf") == {}  # a leaf has no queue

    text = needs_attention(str(root), "status")
    ghost = [ln for ln in text.splitlines() if "Consumer ghost" in ln]
    assert len(ghost) == 1 and "ORPHAN" in ghost[0] and "unregister-consumer ghost" in ghost[0]
    assert any("Consumer leaf" in ln and "subscriber leaf" in ln for ln in text.splitlines())

    assert "consumer ghost unregistered" in ok(str(root), "unregister-consumer", "ghost")
    status = json.loads(needs_attention(str(root), "status", "--json"))
    assert set(consumers_of(status, "root")) == {"leaf"}

    # not there (any more), or asked on a leaf: one line each
    msg = one_line_error(run_cli(str(root), "unregister-consumer", "ghost"))
    assert "no consumer ghost" in msg and "status" in msg
    msg = one_line_error(run_cli(str(leaf), "unregister-consumer", "leaf"))
    assert "root or branch" in msg


def test_a_live_subscribers_consumer_needs_force(tmp_path, provider_db, subscriber_db):
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")

    msg = one_line_error(run_cli(str(root), "unregister-consumer", "leaf"))
    assert "subscriber node leaf" in msg and "--force" in msg and "drop-node leaf" in msg
    assert provider_db.sql("select subscriber_node from londiste_rs.subscriber_info") == [("leaf",)]

    out = ok(str(root), "unregister-consumer", "leaf", "--force")
    assert "consumer leaf unregistered" in out and "subscriber leaf" in out
    assert provider_db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
    assert json.loads(needs_attention(str(root), "status", "--json"))[0]["consumers"] == []


def test_a_dead_subscribers_consumer_goes_without_force(tmp_path, provider_db, subscriber_db):
    root = job_ini(tmp_path, "root", provider_db.dsn)
    leaf = job_ini(tmp_path, "leaf", subscriber_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={provider_db.dsn}")
    provider_db.sql("update londiste_rs.node_location set dead = true where node_name = 'leaf'")
    assert "DEAD" in needs_attention(str(root), "status")
    assert "unregistered" in ok(str(root), "unregister-consumer", "leaf")
