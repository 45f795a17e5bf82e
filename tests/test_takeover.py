"""takeover: a leaf becomes the root while writes go on at the old root, through the real CLI,
with real ticker and worker processes on real clusters. The old root's writes are fenced (the
error names the new root), none acknowledged is lost or doubled, sequences go on past the old
root's, the old root follows the new one (reverse replication) and a second takeover moves
back; kill -9 of the command at each step leaves a state `status` explains and a rerun
completes; --dead-root and resurrect; two sources into one target, one after the other."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from londiste_rs.operations.takeover import PAUSE_ENV
from londiste_rs.waiting import wait_for

# -- small helpers (copied here on purpose: other test modules are being reorganised) -------


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "londiste_rs", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def ok(*args: str) -> str:
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def job_ini(tmp_path: Path, name: str, dsn: str, queue: str = "q1", **extra: Any) -> Path:
    path = tmp_path / f"{name}.ini"
    lines = ["[londiste3]", f"db = {dsn}", f"queue_name = {queue}", "loop_delay = 0.1"]
    lines += [f"logfile = {tmp_path}/log/{name}.log", f"pidfile = {tmp_path}/pid/{name}.pid"]
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ticker_ini(tmp_path: Path, name: str, db: Any) -> Path:
    params = conninfo_to_dict(db.dsn)
    params.pop("dbname")
    path = tmp_path / f"ticker_{name}.ini"
    path.write_text(
        f"[pgqd]\nbase_connstr = {make_conninfo(**params)}\ndatabase_list = {db.name}\n"
        f"ticker_period = 0.1\nlogfile = {tmp_path}/log/ticker_{name}.log\n"
        f"pidfile = {tmp_path}/pid/ticker_{name}.pid\n"
    )
    return path


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "londiste_rs", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def status_of(ini: str, code: int | None = None) -> str:
    """`status`'s text; it exits 1 when something needs attention (a takeover stopped half-way,
    a worker not running), 0 otherwise."""
    out = run_cli(ini, "status")
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, out.stderr
    assert code is None or out.returncode == code, out.stdout
    return out.stdout


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()  # its pipe: left open, it warns (and warnings fail the tests)


SCHEMA = """
create table acct (id bigserial primary key, writer int not null, n int not null,
                   src text not null, unique (writer, n));
