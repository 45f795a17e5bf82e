"""Nodes: create-root/-branch/-leaf, members, node-info, drop-node, and one-line errors, through
the real CLI against real clusters owned by a non-superuser."""

from __future__ import annotations

import json

import pytest

from tests.fix_cli import job_ini, needs_attention, ok, one_line_error, run_cli


def test_root_and_leaf_are_created_once(tmp_path, provider_db, subscriber_db):
    root = job_ini(tmp_path, "master", provider_db.dsn)
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn)
    assert "root node master created" in ok(str(root), "create-root", "master", provider_db.dsn)
    again = ok(str(root), "create-root", "master", provider_db.dsn)
    assert "already exists" in again
    out = ok(str(leaf), "create-leaf", "slave", subscriber_db.dsn, f"--provider={provider_db.dsn}")
    assert "leaf node slave created" in out

    info = json.loads(ok(str(leaf), "node-info", "--json"))
    assert info["node_type"] == "leaf" and info["node_name"] == "slave"
    assert info["provider_node"] == "master" and info["last_tick_id"] is not None
    names = {m["node_name"] for m in json.loads(ok(str(leaf), "members", "--json"))}
    assert names == {"master", "slave"}
    # the provider knows its subscriber and has a consumer for it
    subs = provider_db.sql("select subscriber_node, consumer_name from londiste_rs.subscriber_info")
    assert subs == [("slave", "slave")]
    # everything is owned by the non-superuser
    owners = provider_db.sql(
        "select distinct pg_get_userbyid(relowner) from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'londiste_rs'"
    )
    assert owners == [("lrs_owner",)]


def test_wrong_kind_and_unknown_node_are_one_line_errors(tmp_path, provider_db, subscriber_db):
    root = job_ini(tmp_path, "master", provider_db.dsn)
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn)
    # not a node yet
    msg = one_line_error(run_cli(str(leaf), "node-info"))
    assert "is not a node of queue q1" in msg and "create-root" in msg
    ok(str(root), "create-root", "master")
    # a root cannot be paused, a provider must exist
    assert "needs a branch or leaf node" in one_line_error(run_cli(str(root), "pause"))
    ok(str(leaf), "create-leaf", "slave", f"--provider={provider_db.dsn}")
    # a leaf cannot be a provider; nothing is left half-created on the third database
    third = tmp_path / "third.ini"
    third.write_text(f"[londiste3]\ndb = {provider_db.dsn}\nqueue_name = q2\n")
    msg = one_line_error(run_cli(str(third), "create-leaf", "x", f"--provider={subscriber_db.dsn}"))
    assert "not a node of queue q2" in msg
    assert provider_db.sql(
        "select count(*) from londiste_rs.node_info where queue_name = 'q2'"
    ) == [(0,)]
    # a different node on the same database is refused
    msg = one_line_error(
        run_cli(str(leaf), "create-leaf", "other", f"--provider={provider_db.dsn}")
    )
    assert "already is leaf node slave" in msg
    # drop-node of a node nobody knows
    assert "unknown node other in queue q1" in one_line_error(
        run_cli(str(leaf), "drop-node", "other")
    )
    # change-provider to an unknown node
    assert "unknown node nosuch" in one_line_error(
        run_cli(str(leaf), "change-provider", "--provider=nosuch")
    )


def test_wrong_password_and_unreachable_server(tmp_path, provider_db):
    bad = job_ini(tmp_path, "bad", "host=127.0.0.1 port=1 dbname=x user=u password=sekrit")
    msg = one_line_error(run_cli(str(bad), "create-root", "r"))
    assert "cannot connect" in msg and "sekrit" not in msg
    missing = tmp_path / "missing.ini"
    msg = one_line_error(run_cli(str(missing), "node-info"))
    assert "not found" in msg
    broken = tmp_path / "broken.ini"
    broken.write_text("[londiste3]\nqueue_name = q\n")
    assert "has no 'db'" in one_line_error(run_cli(str(broken), "status"))


