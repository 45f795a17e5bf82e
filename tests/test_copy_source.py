"""--copy-node: a table's initial copy read from another node of the cascade (a branch next to
the subscriber, sparing the root), on three separate clusters. The copy is as of the copy
node's last applied tick; the subscriber skips exactly the events of the ticks up to it.
A counter column incremented by updates proves that no event is missed or applied twice."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any

from londiste_rs.config import load_job_config
from londiste_rs.replication.worker import Worker
from tests.fix_cli import job_ini, ok, one_line_error, run_cli
from tests.fix_nodes import drain, tick

SCHEMA = """
create table t (id int primary key, n int not null, s text);
create table u (id int primary key);
"""


def content(db: Any) -> list[Any]:
    return db.sql("select * from t order by id")


def state(ini: Path, table: str = "public.t") -> dict[str, Any]:
    rows = json.loads(ok(str(ini), "tables", "--json"))
    return next(r for r in rows if r["table_name"] == table)


def last_tick(db: Any) -> int:
    return int(db.sql("select last_tick_id from londiste_rs.local_state")[0][0])


def step_until(pred: Any, *workers: Worker, limit: int = 200) -> None:
    for _ in range(limit):
        for w in workers:
            w.step()
        if pred():
            return
    raise AssertionError("condition not reached")


def cascade_nodes(
    tmp_path: Path, make_db: Any, clusters: tuple[Any, ...], names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Path]]:
    """A database with SCHEMA and a job ini per node name, on the given clusters; the first
    (the root) holds 2000 rows of t."""
    dbs = {n: make_db(c) for n, c in zip(names, clusters, strict=True)}
    for db in dbs.values():
        db.sql(SCHEMA)
    dbs[names[0]].sql("insert into t select i, 0, 'x' from generate_series(1, 2000) i")
    return dbs, {n: job_ini(tmp_path, n, db.dsn) for n, db in dbs.items()}


class Writer:
    """Updates (n = n + 1), inserts and deletes on the root, ticking every few transactions."""

    def __init__(self, db: Any):
        self.db, self.stop, self.writes = db, threading.Event(), 0
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        rnd = random.Random(7)
        with self.db.connect() as conn:
            new = 100_000
            while not self.stop.is_set():
                with conn.transaction():
                    conn.execute("update t set n = n + 1 where id = %s", [rnd.randint(1, 2000)])
                    conn.execute("update t set n = n + 1 where id %% 50 = %s", [rnd.randint(0, 49)])
                    new += 1
                    conn.execute("insert into t values (%s, 0, 'new')", [new])
                    conn.execute("delete from t where id = %s", [rnd.randint(1, 2000)])
                self.writes += 1
                if self.writes % 5 == 0:
                    conn.execute("select londiste_rs.force_tick('q1')")
                    conn.execute("select londiste_rs.ticker('q1')")

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def test_leaf_copies_from_the_branch_while_the_root_writes(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster, caplog
):
    caplog.set_level(logging.INFO, logger="londiste_rs")
    clusters = (provider_cluster, subscriber_cluster, third_cluster)
    dbs, inis = cascade_nodes(tmp_path, make_db, clusters, ("root", "branch", "leaf"))
    root_db, branch_db, leaf_db = dbs.values()
    root, branch, leaf = inis.values()
    ok(str(root), "create-root", "root")
    ok(str(root), "add-table", "--all")
    ok(str(branch), "create-branch", "branch", f"--provider={root_db.dsn}")
    ok(str(branch), "add-table", "public.t")
    bw, lw = Worker(load_job_config(branch)), Worker(load_job_config(leaf))
    try:
        drain(bw)
        tick(root_db)
        drain(bw)  # the branch's own copy snapshot is released: its rows are as of a tick
        assert branch_db.sql("select custom_snapshot from londiste_rs.table_info") == [(None,)]
        ok(str(leaf), "create-leaf", "leaf", f"--provider={root_db.dsn}")

        # refused, one line naming the fix; nothing registered
        for args, says in [
            (["t", "--copy-node=nosuch"], "unknown node nosuch in queue q1"),
            (["u", "--copy-node=branch"], "table public.u is not replicated on node branch"),
            (["t", "--copy-node=leaf"], "--copy-node=leaf is this node"),
            (["t", "--copy-node=branch", "--expect-sync"], "use one of them"),
        ]:
            assert says in one_line_error(run_cli(str(leaf), "add-table", *args))
        assert "is for a branch or leaf" in one_line_error(
            run_cli(str(root), "add-table", "u", "--copy-node=branch")
        )
        assert json.loads(ok(str(leaf), "tables", "--json")) == []

        # the leaf is ahead of the branch: its copy must wait for the branch, holding replay
        root_db.sql("update t set n = n + 1 where id <= 100")
        tick(root_db)
        drain(lw)
        ok(str(leaf), "add-table", "t", "--copy-node=branch")
        assert "public.t needs-copy  copy-node branch" in ok(str(leaf), "tables")
        assert state(leaf)["copy_node"] == "branch"
        held_at = last_tick(leaf_db)
        root_db.sql("update t set n = n + 1 where id <= 200")
        tick(root_db)
        assert lw.step() is False
        assert last_tick(leaf_db) == held_at and state(leaf)["state"] == "needs-copy"
        assert "copy node branch is at tick" in caplog.text

        # the branch catches up and gets ahead; the leaf copies from it while the root writes
        for i in range(3):
            root_db.sql(f"update t set n = n + 1 where id % 3 = {i}")
            tick(root_db)
        drain(bw)
        assert last_tick(branch_db) > held_at + 1
        with Writer(root_db) as writer:
            step_until(lambda: state(leaf)["state"] == "ok", bw, lw)
            step_until(lambda: writer.writes > 200, bw, lw, limit=100_000)
        assert "initial copy of public.t from node branch" in caplog.text
        assert "from node branch, as of tick" in caplog.text
        tick(root_db)
        drain(bw, lw)
        assert content(leaf_db) == content(root_db) == content(branch_db)
        assert root_db.sql("select sum(n) from t")[0][0] > 0
    finally:
        bw.close()
        lw.close()


def test_resync_from_a_node_ahead_of_the_provider(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster, caplog
):
    """root -> branch -> leaf, and leaf2 under the root (ahead of the branch). The leaf's
    resync copies from leaf2, as of a tick its provider (the branch) does not have yet: every
    event of the table is skipped until the branch reaches that tick, then its snapshot
    decides. leaf2 is known only to the root: the leaf finds it upstream."""
    caplog.set_level(logging.INFO, logger="londiste_rs")
    clusters = (provider_cluster, subscriber_cluster, third_cluster, subscriber_cluster)
    dbs, inis = cascade_nodes(tmp_path, make_db, clusters, ("root", "branch", "leaf", "leaf2"))
    root_db, branch_db, leaf_db, leaf2_db = dbs.values()
    ok(str(inis["root"]), "create-root", "root")
    ok(str(inis["root"]), "add-table", "t")
    ok(str(inis["branch"]), "create-branch", "branch", f"--provider={root_db.dsn}")
    ok(str(inis["leaf2"]), "create-leaf", "leaf2", f"--provider={root_db.dsn}")
    ok(str(inis["leaf"]), "create-leaf", "leaf", f"--provider={branch_db.dsn}")
    for n in ("branch", "leaf2", "leaf"):
        ok(str(inis[n]), "add-table", "t")
    bw, lw, l2w = (Worker(load_job_config(inis[n])) for n in ("branch", "leaf", "leaf2"))
    try:
        for i in range(3):  # every copy done, and leaf2's copy snapshot released
            root_db.sql(f"update t set n = n + 1 where id % 3 = {i}")
            tick(root_db)
            drain(bw, l2w, lw)
        assert content(leaf_db) == content(leaf2_db) == content(root_db)
        known = leaf_db.sql("select node_name from londiste_rs.node_location")
        assert ("leaf2",) not in known and ("branch",) in known
        assert "is the root" in one_line_error(
            run_cli(str(inis["leaf"]), "resync", "t", "--copy-node=root")
        )

        # leaf2 runs ahead; the branch and the leaf stay behind
        for i in range(3):
            root_db.sql(f"update t set n = n + 1 where id % 7 = {i}")
            root_db.sql(f"insert into t values ({5000 + i}, 0, 'ahead')")
            tick(root_db)
        drain(l2w)
        assert "Table to copy again: public.t" in ok(
            str(inis["leaf"]), "resync", "t", "--copy-node=leaf2"
        )
        root_db.sql("update t set n = n + 1 where id < 100")
        root_db.sql("delete from t where id = 5000")
        tick(root_db)
        assert lw.step()  # the copy, from leaf2, as of a tick the branch has not reached
        copy_tick, snap = leaf_db.sql(
            "select copy_tick, custom_snapshot::text from londiste_rs.table_info"
        )[0]
        assert copy_tick == last_tick(leaf2_db) > last_tick(branch_db) and snap is None
        assert "initial copy of public.t from node leaf2" in caplog.text

        # the branch moves one batch at a time; the leaf follows it. Below the copy's tick
        # the table stays as copied (leaf2 waits there); from it on, it equals the branch at
        # every tick (an event re-applied after the copy would show older rows)
        for i in range(5):
            root_db.sql(f"update t set n = n + 1 where id % 5 = {i}")
            tick(root_db)
            bw.step()
            lw.step()
            assert last_tick(leaf_db) == last_tick(branch_db)
            if last_tick(leaf_db) < copy_tick:
                assert content(leaf_db) == content(leaf2_db) != content(branch_db)
            else:
                assert content(leaf_db) == content(branch_db)
        assert last_tick(leaf_db) > copy_tick
        drain(bw, lw, l2w)
        assert content(leaf_db) == content(branch_db) == content(root_db)
        assert leaf_db.sql("select copy_tick from londiste_rs.table_info") == [(None,)]
        # back to the provider
        ok(str(inis["leaf"]), "resync", "t", "--copy-node=branch")
        drain(bw, lw)
        assert state(inis["leaf"])["copy_node"] == "branch"
        assert content(leaf_db) == content(root_db)
    finally:
        for w in (bw, lw, l2w):
            w.close()


def test_find_copy_node_copies_from_the_nearest_node_that_has_the_table(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    """root -> branch1 (replicates t) -> branch2 (does not) -> leaf. The leaf's provider does
    not have t: add-table says so and names --find-copy-node, which copies t from branch1
    while branch2 passes t's events on; u is only on the root, which cannot give the copy."""
    clusters = (provider_cluster, subscriber_cluster, third_cluster, subscriber_cluster)
    dbs, inis = cascade_nodes(tmp_path, make_db, clusters, ("root", "b1", "b2", "leaf"))
    root_db, b1_db, b2_db, leaf_db = dbs.values()
    ok(str(inis["root"]), "create-root", "root")
    ok(str(inis["root"]), "add-table", "--all")
    ok(str(inis["b1"]), "create-branch", "b1", f"--provider={root_db.dsn}")
    ok(str(inis["b1"]), "add-table", "t")
    ok(str(inis["b2"]), "create-branch", "b2", f"--provider={b1_db.dsn}")
    ok(str(inis["leaf"]), "create-leaf", "leaf", f"--provider={b2_db.dsn}")
    b1w, b2w, lw = (Worker(load_job_config(inis[n])) for n in ("b1", "b2", "leaf"))
    try:
        for i in range(2):  # b1's copy done and as of a tick
            root_db.sql(f"update t set n = n + 1 where id % 3 = {i}")
            tick(root_db)
            drain(b1w, b2w, lw)
        assert "--find-copy-node" in one_line_error(run_cli(str(inis["leaf"]), "add-table", "t"))
        assert "replicated only by the root root" in one_line_error(
            run_cli(str(inis["leaf"]), "add-table", "u", "--find-copy-node")
        )
        assert "use one of them" in one_line_error(
            run_cli(str(inis["leaf"]), "add-table", "t", "--find-copy-node", "--copy-node=b1")
        )
        assert json.loads(ok(str(inis["leaf"]), "tables", "--json")) == []

        assert "Table added: public.t" in ok(
            str(inis["leaf"]), "add-table", "t", "--find-copy-node"
        )
        assert state(inis["leaf"])["copy_node"] == "b1"
        with Writer(root_db) as writer:
            step_until(lambda: state(inis["leaf"])["state"] == "ok", b1w, b2w, lw)
            step_until(lambda: writer.writes > 100, b1w, b2w, lw, limit=100_000)
        tick(root_db)
        drain(b1w, b2w, lw)
        assert content(leaf_db) == content(root_db) == content(b1_db)
        assert b2_db.sql("select count(*) from t") == [(0,)]  # b2 never had t's rows

        # resync --find-copy-node: once b2 replicates t, the leaf's provider is the source
        ok(str(inis["b2"]), "add-table", "t")
        drain(b1w, b2w)
        assert "Table to copy again: public.t" in ok(
            str(inis["leaf"]), "resync", "t", "--find-copy-node"
        )
        assert state(inis["leaf"])["copy_node"] is None
        root_db.sql("update t set n = n + 1 where id < 50")
        tick(root_db)
        drain(b1w, b2w, lw)
        assert content(leaf_db) == content(root_db) == content(b2_db)
    finally:
        for w in (b1w, b2w, lw):
            w.close()


