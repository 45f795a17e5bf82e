"""resurrect: an old root that a failover (`takeover --dead-root`) left behind is back; it
becomes a branch of the new root (londiste3's `resurrect`, OPERATIONS-REFERENCE §1.5). Run
with the old root's config:

1. the new root is found among the members: the reachable root holding the consumer
   `OLD.gravestone` (or, on a rerun, OLD's own consumer) at tick G, the last tick it got from
   this node;
2. fenced: this node's capture refuses the application's writes at once, naming the new root
   (it was taking writes nobody else sees);
3. in one transaction here, once the writers in flight ended: the events committed after
   tick G are listed (they never reached the new root: written to a JSON file, counted per
   table and named by id), then removed from the queue with the ticks after G; this node
   becomes a branch of the new root from tick G. Table data is not touched: the rows those
   events wrote stay here (compare and repair set them to the new root's);
4. the new root registers this node at G (the gravestone goes), every reachable member lists
   it alive again.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from londiste_rs.cascade.walk import reach_members
from londiste_rs.config import JobConfig
from londiste_rs.errors import LondisteError, UsageError
from londiste_rs.operations.takeover import note_branch
from londiste_rs.pg.db import connect
from londiste_rs.pg.locking import set_lock_timeout
from londiste_rs.store import node as store_node
from londiste_rs.store import queue as store_queue
from londiste_rs.store import takeover as store_takeover
from londiste_rs.store.node import get_node_info, require_node
from londiste_rs.store.schema import install
from londiste_rs.store.takeover import LostEvent

Conn = psycopg.Connection[Any]


@dataclass
class Resurrected:
    queue: str
    node: str
    new_root: str
    tick: int
    lost: list[LostEvent] = field(default_factory=list)
    dump: Path | None = None
    notes: list[str] = field(default_factory=list)

    def per_table(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for e in self.lost:
            out.setdefault(e.table or "(other events)", Counter())[e.ev_type] += 1
        return out


def resurrect(cfg: JobConfig, dump: Path | None = None) -> Resurrected:
    queue = cfg.queue_name
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(connect(cfg.db, autocommit=True, what="node database"))
        info = require_node(conn, cfg, verb="resurrect")
        me = info.node_name
        install(conn, lock_timeout=cfg.lock_timeout)
        state = store_takeover.get_state(conn, queue)
        running = state is not None and state.mode == "resurrect" and not state.finished
        if info.node_type != "root" and not running:
            raise UsageError(
                f"resurrect is for an old root that a failover left behind; {me} is a "
                f"{info.node_type} of queue {queue}"
            )
        conns, failed = reach_members(cfg, conn, stack)
        found = None
        for name, other in sorted(conns.items()):
            if name == me:
                continue
            oinfo = get_node_info(other, queue)
            if oinfo is None or oinfo.node_type != "root":
                continue
            tick = store_takeover.consumer_tick(other, queue, store_takeover.gravestone(me))
            if tick is None and store_takeover.subscriber_consumer(other, queue, me) is not None:
                tick = store_takeover.consumer_tick(other, queue, info.worker_name)
            if tick is not None:
                found = (name, other, tick)
                break
        if found is None:
            unreached = "; ".join(f"{n}: {w}" for n, w in sorted(failed.items()))
            raise LondisteError(
                f"no reachable root of queue {queue} holds the gravestone of {me} (consumer "
                f"{store_takeover.gravestone(me)}): was it failed over with 'takeover {me} "
                f"--dead-root'?{' Not reached: ' + unreached if unreached else ''}"
            )
        new_name, new, tick = found
        where = next((m.location for m in store_node.members(conn, queue) if m.name == new_name),
                     None)  # fmt: skip
        note = note_branch(queue, me, new_name, where)
        done = Resurrected(queue, me, new_name, tick)
        if info.node_type == "root":
            with conn.transaction():
                store_takeover.announce_fence(conn, queue, note)
            at = time.time()
            with conn.transaction():
                if not running:
                    store_takeover.begin(
                        conn, queue, "old", "resurrect", me, new_name, "fenced", at
                    )
                store_takeover.fence(conn, queue, note)
            with new.transaction():
                store_node.register_location(new, queue, me, info.node_location or cfg.db)
                store_node.register_subscriber(new, queue, me, info.worker_name, tick)
                store_queue.unregister_consumer(new, queue, store_takeover.gravestone(me))
            done.lost = _cut_back(cfg, conn, new_name, tick, note, dump, done)
        for name, other in conns.items():
            try:
                store_node.register_location(other, queue, me, info.node_location or cfg.db)
            except psycopg.Error:
                done.notes.append(f"{name}: could not mark {me} alive")
            if name not in (me, new_name):
                minfo = get_node_info(other, queue)
                if minfo is not None and minfo.provider_node != me:
                    store_node.unregister_subscriber(conn, queue, name)
        with conn.transaction():
            store_takeover.record(conn, queue, "done", "done", time.time())
        for name, why in sorted(failed.items()):
            done.notes.append(f"member {name} not reached ({why}): it still lists {me} dead")
        return done


def _cut_back(
    cfg: JobConfig, conn: Conn, new_name: str, tick: int, note: str, dump: Path | None,
    done: Resurrected,
) -> list[LostEvent]:  # fmt: skip
    """In one transaction: the lost events listed (and written to `dump`), removed, and this
    node demoted to a branch of `new_name` from `tick`."""
    queue = cfg.queue_name
    deadline = time.monotonic() + cfg.lock_timeout
    while True:
        try:
            with conn.transaction():
                set_lock_timeout(conn, max(deadline - time.monotonic(), 0.05))
                store_takeover.fence_tables(conn, queue, note)
                store_takeover.await_writers(conn, queue)
                lost = store_takeover.lost_events(conn, queue, tick)
                if lost:
                    done.dump = _write(dump or Path(f"resurrect-lost-events-{queue}.json"), lost)
                store_takeover.forget_after_tick(conn, queue, tick)
                t = store_queue.get_tick(conn, queue, tick)
                assert t is not None
                store_takeover.demote(conn, queue, new_name, tick, t.time, note)
                store_takeover.record(conn, queue, None, "demoted", time.time(), last_tick=tick)
            return lost
        except (pgerrors.LockNotAvailable, pgerrors.DeadlockDetected):
            if time.monotonic() >= deadline:
                raise LondisteError(
                    f"resurrect: transactions still writing the replicated tables did not end "
                    f"within lock_timeout {cfg.lock_timeout:g}s (writes stay refused); end them "
                    "and run resurrect again"
                ) from None


def _write(path: Path, lost: list[LostEvent]) -> Path:
    rows = [
        {
            "ev_id": e.ev_id,
            "ev_time": e.ev_time.isoformat(),
            "ev_txid": e.ev_txid,
            "ev_type": e.ev_type,
            "table": e.table,
            "data_hex": None if e.data is None else bytes(e.data).hex(),
            "old_key_hex": None if e.old_key is None else bytes(e.old_key).hex(),
        }
        for e in lost
    ]
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path.absolute()
