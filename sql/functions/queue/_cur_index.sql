-- londiste_rs._cur_index(i_cur int8)
--   The event table number a value of the current-table sequence event_<id>_cur stands for:
--   n as such, -1 - n while inserts are disabled, 100 + n while a takeover fences the queue's
--   capture (_fence_queue).
--   Returns: the table number (0 .. ntables - 1).
create or replace function londiste_rs._cur_index(i_cur int8)
returns int4 language sql immutable
set search_path = pg_catalog, pg_temp as $$
    select (case when i_cur < 0 then -1 - i_cur
                 when i_cur >= 100 then i_cur - 100
                 else i_cur end)::int4
$$;
