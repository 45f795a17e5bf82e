-- Which tables and sequences a queue carries, and on each node the state of each table.
-- On a root every attached table is local and 'ok'. On a subscriber merge_state follows
-- londiste3: NULL (needs its initial copy), 'in-copy', 'catching-up', 'wanna-sync:T',
-- 'do-sync:T', 'ok'.

create table londiste_rs.table_info (
    queue_name      text not null,
    table_name      text not null,   -- global name, as in ev_extra1 (schema.table, quoted as needed)
    local           boolean not null default true,
    merge_state     text,
    -- the snapshot of the initial copy: events of transactions visible in it are already in
    -- the copied rows and must be skipped
    custom_snapshot pg_snapshot,
    dest_table      text,            -- local table when it differs from table_name
    table_attrs     text,
    added_at        timestamptz not null default now(),
    primary key (queue_name, table_name)
);

create table londiste_rs.seq_info (
    queue_name text not null,
    seq_name   text not null,
    local      boolean not null default true,
    last_value int8,
    primary key (queue_name, seq_name)
);
