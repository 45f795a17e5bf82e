-- 0030_applied_execute: the execute files applied on this node (londiste3's applied_execute),
-- per queue. `execute` on the root and the EXECUTE event on every subscriber look here first:
-- a file already recorded is not run again (on the root unless --force). `outcome` says
-- what was done with it here: its statements ran, it was not needed (its header attributes
-- did not match this node), or it was skipped by hand (execute --skip). The rows go with the
-- node (drop-node).
create table londiste_rs.applied_execute (
    queue_name    text not null references londiste_rs.node_info on delete cascade,
    execute_file  text not null,
    execute_time  timestamptz not null default now(),
    execute_sql   text not null,
    execute_attrs text,
    outcome       text not null check (outcome in ('executed', 'not needed', 'skipped')),
    primary key (queue_name, execute_file)
);
