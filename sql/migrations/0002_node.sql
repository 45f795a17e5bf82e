-- Nodes of a cascade (root, branch, leaf), the members each node knows, the subscribers a
-- provider serves and, on every node, its own worker's position. One row set per queue, so one
-- database can be a node of several queues (several roots feeding one subscriber).

-- Every member of the cascade and where to reach it (a connection string without secrets
-- beyond what the operator wrote).
create table londiste_rs.node_location (
    queue_name    text not null,
    node_name     text not null,
    node_location text not null,
    dead          boolean not null default false,
    primary key (queue_name, node_name)
);

-- This database's node for a queue.
create table londiste_rs.node_info (
    queue_name  text primary key,
    node_type   text not null check (node_type in ('root', 'branch', 'leaf')),
    node_name   text not null,
    worker_name text not null,
    created_at  timestamptz not null default now()
);

-- The local worker's state: which provider it follows, the last tick whose events are applied
-- here (written in the same transaction as the rows: exactly once), and what the operator sees.
create table londiste_rs.local_state (
    queue_name      text primary key references londiste_rs.node_info on delete cascade,
    consumer_name   text not null,
    provider_node   text,
    last_tick_id    int8,
    last_tick_time  timestamptz,
    last_apply_time timestamptz,
    paused          boolean not null default false,
    uptodate        boolean not null default true,
    cur_error       text,
    error_time      timestamptz
);

-- On a provider: the nodes that follow it, each through one consumer of the queue.
create table londiste_rs.subscriber_info (
    queue_name      text not null,
    subscriber_node text not null,
    consumer_name   text not null,
    created_at      timestamptz not null default now(),
    primary key (queue_name, subscriber_node)
);
