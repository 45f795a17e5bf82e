-- londiste_rs.forget_after_tick(i_queue text, i_tick_id int8)
--   Cuts this node's queue back to its tick i_tick_id: the events of transactions that
--   committed after it (lost_events) and the ticks after it are deleted, and the tick sequence
--   set back, so the queue can go on with another node's ticks after i_tick_id (a resurrected
--   old root that becomes a branch of the new one). Table data is not touched. Call it with
--   the queue's capture fenced and its writers awaited (_await_writers).
--   Returns: the number of events deleted.
create or replace function londiste_rs.forget_after_tick(i_queue text, i_tick_id int8)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    snap pg_snapshot;
    n int8;
begin
    select t.tick_snapshot into snap from londiste_rs.tick t
     where t.tick_queue = q.queue_id and t.tick_id = i_tick_id;
    if not found then
        raise exception 'tick % of queue % is no longer kept here', i_tick_id, i_queue
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    execute format('delete from londiste_rs.%I e'
                   ' where not pg_catalog.pg_visible_in_snapshot(e.ev_txid, $1)',
                   'event_' || q.queue_id) using snap;
    get diagnostics n = row_count;
    delete from londiste_rs.tick where tick_queue = q.queue_id and tick_id > i_tick_id;
    perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass,
                   i_tick_id);
    return n;
end $$;
