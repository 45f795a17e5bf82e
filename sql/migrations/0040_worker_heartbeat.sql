-- 0040_worker_heartbeat: the worker's sign of life (issue 16), so `status` can tell a running
-- worker from a dead one across machines (not a pid check). The worker writes its row every
-- `heartbeat_period` seconds from a thread and a connection of its own
-- (replication/heartbeat.py), also while a long batch or copy runs; a row whose beat_at is
-- more than a few periods old (database time both) belongs to a worker that died or lost
-- its database. stopped_at is set when the worker stops cleanly. A table of its own, not
-- local_state: the apply transaction holds local_state's row until it commits, which would
-- hold up the beat.
create table londiste_rs.worker_heartbeat (
    queue_name     text primary key references londiste_rs.node_info on delete cascade,
    worker_pid     int4 not null,
    worker_host    text not null,
    started_at     timestamptz not null,
    beat_at        timestamptz not null,
    beat_period    interval not null,
    stopped_at     timestamptz,
    -- what the worker's loop does (idle, working, retrying) and since when
    activity       text,
    activity_since timestamptz
);
