-- londiste_rs.takeover_promote(i_queue text, i_last_tick int8, i_tick_time timestamptz,
--                              i_event_seq int8)
--   On the new root, which has applied the old root's tick i_last_tick (its final tick, or in
--   a failover the last one it got): makes this node the root of the queue in one
--   transaction. Its queue gets tick i_last_tick when it has not (a leaf's queue, made by the
--   takeover, or a branch whose worker had not ticked yet) and is ticked by the ticker from
--   now on; its tables' copy snapshots are dropped (a root applies nothing). The fence its
--   capture had while it followed the old root stays: the caller lifts it (_unfence_queue) as
--   the last statement of the same transaction, after registering the old root as its
--   subscriber (which needs this node to be the root). The takeover_state row says 'promoted'.
--   Returns: nothing.
create or replace function londiste_rs.takeover_promote(
    i_queue text, i_last_tick int8, i_tick_time timestamptz, i_event_seq int8)
returns void language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    tick_seq regclass := format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass;
    id_seq regclass := format('londiste_rs.%I', 'event_' || q.queue_id || '_id_seq')::regclass;
begin
    update londiste_rs.node_info set node_type = 'root' where queue_name = i_queue;
    if not found then
        raise exception 'this database is not a node of queue %', i_queue
            using errcode = 'undefined_object';
    end if;
    update londiste_rs.local_state set provider_node = null where queue_name = i_queue;
    if not exists (select 1 from londiste_rs.tick
                    where tick_queue = q.queue_id and tick_id >= i_last_tick) then
        perform londiste_rs.ticker(i_queue, i_last_tick, i_tick_time, i_event_seq);
    end if;
    if i_last_tick > coalesce(pg_sequence_last_value(tick_seq), 0) then
        perform setval(tick_seq, i_last_tick);
    end if;
    if i_event_seq > londiste_rs._event_seq(q.queue_id) then
        perform setval(id_seq, i_event_seq);
    end if;
    update londiste_rs.queue set queue_external_ticker = false where queue_id = q.queue_id;
    update londiste_rs.table_info set custom_snapshot = null, copy_tick = null
     where queue_name = i_queue;
    update londiste_rs.takeover_state set step = 'promoted', step_at = now()
     where queue_name = i_queue;
end $$;
