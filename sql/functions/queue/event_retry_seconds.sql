-- londiste_rs.event_retry(i_batch_id int8, i_ev_id int8, i_retry_seconds int4)
--   event_retry with a delay in seconds from now.
--   Returns: 1, or 0 when the event was already postponed in this batch.
create or replace function londiste_rs.event_retry(
    i_batch_id int8, i_ev_id int8, i_retry_seconds int4)
returns int4 language sql
set search_path = pg_catalog, pg_temp as $$
    select londiste_rs.event_retry(i_batch_id, i_ev_id,
                                   now() + make_interval(secs => i_retry_seconds))
$$;
