-- 0020_takeover: the write fence and the record of a takeover (docs/internals.md §10).
--
-- A fenced queue's capture refuses the application's writes with queue_fence_note, which
-- says where writes go now. The fence itself is the current-table sequence event_<id>_cur
-- (read without MVCC by every capture trigger, so it costs no extra read per row): a value
-- 100 + n means "fenced, table n" (as -1 - n means "inserts disabled, table n"). A fenced
-- queue still rotates and still takes a branch's re-queued events; only capture refuses.
alter table londiste_rs.queue add column queue_fence_note text;

-- One takeover per queue, on each node taking part: what this node is in it (the new root or
-- the old one), the step reached, the old root's final tick, and the timeline so far. A
-- takeover killed at any step is explained by `status` from this row and completed by running
-- the same command again; the row stays after the end as the record of the last takeover.
create table londiste_rs.takeover_state (
    queue_name  text primary key references londiste_rs.node_info on delete cascade,
    node_role   text not null check (node_role in ('new', 'old')),
    mode        text not null check (mode in ('switchover', 'failover', 'resurrect', 'branch')),
    old_node    text not null,
    new_node    text not null,
    step        text not null,
    last_tick   int8,
    started_at  timestamptz not null default now(),
    step_at     timestamptz not null default now(),
    -- [[event, unix time on the host that ran the command], ...]
    timeline    jsonb not null default '[]'
);
