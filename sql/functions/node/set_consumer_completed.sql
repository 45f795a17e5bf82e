-- set_consumer_completed(queue, tick_id, tick_time): records that the local worker applied
-- every event up to tick_id. Runs in the same transaction as the applied rows (exactly once).
create or replace function londiste_rs.set_consumer_completed(
    i_queue text, i_tick_id int8, i_tick_time timestamptz)
returns void language sql
set search_path = pg_catalog, pg_temp as $$
    update londiste_rs.local_state
       set last_tick_id = i_tick_id, last_tick_time = i_tick_time, last_apply_time = now(),
           cur_error = null, error_time = null
     where queue_name = i_queue;
$$;
