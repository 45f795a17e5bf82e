-- londiste_rs._cur_table(i_queue_id int4)
--   Returns: the number of the event table writers use now, read without MVCC from the
--   sequence event_<id>_cur; a negative value -1-n means inserts are disabled (table n).
create or replace function londiste_rs._cur_table(i_queue_id int4)
returns int8 language sql stable
set search_path = pg_catalog, pg_temp as $$
    select pg_sequence_last_value(format('londiste_rs.%I', 'event_' || i_queue_id || '_cur')::regclass)
$$;