def test_drop_node_refuses_with_subscribers_then_drops(tmp_path, provider_db, subscriber_db):
    root = job_ini(tmp_path, "master", provider_db.dsn)
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn)
    ok(str(root), "create-root", "master")
    ok(str(leaf), "create-leaf", "slave", f"--provider={provider_db.dsn}")
    assert "still has subscribers (slave)" in one_line_error(
        run_cli(str(root), "drop-node", "master")
    )
    ok(str(leaf), "drop-node", "slave")
    assert subscriber_db.sql("select count(*) from londiste_rs.node_info") == [(0,)]
    assert provider_db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
    ok(str(root), "drop-node", "master")
    assert provider_db.sql("select count(*) from londiste_rs.node_info") == [(0,)]


@pytest.mark.parametrize("kind", ["branch"])
def test_branch_gets_its_own_externally_ticked_queue(tmp_path, provider_db, subscriber_db, kind):
    root = job_ini(tmp_path, "master", provider_db.dsn)
    branch = job_ini(tmp_path, "b1", subscriber_db.dsn)
    ok(str(root), "create-root", "master")
    ok(str(branch), f"create-{kind}", "b1", f"--provider={provider_db.dsn}")
    tick = json.loads(ok(str(branch), "node-info", "--json"))["last_tick_id"]
    rows = subscriber_db.sql(
        "select q.queue_external_ticker, max(t.tick_id) from londiste_rs.queue q"
        " join londiste_rs.tick t on t.tick_queue = q.queue_id group by 1"
    )
    assert rows == [(True, tick)]


def test_json_outputs_for_scripts(tmp_path, provider_db, subscriber_db):
    """members, node-info and status --json: one parsable document each, stable keys, times
    as ISO text, no password anywhere (also in a status line for an unreachable node)."""
    root = job_ini(tmp_path, "master", provider_db.dsn)
    leaf = job_ini(tmp_path, "slave", subscriber_db.dsn)
    ok(str(root), "create-root", "master")
    public = f"{subscriber_db.dsn} password=sekrit"  # trust auth: the password is not checked
    ok(str(leaf), "create-leaf", "slave", public, f"--provider={provider_db.dsn}")

    out = ok(str(leaf), "members", "--json")
    assert "sekrit" not in out
    assert json.loads(out) == [
        {"node_name": "master", "dead": False, "node_location": provider_db.dsn},
        # stored without the password (pg/location.py)
        {"node_name": "slave", "dead": False, "node_location": subscriber_db.dsn},
    ]

    out = ok(str(leaf), "node-info", "--json")
    info = json.loads(out)
    assert "sekrit" not in out
    assert info["queue_name"] == "q1" and info["node_name"] == "slave"
    assert info["provider_node"] == "master" and info["provider_location"] == provider_db.dsn
    assert info["paused"] is False and info["cur_error"] is None
    assert isinstance(info["last_tick_id"], int)
    # a worker's last error (times as ISO text, the message redacted too)
    subscriber_db.sql("select londiste_rs.set_consumer_error('q1', 'boom: password=sekrit')")
    out = ok(str(leaf), "node-info", "--json")
    info = json.loads(out)
    assert "sekrit" not in out and info["cur_error"] == "boom: password=***"
    assert info["error_time"][:4].isdigit() and "T" in info["error_time"]

    out = needs_attention(str(root), "status", "--json")
    assert "sekrit" not in out
    nodes = json.loads(out)
    assert [(n["depth"], n["name"], n["node_type"], n["provider"]) for n in nodes] == [
        (0, "master", "root", None),
        (1, "slave", "leaf", "master"),
    ]
    assert nodes[1]["unreachable"] is None and nodes[1]["lag_ticks"] == 0
    assert nodes[1]["error"] == "boom: password=***"
    assert {"lag_seconds", "last_tick_id", "paused", "uptodate", "error", "tables_ok"} <= set(
        nodes[1]
    )

    # the leaf's location stops working: status still answers, the node is flagged
    provider_db.sql(
        "select londiste_rs.register_location('q1', 'slave',"
        " 'host=127.0.0.1 port=1 dbname=x password=sekrit')"
    )
    out = needs_attention(str(root), "status", "--json")
    assert "sekrit" not in out
    slave = json.loads(out)[1]
    assert slave["name"] == "slave" and "127.0.0.1:1" in slave["unreachable"]
    assert slave["location"] == "host=127.0.0.1 port=1 dbname=x password=***"
