"""A cascade on three clusters: root -> branch -> leaf. The branch re-queues what it applies
under the root's tick ids, so the leaf follows it; change-provider moves the leaf to the root
with nothing lost or repeated; pause/resume; status shows every node."""

from __future__ import annotations

import json
from typing import Any

from londiste_rs.config import load_job_config
from londiste_rs.replication.worker import Worker
from tests.fix_cli import job_ini, needs_attention, ok, one_line_error, run_cli
from tests.fix_nodes import drain, tick

SCHEMA = "create table t (id int primary key, v int not null, s text);"


def content(db: Any) -> list[Any]:
    return db.sql("select * from t order by id")


def test_leaf_follows_branch_then_moves_to_root(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    root_db, branch_db, leaf_db = (
        make_db(provider_cluster),
        make_db(subscriber_cluster),
        make_db(third_cluster),
    )
    for db in (root_db, branch_db, leaf_db):
        db.sql(SCHEMA)
    root_db.sql("insert into t select i, i, 'x' from generate_series(1, 100) i")
    root = job_ini(tmp_path, "root", root_db.dsn)
    branch = job_ini(tmp_path, "branch", branch_db.dsn)
    leaf = job_ini(tmp_path, "leaf", leaf_db.dsn)
    ok(str(root), "create-root", "root")
    ok(str(root), "add-table", "--all")
    ok(str(branch), "create-branch", "branch", f"--provider={root_db.dsn}")
    ok(str(branch), "add-table", "--all")
    bw = Worker(load_job_config(branch))
    lw = Worker(load_job_config(leaf))
    try:
        drain(bw)
        ok(str(leaf), "create-leaf", "leaf", f"--provider={branch_db.dsn}")
        ok(str(leaf), "add-table", "--all")
        for i in range(3):
            root_db.sql(f"update t set v = v + 1 where id % 3 = {i}")
            root_db.sql(f"insert into t values ({200 + i}, 0, 'new')")
            tick(root_db)
            drain(bw, lw)
        assert content(leaf_db) == content(branch_db) == content(root_db)

        status = json.loads(needs_attention(str(leaf), "status", "--json"))
        assert [(s["depth"], s["name"], s["node_type"]) for s in status] == [
            (0, "root", "root"),
            (1, "branch", "branch"),
            (2, "leaf", "leaf"),
        ]
        assert all(s["lag_ticks"] == 0 for s in status[1:])

        # pause: the leaf applies nothing while the branch goes on
        ok(str(leaf), "pause")
        root_db.sql("update t set s = 'paused' where id = 1")
        tick(root_db)
        drain(bw, lw)
        assert content(leaf_db) != content(root_db)
        assert json.loads(ok(str(leaf), "node-info", "--json"))["paused"] is True
        ok(str(leaf), "resume")
        drain(bw, lw)
        assert content(leaf_db) == content(root_db)

        # more events queued, then the leaf moves to the root mid-stream
        root_db.sql("update t set v = -v where id < 50")
        tick(root_db)
        drain(bw)  # the branch is ahead of the leaf now
        root_db.sql("delete from t where id > 150")
        tick(root_db)
        assert "now following root" in ok(str(leaf), "change-provider", "--provider=root")
        drain(bw, lw)
        assert content(leaf_db) == content(root_db)
        assert branch_db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
        subs = root_db.sql("select subscriber_node from londiste_rs.subscriber_info order by 1")
        assert subs == [("branch",), ("leaf",)]
        # wait-root returns at once: the leaf has the root's last tick
        ok(str(leaf), "wait-root", "--timeout", "10")
    finally:
        bw.close()
        lw.close()


def member_names(db: Any) -> list[str]:
    return [r[0] for r in db.sql("select node_name from londiste_rs.node_location order by 1")]


def test_drop_node_leaves_every_member_list(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    root_db, branch_db, leaf_db = (
        make_db(provider_cluster),
        make_db(subscriber_cluster),
        make_db(third_cluster),
    )
    root = job_ini(tmp_path, "root", root_db.dsn)
    branch = job_ini(tmp_path, "branch", branch_db.dsn)
    leaf = job_ini(tmp_path, "leaf", leaf_db.dsn)
    root_db.sql(SCHEMA)
    ok(str(root), "create-root", "root")
    ok(str(root), "add-table", "t")
    ok(str(branch), "create-branch", "branch", f"--provider={root_db.dsn}")
    ok(str(leaf), "create-leaf", "leaf", f"--provider={branch_db.dsn}")
    # the root learns of the leaf under the branch too
    assert member_names(root_db) == ["branch", "leaf", "root"]
    assert member_names(leaf_db) == ["branch", "leaf", "root"]
    # a member that went away for good: known, never reachable
    root_db.sql(
        "select londiste_rs.register_location('q1', 'ghost', 'host=127.0.0.1 port=1 dbname=x')"
    )

    # refused while it has subscribers, from any member's config, one line with the fix
    for ini in (branch, root):
        msg = one_line_error(run_cli(str(ini), "drop-node", "branch"))
        assert "node branch still has subscribers (leaf)" in msg and "change-provider" in msg
    assert "subscribers (branch)" in one_line_error(run_cli(str(root), "drop-node", "root"))

    # the leaf dropped from the ROOT's config: gone in its database and from every list
    out = ok(str(root), "drop-node", "leaf")
    assert "node leaf dropped" in out
    assert "not removed from member ghost" in out and "127.0.0.1:1" in out
    assert leaf_db.sql("select count(*) from londiste_rs.node_info") == [(0,)]
    assert branch_db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
    assert member_names(root_db) == ["branch", "ghost", "root"]
    assert member_names(branch_db) == ["branch", "root"]
    assert branch_db.sql(
        "select count(*) from londiste_rs.subscription s join londiste_rs.consumer c"
        " on c.co_id = s.sub_consumer where c.co_name = 'leaf'"
    ) == [(0,)]

    # a dead node is dropped from the lists of the others
    ok(str(branch), "drop-node", "ghost")
    assert member_names(root_db) == ["branch", "root"]
    # the branch with its own config; then the root is alone and can go too
    ok(str(branch), "drop-node", "branch")
    assert branch_db.sql("select count(*) from londiste_rs.node_info") == [(0,)]
    assert member_names(root_db) == ["root"]
    assert root_db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
    ok(str(root), "drop-node", "root")
    assert root_db.sql("select count(*) from londiste_rs.node_info") == [(0,)]
    assert root_db.sql("select count(*) from pg_trigger where tgrelid = 't'::regclass") == [(0,)]
    root_db.sql("insert into t values (1, 1, 'no capture left')")
