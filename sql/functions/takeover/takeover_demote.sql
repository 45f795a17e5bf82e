-- londiste_rs.takeover_demote(i_queue text, i_new_root text, i_last_tick int8,
--                             i_tick_time timestamptz, i_note text)
--   On the old root, fenced, whose events up to tick i_last_tick the new root has: makes this
--   node a branch following i_new_root from that tick, in one transaction. Its queue stays
--   fenced (the application's writes are refused with i_note, which names the new root) and
--   is ticked with the new root's tick ids by this node's worker from now on, as on any
--   branch; its tables stay 'ok' and receive the new root's writes. The takeover_state row
--   says 'demoted'. The caller also removes the new root from this node's subscribers.
--   Returns: nothing.
create or replace function londiste_rs.takeover_demote(
    i_queue text, i_new_root text, i_last_tick int8, i_tick_time timestamptz, i_note text)
returns void language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
    update londiste_rs.node_info set node_type = 'branch' where queue_name = i_queue;
    if not found then
        raise exception 'this database is not a node of queue %', i_queue
            using errcode = 'undefined_object';
    end if;
    update londiste_rs.local_state
       set provider_node = i_new_root, last_tick_id = i_last_tick, last_tick_time = i_tick_time,
           cur_error = null, error_time = null
     where queue_name = i_queue;
    perform londiste_rs._fence_queue(i_queue, i_note);
    update londiste_rs.takeover_state set step = 'demoted', step_at = now()
     where queue_name = i_queue;
end $$;
