-- londiste_rs.lost_events(i_queue text, i_tick_id int8)
--   The events of this node's queue that are not in its tick i_tick_id: those of transactions
--   that committed after it. On an old root that a failover left behind (takeover
--   --dead-root) and that comes back (resurrect), with i_tick_id the last tick the new root got
--   from it, these are the writes that never reached the new root. Call it with the queue's
--   capture fenced and its writers awaited (_await_writers), so the list is complete.
--   Returns: one row per event, by ev_id.
create or replace function londiste_rs.lost_events(i_queue text, i_tick_id int8)
returns table (ev_id int8, ev_time timestamptz, ev_txid xid8, ev_type text, ev_extra1 text,
               ev_data bytea, ev_extra2 bytea)
language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    snap pg_snapshot;
begin
    select t.tick_snapshot into snap from londiste_rs.tick t
     where t.tick_queue = q.queue_id and t.tick_id = i_tick_id;
    if not found then
        raise exception 'tick % of queue % is no longer kept here; the events after it cannot be listed',
            i_tick_id, i_queue using errcode = 'object_not_in_prerequisite_state';
    end if;
    return query execute format(
        'select e.ev_id, e.ev_time, e.ev_txid, e.ev_type, e.ev_extra1, e.ev_data, e.ev_extra2'
        ' from londiste_rs.%I e where not pg_catalog.pg_visible_in_snapshot(e.ev_txid, $1)'
        ' order by e.ev_id', 'event_' || q.queue_id) using snap;
end $$;
