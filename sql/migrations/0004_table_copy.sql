-- The initial copy's figures and outcome, per table on a subscriber, written by the worker
-- while it copies (so `tables` and `status` can show them during a long copy).
-- merge_state gains 'failed': the copy failed with copy_error; `resync` sets it back to NULL.
-- table_attrs (londiste3's urlencoded attributes) may hold skip_truncate=1.

alter table londiste_rs.table_info
    add column copy_rows       int8,        -- rows copied so far
    add column copy_bytes      int8,        -- COPY bytes passed so far
    add column copy_total_rows int8,        -- the provider's estimate of the table's rows
    add column copy_seconds    float8,      -- time spent so far (all of it, once done)
    add column copy_started    timestamptz,
    add column copy_error      text;        -- why the last copy failed (merge_state 'failed')

-- Indexes and foreign keys the copy dropped to load faster (and to empty a table other tables
-- reference), as [{kind, name, table, restore}]: restored after the copy, and after a crash
-- by the next copy of the table.
alter table londiste_rs.table_info add column dropped_ddl jsonb;
