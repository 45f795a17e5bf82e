-- londiste_rs._event_seq(i_queue_id int4)
--   Returns: the last event id handed out by the queue's event id sequence (0 before any).
create or replace function londiste_rs._event_seq(i_queue_id int4)
returns int8 language sql stable
set search_path = pg_catalog, pg_temp as $$
    select coalesce(pg_sequence_last_value(
        format('londiste_rs.%I', 'event_' || i_queue_id || '_id_seq')::regclass), 0)
$$;