create table counter (id int primary key, v int not null);
"""
WRITERS = 3


def rows(db: Any) -> list[tuple[Any, ...]]:
    return db.sql("select id, writer, n, src from acct order by id") + db.sql(
        "select id, v, 0, '' from counter order by id"
    )


@dataclass
class Node:
    name: str
    db: Any
    ini: Path


@dataclass
class Cascade:
    """A root and a leaf, each with its own ticker and worker process."""

    tmp: Path
    root: Node
    leaf: Node
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, node: Node) -> None:
        self.procs[f"worker {node.name}"] = spawn(str(node.ini), "worker")
        ticker = ticker_ini(self.tmp, node.name, node.db)
        self.procs[f"ticker {node.name}"] = spawn("ticker", str(ticker))

    def stop_all(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                stop(proc)


@contextlib.contextmanager
def cascade(
    tmp_path: Path,
    make_db: Any,
    root_cluster: Any,
    leaf_cluster: Any,
    queue: str = "q1",
    names: tuple[str, str] = ("old", "new"),
) -> Iterator[Cascade]:
    root_db, leaf_db = make_db(root_cluster, "old"), make_db(leaf_cluster, "new")
    root_db.sql(SCHEMA)
    leaf_db.sql(SCHEMA)
    root_db.sql(
        "insert into acct (writer, n, src) select -1, g, 'seed' from generate_series(1, 200) g;"
        f"insert into counter select g, 0 from generate_series(0, {WRITERS - 1}) g"
    )
    root = Node(names[0], root_db, job_ini(tmp_path, names[0], root_db.dsn, queue))
    leaf = Node(names[1], leaf_db, job_ini(tmp_path, names[1], leaf_db.dsn, queue,
                                           takeover_max_lag=10))  # fmt: skip
    ok(str(root.ini), "create-root", root.name, root_db.dsn)
    ok(str(root.ini), "add-table", "public.acct", "public.counter")
    ok(str(root.ini), "add-seq", "public.acct_id_seq")
    ok(str(leaf.ini), "create-leaf", leaf.name, leaf_db.dsn, f"--provider={root_db.dsn}")
    ok(str(leaf.ini), "add-table", "public.acct", "public.counter")
    ok(str(leaf.ini), "add-seq", "public.acct_id_seq")
    c = Cascade(tmp_path, root, leaf)
    try:
        c.start(root)
        c.start(leaf)
        ok(str(leaf.ini), "wait-sync", "--timeout", "60")
        yield c
    finally:
        c.stop_all()


class Writers:
    """Application writers: each transaction inserts (writer, n) and bumps its counter, first on
    OLD; a read-only refusal there (the fence) sends the writer to NEW, where it retries until
    NEW takes writes (refused before: by its fence, or a key its lagging sequence repeats).
    `acked` holds every (writer, n, where) whose COMMIT returned."""

    def __init__(self, old_dsn: str, new_dsn: str, base: int = 0, prefix: str = ""):
        self.dsns = {"old": old_dsn, "new": new_dsn}
        self.base = base
        self.acct, self.counter = f"{prefix}acct", f"{prefix}counter"
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[tuple[int, int, str, float]] = []
        self.refusals: dict[str, set[str]] = {"old": set(), "new": set()}
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self.run, args=(w,), daemon=True)
                        for w in range(WRITERS)]  # fmt: skip

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for t in self.threads:
            t.join(30)

    def run(self, w: int) -> None:
        where, n, w = "old", 0, self.base + w
        conns: dict[str, psycopg.Connection[Any]] = {}
        try:
            while not self.done.is_set():
                conn = conns.get(where)
                if conn is None:
                    conn = conns[where] = psycopg.connect(self.dsns[where], autocommit=True)
                try:
                    with conn.transaction():
                        conn.execute(
                            f"insert into {self.acct} (writer, n, src) values (%s, %s, %s)",
                            [w, n, where],
                        )
                        conn.execute(
                            f"update {self.counter} set v = v + 1 where id = %s", [w % WRITERS]
                        )
                except psycopg.errors.ReadOnlySqlTransaction as e:
                    with self.lock:
                        self.refusals[where].add(e.diag.message_primary or "")
                    where = "new"
                    time.sleep(0.002)
                    continue
                except psycopg.errors.UniqueViolation:
                    # NEW before it is promoted: its sequence lags the old root's, so the key
                    # check (before the fence's AFTER trigger) may refuse first; not acked
                    if where != "new":
                        raise
                    time.sleep(0.002)
                    continue
                with self.lock:
                    self.acked.append((w, n, where, time.monotonic()))
                n += 1
                time.sleep(0.003)
        except Exception as e:  # recorded, the test fails on it
            self.errors.append(f"writer {w}: {type(e).__name__}: {e}")
        finally:
            for conn in conns.values():
                conn.close()

    def count(self, where: str) -> int:
        with self.lock:
            return sum(1 for a in self.acked if a[2] == where)


def check_every_ack_once(db: Any, writers: Writers) -> None:
    """Every acknowledged write is in `db` exactly once, and nothing else was written."""
    got = db.sql(f"select writer, n, src from {writers.acct} where writer >= 0 order by 1, 2")
    want = sorted((w, n, where) for w, n, where, _ in writers.acked)
    assert got == want
    counters = dict(db.sql(f"select id, v from {writers.counter}"))
    per_writer = {w: sum(1 for a in writers.acked if a[0] == w) for w in range(WRITERS)}
    assert counters == per_writer


def takeover(ini: Path, old: str, *args: str) -> str:
    return ok(str(ini), "takeover", old, *args)


def fence_message(db: Any) -> tuple[str, str]:
    """The error a plain application session gets writing to `db` (SQLSTATE, message)."""
    with pytest.raises(psycopg.Error) as e, psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("insert into acct (writer, n, src) values (-2, 1, 'late')")
    return str(e.value.sqlstate), e.value.diag.message_primary or ""


def node_info(ini: Path) -> dict[str, Any]:
    return json.loads(ok(str(ini), "node-info", "--json"))


def same_rows(a: Any, b: Any, timeout: float = 60) -> None:
    wait_for("both nodes to hold the same rows", lambda: rows(a) == rows(b), timeout=timeout)


# -- the tests ---------------------------------------------------------------------------------


def test_takeover_under_load_loses_and_doubles_nothing_and_moves_back(
    tmp_path, make_db, provider_cluster, subscriber_cluster
):
    with cascade(tmp_path, make_db, provider_cluster, subscriber_cluster) as c:
        old, new = c.root, c.leaf
        # the dry run changes nothing and shows the checks and the plan
        dry = takeover(new.ini, "old", "--dry-run")
        assert "ok    new is a leaf following old" in dry and "plan:" in dry
        assert "fence old" in dry and "promote new" in dry
        assert node_info(new.ini)["node_type"] == "leaf"

        with Writers(old.db.dsn, new.db.dsn) as writers:
            wait_for("writes on old", lambda: writers.count("old") > 100, timeout=30)
            out = takeover(new.ini, "old")
            wait_for("writes on new", lambda: writers.errors or writers.count("new") > 100,
                     timeout=30)  # fmt: skip
        assert writers.errors == [], out
        assert "takeover of old by new (queue q1): done" in out
        for event in ("fence: writes on old refused", "final tick", "applied: new has tick",
                      "promoted: new is the root", "reverse link: old follows new"):  # fmt: skip
            assert event in out, out
        downtime = float(out.split("write downtime: ")[1].split("s")[0])
        assert 0 < downtime < 10

        # the fence: old refused with a message naming the new root, as a read-only error
        assert any("write to new" in m for m in writers.refusals["old"]), writers.refusals
        state, msg = fence_message(old.db)
        assert state == "25006"
        assert msg.startswith("cannot write to public.acct here: node old handed the writes of")
        assert "write to new (" in msg and new.db.name in msg
        # none acknowledged on old after the first refusal there
        first_refusal_seen = writers.count("old")
        assert first_refusal_seen == len([a for a in writers.acked if a[2] == "old"])

        # every acknowledged write is on new once; nothing refused is anywhere
        check_every_ack_once(new.db, writers)
        # the sequence went on past the old root's: no key was handed out twice
        (top,) = old.db.sql("select max(id) from acct where src = 'old'")[0]
        (first_new,) = new.db.sql("select min(id) from acct where src = 'new'")[0]
        assert first_new > top
        # the old root follows the new one: it has every write made on new
        same_rows(old.db, new.db)
        assert node_info(old.ini)["node_type"] == "branch"
        assert node_info(old.ini)["provider_node"] == "new"
        assert node_info(new.ini)["node_type"] == "root"
        new.db.sql("insert into acct (writer, n, src) values (-3, 1, 'after')")
        same_rows(old.db, new.db)
        status = status_of(str(new.ini))
        assert "new (root)" in status and "old (branch)" in status

        # a second takeover, from old, moves back under load
        with Writers(new.db.dsn, old.db.dsn, base=10) as back:
            wait_for("writes on new", lambda: back.errors or back.count("old") > 50, timeout=30)
            out = takeover(old.ini, "new")
            wait_for("writes on old", lambda: back.errors or back.count("new") > 50, timeout=30)
        assert back.errors == [] and "takeover of new by old (queue q1): done" in out
        assert node_info(old.ini)["node_type"] == "root"
        assert node_info(new.ini)["node_type"] == "branch"
        state, msg = fence_message(new.db)
        assert state == "25006" and "write to old (" in msg
        old.db.sql("insert into acct (writer, n, src) values (-4, 1, 'back')")
        same_rows(old.db, new.db)
        got = {r[0] for r in old.db.sql("select n from acct where writer = -4")}
        assert got == {1}


STEPS = ["prepared", "fenced", "final-tick", "applied", "promoted", "demoted"]


@pytest.mark.parametrize("step", STEPS)
def test_takeover_killed_at_a_step_is_explained_by_status_and_completed_by_a_rerun(
    step, tmp_path, make_db, provider_cluster, subscriber_cluster
):
    with cascade(tmp_path, make_db, provider_cluster, subscriber_cluster) as c:
        old, new = c.root, c.leaf
        with Writers(old.db.dsn, new.db.dsn) as writers:
            wait_for("writes on old", lambda: writers.errors or writers.count("old") > 30)
            # the command stops for good once `step` is recorded; then it is killed -9
            env = {**os.environ, PAUSE_ENV: step}
            proc = spawn(str(new.ini), "takeover", "old", env=env)
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert f"takeover paused after step {step}" in line
            proc.send_signal(signal.SIGKILL)
            stop(proc)  # reaped, its pipe closed
            status = status_of(str(new.ini), code=1)  # it needs attention
            assert f"switchover of old by new is at step {step}" in status, status
            assert "if its command stopped, run 'takeover old' with new's config" in status
            assert "to complete it" in status
            out = takeover(new.ini, "old")
            assert f"resumed after step {step}: done" in out, out
            wait_for("writes on new", lambda: writers.errors or writers.count("new") > 30)
        assert writers.errors == []
        check_every_ack_once(new.db, writers)
        same_rows(old.db, new.db)
        assert node_info(new.ini)["node_type"] == "root"
        assert node_info(old.ini)["provider_node"] == "new"
        assert "TAKEOVER" not in status_of(str(new.ini))


def test_dead_root_failover_then_resurrect_names_the_lost_events(
    request, tmp_path, make_db, subscriber_cluster, third_cluster
):
    if request.config.getoption("--pg-dsn"):
        pytest.skip("stops a server of its own")
    from londiste_rs.devtools.pgcluster import TempCluster

    with TempCluster("deadroot") as dead_cluster:
        old_db = make_db(dead_cluster, "old")
        new_db, sib_db = make_db(subscriber_cluster, "new"), make_db(third_cluster, "sib")
        for db in (old_db, new_db, sib_db):
            db.sql(SCHEMA)
        old_db.sql(
            "insert into acct (writer, n, src) select -1, g, 'seed' from generate_series(1, 50) g;"
            f"insert into counter select g, 0 from generate_series(0, {WRITERS - 1}) g"
        )
        old = Node("old", old_db, job_ini(tmp_path, "old", old_db.dsn))
        new = Node("new", new_db, job_ini(tmp_path, "new", new_db.dsn))
        sib = Node("sib", sib_db, job_ini(tmp_path, "sib", sib_db.dsn))
        ok(str(old.ini), "create-root", "old", old_db.dsn)
        ok(str(old.ini), "add-table", "public.acct", "public.counter")
        ok(str(old.ini), "add-seq", "public.acct_id_seq")
        # (sib first: new copies the root's member list, so it knows sib when the root is gone)
        for node in (sib, new):
            ok(str(node.ini), "create-leaf", node.name, node.db.dsn, f"--provider={old_db.dsn}")
            ok(str(node.ini), "add-table", "public.acct", "public.counter")
            ok(str(node.ini), "add-seq", "public.acct_id_seq")
        c = Cascade(tmp_path, old, new)
        try:
            c.start(old)
            c.procs["ticker new"] = spawn("ticker", str(ticker_ini(tmp_path, "new", new_db)))
            c.procs["worker new"] = spawn(str(new.ini), "worker")
            c.procs["worker sib"] = spawn(str(sib.ini), "worker")
            for node in (new, sib):
                ok(str(node.ini), "wait-sync", "--timeout", "60")
            old_db.sql(
                "insert into acct (writer, n, src) select 0, g, 'old' from generate_series(1, 20) g"
            )
            for node in (new, sib):
                ok(str(node.ini), "wait-root", "--timeout", "60")
            # the subscribers stop; the root takes 5 more writes and dies with them
            stop(c.procs.pop("worker new"))
            stop(c.procs.pop("worker sib"))
            old_db.sql(
                "insert into acct (writer, n, src) select 1, g, 'lost' from generate_series(1, 5) g"
            )
            dead_cluster.stop("immediate")

            # the old root cannot be reached: a plain takeover says to fail over
            msg = one_line_error(run_cli(str(new.ini), "takeover", "old"))
            assert "cannot connect to node old" in msg and "--dead-root" in msg
            c.procs["worker new"] = spawn(str(new.ini), "worker")
            out = takeover(new.ini, "old", "--dead-root")
            assert "failover of old by new (queue q1): done" in out, out
            assert "sib follows new from tick" in out
            assert node_info(new.ini)["node_type"] == "root"
            members = json.loads(ok(str(new.ini), "members", "--json"))
            assert {m["node_name"]: m["dead"] for m in members}["old"] is True
            assert "GRAVESTONE of node old" in status_of(str(new.ini))
            # the new root takes writes (its sequence past every replicated key) and the
            # old root's other subscriber follows it
            new_db.sql(
                "insert into acct (writer, n, src) select 2, g, 'new' from generate_series(1, 7) g"
            )
            c.procs["worker sib"] = spawn(str(sib.ini), "worker")
            wait_for("sib == new", lambda: rows(sib_db) == rows(new_db), timeout=60)
            assert new_db.sql("select count(*) from acct where src = 'lost'") == [(0,)]

            # the old root comes back (taking writes, as it believes it is the root) ...
            dead_cluster.start()
            # ... and resurrect makes it a branch of the new root, naming what never propagated
            dump = tmp_path / "lost.json"
            out = ok(str(old.ini), "resurrect", "--dump", str(dump), "--json")
            done = json.loads(out)
            assert done["new_root"] == "new" and done["lost_events"] == 5
            assert done["per_table"] == {"public.acct": {"I": 5}}
            lost = json.loads(dump.read_text())
            assert [e["ev_id"] for e in lost] == done["lost_event_ids"]
            assert {e["table"] for e in lost} == {"public.acct"}
            assert node_info(old.ini)["node_type"] == "branch"
            state, msg = fence_message(old_db)
            assert state == "25006" and "write to the root new (" in msg
            # table data not touched: the lost rows stay on the old node; new's rows arrive
            wait_for(
                "old has new's rows",
                lambda: old_db.sql("select count(*) from acct where src = 'new'") == [(7,)],
                timeout=60,
            )
            assert old_db.sql("select count(*) from acct where src = 'lost'") == [(5,)]
            # the new root's keys went past what the dead root may have handed out meanwhile
            (lowest,) = new_db.sql("select min(id) from acct where src = 'new'")[0]
            assert lowest > 10_000
            members = json.loads(ok(str(new.ini), "members", "--json"))
            assert {m["node_name"]: m["dead"] for m in members}["old"] is False
            assert "GRAVESTONE" not in status_of(str(new.ini))
        finally:
            c.stop_all()


@pytest.mark.parametrize("at_once", [False, True], ids=["one after the other", "at once"])
def test_two_sources_into_one_target_are_taken_over(
    at_once, tmp_path, make_db, provider_cluster, third_cluster, subscriber_cluster
):
    """Two roots (queues qa, qb) feed one target database, which holds one node per queue;
    each source is taken over by one command with its node's config, under load at both,
    one after the other or both at once."""
    src = {"a": make_db(provider_cluster, "ra"), "b": make_db(third_cluster, "rb")}
    target = make_db(subscriber_cluster, "merged")
    schema = {p: SCHEMA.replace("acct", f"{p}_acct").replace("counter", f"{p}_counter")
              for p in src}  # fmt: skip
    for p, db in src.items():
        db.sql(schema[p])
        db.sql(f"insert into {p}_counter select g, 0 from generate_series(0, {WRITERS - 1}) g")
        target.sql(schema[p])
    procs: list[subprocess.Popen[bytes]] = []
    roots, nodes = {}, {}
    try:
        for p, db in src.items():
            roots[p] = job_ini(tmp_path, f"r{p}", db.dsn, queue=f"q{p}")
            nodes[p] = job_ini(tmp_path, f"t{p}", target.dsn, queue=f"q{p}")
            ok(str(roots[p]), "create-root", f"r{p}", db.dsn)
            ok(str(roots[p]), "add-table", f"public.{p}_acct", f"public.{p}_counter")
            ok(str(roots[p]), "add-seq", f"public.{p}_acct_id_seq")
            ok(str(nodes[p]), "create-leaf", f"t{p}", target.dsn, f"--provider={db.dsn}")
            ok(str(nodes[p]), "add-table", f"public.{p}_acct", f"public.{p}_counter")
            ok(str(nodes[p]), "add-seq", f"public.{p}_acct_id_seq")
            procs += [spawn("ticker", str(ticker_ini(tmp_path, f"r{p}", db))),
                      spawn(str(roots[p]), "worker"), spawn(str(nodes[p]), "worker")]  # fmt: skip
        procs.append(spawn("ticker", str(ticker_ini(tmp_path, "merged", target))))
        for p in src:
            ok(str(nodes[p]), "wait-sync", "--timeout", "60")
        loads = {p: Writers(db.dsn, target.dsn, prefix=f"{p}_") for p, db in src.items()}
        with loads["a"], loads["b"]:
            for p in src:
                wait_for(
                    f"writes on r{p}", lambda p=p: loads[p].errors or loads[p].count("old") > 30
                )
            if at_once:
                running = [spawn(str(nodes[p]), "takeover", f"r{p}") for p in ("a", "b")]
                outs = [proc.communicate(120)[0].decode() for proc in running]
                assert [proc.returncode for proc in running] == [0, 0], outs
                for p, out in zip(("a", "b"), outs, strict=True):
                    assert f"takeover of r{p} by t{p} (queue q{p}): done" in out, out
            for p in ("a", "b"):  # (one after the other unless at once)
                if not at_once:
                    out = takeover(nodes[p], f"r{p}")
                    assert f"takeover of r{p} by t{p} (queue q{p}): done" in out, out
                wait_for(
                    f"writes on t{p}", lambda p=p: loads[p].errors or loads[p].count("new") > 30
                )
            if not at_once:  # qb's source went on taking writes until its own turn
                assert loads["b"].count("old") > loads["a"].count("old") // 4
        for p, db in src.items():
            assert loads[p].errors == []
            check_every_ack_once(target, loads[p])
            info = node_info(nodes[p])
            assert (info["queue_name"], info["node_type"]) == (f"q{p}", "root")
            assert node_info(roots[p])["provider_node"] == f"t{p}"
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as e:
                db.sql(f"insert into {p}_acct (writer, n, src) values (-2, 1, 'late')")
            assert f"handed the writes of queue q{p} to node t{p}" in str(e.value)
            # each old source follows its own node of the target
            wait_for(
                f"r{p} == target",
                lambda p=p, db=db: (
                    db.sql(f"select * from {p}_acct order by id")
                    == target.sql(f"select * from {p}_acct order by id")
                ),
                timeout=60,
            )
        # the target's tables carry the capture of their own queue only
        triggers = target.sql(
            "select tgrelid::regclass::text, tgname from pg_trigger where tgname like"
            " '_londiste_rs_%' and tgname not like '%_truncate' order by 1"
        )
        assert triggers == [
            ("a_acct", "_londiste_rs_qa"),
            ("a_counter", "_londiste_rs_qa"),
            ("b_acct", "_londiste_rs_qb"),
            ("b_counter", "_londiste_rs_qb"),
        ]
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                stop(proc)


def test_preflight_refuses_with_one_line_per_problem_and_changes_nothing(
    tmp_path, make_db, provider_cluster, subscriber_cluster
):
    with cascade(tmp_path, make_db, provider_cluster, subscriber_cluster) as c:
        old, new = c.root, c.leaf
        old.db.sql("create table extra (id int primary key); create sequence spare")
        ok(str(old.ini), "add-table", "public.extra")
        ok(str(old.ini), "add-seq", "public.spare")
        ok(str(new.ini), "pause")
        for args in ((), ("--dry-run",)):
            out = run_cli(str(new.ini), "takeover", "old", *args)
            assert out.returncode == 2, out.stdout + out.stderr
            text = out.stderr if not args else out.stdout
            assert "Traceback" not in out.stderr
            assert "table public.extra is replicated by old but not by new; add it on new" in text
            assert "sequence public.spare is replicated by old but not by new" in text
            assert "the worker of new is paused; resume it" in text
        refused = [ln for ln in out.stderr.splitlines() if ln.strip()]
        problems = run_cli(str(new.ini), "takeover", "old").stderr.strip().splitlines()
        assert len(problems) == 3 and all(
            p.startswith("ERROR: takeover refused: ") for p in problems
        )
        assert refused == []  # the dry run reports on stdout
        # nothing changed: new is a leaf without a queue, old takes writes
        assert node_info(new.ini)["node_type"] == "leaf"
        assert new.db.sql("select count(*) from londiste_rs.queue") == [(0,)]
        old.db.sql("insert into acct (writer, n, src) values (-5, 1, 'still')")
        assert "TAKEOVER" not in status_of(str(new.ini))

        # the tables and sequences in place, but the worker stopped: the lag probe refuses
        ok(str(old.ini), "remove-table", "public.extra")
        ok(str(old.ini), "remove-seq", "public.spare")
        ok(str(new.ini), "resume")
        stop(c.procs.pop("worker new"))
        msg = one_line_error(run_cli(str(new.ini), "takeover", "old", "--max-lag", "1"))
        assert "new did not apply a fresh tick" in msg and "is the worker of new running?" in msg


def test_a_writer_that_does_not_finish_stops_the_takeover_and_the_fence_is_lifted(
    tmp_path, make_db, provider_cluster, subscriber_cluster
):
    with cascade(tmp_path, make_db, provider_cluster, subscriber_cluster) as c:
        old, new = c.root, c.leaf
        new_ini = job_ini(tmp_path, "new", new.db.dsn, lock_timeout=1)
        with psycopg.connect(old.db.dsn) as idle:  # a transaction left open after a write
            idle.execute("insert into acct (writer, n, src) values (-6, 1, 'open')")
            started = time.monotonic()
            msg = one_line_error(run_cli(str(new_ini), "takeover", "old"))
            assert time.monotonic() - started < 30
            assert "did not end within lock_timeout 1s (pid" in msg
            assert "the fence was lifted, old takes writes again" in msg
            idle.commit()  # its write was captured before the fence: it commits, and replicates
        old.db.sql("insert into acct (writer, n, src) values (-6, 2, 'after')")
        assert node_info(new.ini)["node_type"] == "leaf"
        assert "TAKEOVER" not in status_of(str(new.ini))
        wait_for(
            "both writes on new",
            lambda: new.db.sql("select n from acct where writer = -6 order by n") == [(1,), (2,)],
        )

        # a takeover stopped after the fence is called off with --abort
        env = {**os.environ, PAUSE_ENV: "fenced"}
        proc = spawn(str(new.ini), "takeover", "old", env=env)
        assert proc.stdout is not None
        assert "paused after step fenced" in proc.stdout.readline().decode()
        proc.send_signal(signal.SIGKILL)
        stop(proc)  # reaped, its pipe closed
        assert fence_message(old.db)[0] == "25006"
        out = takeover(new.ini, "old", "--abort")
        assert "takeover aborted: old takes writes again" in out
        old.db.sql("insert into acct (writer, n, src) values (-6, 3, 'aborted')")
        assert "TAKEOVER" not in status_of(str(new.ini))
        wait_for(
            "the third write on new",
            lambda: new.db.sql("select count(*) from acct where writer = -6") == [(3,)],
        )


def test_takeover_all_moves_the_old_roots_other_subscribers(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    with cascade(tmp_path, make_db, provider_cluster, subscriber_cluster) as c:
        old, new = c.root, c.leaf
        sib_db = make_db(third_cluster, "sib")
        sib_db.sql(SCHEMA)
        sib = Node("sib", sib_db, job_ini(tmp_path, "sib", sib_db.dsn))
        ok(str(sib.ini), "create-leaf", "sib", sib_db.dsn, f"--provider={old.db.dsn}")
        ok(str(sib.ini), "add-table", "public.acct", "public.counter")
        c.procs["worker sib"] = spawn(str(sib.ini), "worker")
        ok(str(sib.ini), "wait-sync", "--timeout", "60")
        old.db.sql(
            "insert into acct (writer, n, src) select 7, g, 'old' from generate_series(1, 9) g"
        )
        out = takeover(new.ini, "old", "--all")
        assert "sib follows new from tick" in out, out
        assert node_info(sib.ini)["provider_node"] == "new"
        # new knows every member old knew (sib was created after new: the root knew it)
        assert "sib" in {m["node_name"] for m in json.loads(ok(str(new.ini), "members", "--json"))}
        assert old.db.sql("select count(*) from londiste_rs.subscriber_info") == [(0,)]
        subs = new.db.sql("select subscriber_node from londiste_rs.subscriber_info order by 1")
        assert subs == [("old",), ("sib",)]
        new.db.sql(
            "insert into acct (writer, n, src) select 8, g, 'new' from generate_series(1, 4) g"
        )
        wait_for("sib == new", lambda: rows(sib_db) == rows(new.db), timeout=60)
        same_rows(old.db, new.db)


def test_takeover_of_a_branch_alive_then_dead(
    tmp_path, make_db, provider_cluster, subscriber_cluster, third_cluster
):
    """londiste3's takeover of a branch (provider changes, no fence): b2 takes the place of
    its provider b1 (b1 and b1's leaf follow b2), then b1 takes over b2 after b2 is gone."""
    dbs = {
        "r": make_db(provider_cluster, "r"),
        "b1": make_db(subscriber_cluster, "b1"),
        "b2": make_db(third_cluster, "b2"),
        "s": make_db(provider_cluster, "s"),
    }
    for db in dbs.values():
        db.sql(SCHEMA)
    ini = {n: job_ini(tmp_path, n, db.dsn) for n, db in dbs.items()}
    ok(str(ini["r"]), "create-root", "r", dbs["r"].dsn)
    ok(str(ini["r"]), "add-table", "public.acct", "public.counter")
    procs = {"ticker": spawn("ticker", str(ticker_ini(tmp_path, "r", dbs["r"])))}
    try:
        for name, kind, provider in (("b1", "branch", "r"), ("b2", "branch", "b1"),
                                     ("s", "leaf", "b1")):  # fmt: skip
            ok(str(ini[name]), f"create-{kind}", name, dbs[name].dsn,
               f"--provider={dbs[provider].dsn}")  # fmt: skip
            ok(str(ini[name]), "add-table", "public.acct", "public.counter")
            procs[name] = spawn(str(ini[name]), "worker")
            ok(str(ini[name]), "wait-sync", "--timeout", "60")

        def provider(name: str) -> str:
            return str(node_info(ini[name])["provider_node"])

        def converged(*names: str) -> None:
            for n in names:
                wait_for(f"{n} == r", lambda n=n: rows(dbs[n]) == rows(dbs["r"]), timeout=60)

        dbs["r"].sql(
            "insert into acct (writer, n, src) select 1, g, 'r' from generate_series(1, 5) g"
        )
        out = takeover(ini["b2"], "b1", "--all")
        assert "takeover of b1 by b2 (queue q1): done" in out, out
        assert (provider("b2"), provider("b1"), provider("s")) == ("r", "b2", "b2")
        dbs["r"].sql(
            "insert into acct (writer, n, src) select 2, g, 'r' from generate_series(1, 5) g"
        )
        converged("b2", "b1", "s")

        # b2 is gone for good: b1 takes its place, b2's leaf moves under b1
        stop(procs.pop("b2"))
        dbs["b2"].cluster.drop_database(dbs["b2"].name)
        msg = one_line_error(run_cli(str(ini["b1"]), "takeover", "b2"))
        assert "--dead-branch" in msg
        out = takeover(ini["b1"], "b2", "--dead-branch")
        assert "takeover of b2 by b1 (queue q1): done" in out, out
        assert (provider("b1"), provider("s")) == ("r", "b1")
        dead = {
            m["node_name"]: m["dead"] for m in json.loads(ok(str(ini["r"]), "members", "--json"))
        }
        assert dead["b2"] is True
        dbs["r"].sql(
            "insert into acct (writer, n, src) select 3, g, 'r' from generate_series(1, 5) g"
        )
        converged("b1", "s")
        subs = dbs["r"].sql("select subscriber_node from londiste_rs.subscriber_info order by 1")
        assert subs == [("b1",)]
    finally:
        for proc in procs.values():
            with contextlib.suppress(Exception):
                stop(proc)