def test_a_copy_node_that_stays_behind_fails_the_table_and_resync_recovers(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster, monkeypatch
):
    """The copy node's worker is stopped while the subscriber is ahead of it: replay holds
    for COPY_NODE_WAIT, then the table is marked failed with the fix, replay goes on for the
    other tables, and `resync --copy-node=<provider>` copies it from the provider."""
    monkeypatch.setattr("londiste_rs.tables.copy_source.COPY_NODE_WAIT", 1.0)
    clusters = (provider_cluster, subscriber_cluster, third_cluster)
    dbs, inis = cascade_nodes(tmp_path, make_db, clusters, ("root", "branch", "leaf"))
    root_db, _, leaf_db = dbs.values()
    ok(str(inis["root"]), "create-root", "root")
    ok(str(inis["root"]), "add-table", "--all")
    ok(str(inis["branch"]), "create-branch", "branch", f"--provider={root_db.dsn}")
    ok(str(inis["branch"]), "add-table", "t")
    ok(str(inis["leaf"]), "create-leaf", "leaf", f"--provider={root_db.dsn}")
    ok(str(inis["leaf"]), "add-table", "u")
    bw, lw = Worker(load_job_config(inis["branch"])), Worker(load_job_config(inis["leaf"]))
    try:
        for _ in range(2):
            tick(root_db)
            drain(bw, lw)
        # the branch stops; the leaf moves ahead of it and asks it for t's copy
        root_db.sql("update t set n = n + 1 where id <= 10")
        tick(root_db)
        drain(lw)
        ok(str(inis["leaf"]), "add-table", "t", "--copy-node=branch")
        started = time.monotonic()
        step_until(lambda: state(inis["leaf"])["state"] == "failed", lw, limit=10_000)
        assert time.monotonic() - started >= 1.0
        error = state(inis["leaf"])["copy_error"]
        assert "copy node branch stayed at tick" in error and "resync public.t" in error
        # replay is no longer held: u's changes arrive
        root_db.sql("insert into u values (1)")
        tick(root_db)
        drain(lw)
        assert leaf_db.sql("select * from u") == [(1,)]

        assert "Table to copy again: public.t" in ok(
            str(inis["leaf"]), "resync", "t", "--copy-node=root"
        )
        drain(lw)
        assert state(inis["leaf"])["state"] == "ok"
        tick(root_db)
        drain(lw)
        assert content(leaf_db) == content(root_db)
    finally:
        bw.close()
        lw.close()
