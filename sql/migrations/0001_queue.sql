-- 0001_queue: the queue (PgQ semantics, our own code).
-- Per-queue objects (the event tables and their sequences) are made by create_queue();
-- they all take their shape from event_template.

create table londiste_rs.queue (
    queue_id                 serial primary key,
    queue_name               text not null unique,
    -- number of rotating event tables, fixed at create_queue time
    queue_ntables            int4 not null default 3 check (queue_ntables between 2 and 64),
    -- the table writers use is the sequence londiste_rs.event_<id>_cur (read without MVCC, so a
    -- writer whose snapshot predates a switch still writes where rotation expects it); this
    -- column mirrors it once a switch is complete (step2)
    queue_cur_table          int4 not null default 0,
    queue_rotation_period    interval not null default '2 hours',
    -- txid of the transaction that switched tables (step1)
    queue_switch_step1       xid8 not null default pg_current_xact_id(),
    -- every transaction that wrote into the previous table has a txid below this (step2);
    -- NULL while a switch is not complete
    queue_switch_step2       xid8 default pg_current_xact_id(),
    queue_switch_time        timestamptz not null default now(),
    queue_external_ticker    boolean not null default false,
    queue_disable_insert     boolean not null default false,
    queue_ticker_paused      boolean not null default false,
    queue_ticker_max_count   int4 not null default 500 check (queue_ticker_max_count > 0),
    queue_ticker_max_lag     interval not null default '3 seconds',
    queue_ticker_idle_period interval not null default '1 minute',
    -- extra maintenance functions, each called as func(queue_name) by maint_operations()
    queue_extra_maint        text[]
);

-- The columns of every event table (internals §2).
create table londiste_rs.event_template (
    ev_id      int8 not null,
    ev_time    timestamptz not null default now(),
    ev_txid    xid8 not null default pg_current_xact_id(),
    ev_owner   int4,
    ev_retry   int4,
    ev_type    text,
    ev_data    bytea,
    ev_extra1  text,
    ev_extra2  bytea,
    ev_extra3  text,
    ev_extra4  text
);

create table londiste_rs.tick (
    tick_queue     int4 not null references londiste_rs.queue on delete cascade,
    tick_id        int8 not null,
    tick_time      timestamptz not null default now(),
    tick_snapshot  pg_snapshot not null default pg_current_snapshot(),
    -- last value of the queue's event id sequence when the tick was made
    tick_event_seq int8 not null,
    primary key (tick_queue, tick_id)
);

create table londiste_rs.consumer (
    co_id   serial primary key,
    co_name text not null unique
);

create table londiste_rs.subscription (
    sub_id        serial primary key,
    sub_queue     int4 not null references londiste_rs.queue on delete cascade,
    sub_consumer  int4 not null references londiste_rs.consumer,
    sub_last_tick int8 not null,
    sub_active    timestamptz not null default now(),
    sub_batch     int8 unique,
    sub_next_tick int8,
    unique (sub_queue, sub_consumer)
);

create sequence londiste_rs.batch_id_seq;

-- Events a consumer postponed (event_retry); maint_retry_events() puts due ones back into the
-- queue with ev_owner set, so only that consumer sees them again.
create table londiste_rs.retry_queue (
    ev_retry_after timestamptz not null,
    ev_queue       int4 not null references londiste_rs.queue on delete cascade,
    like londiste_rs.event_template,
    primary key (ev_owner, ev_id),
    foreign key (ev_owner) references londiste_rs.subscription (sub_id) on delete cascade
);
create index retry_queue_due on londiste_rs.retry_queue (ev_retry_after);
