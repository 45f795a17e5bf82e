-- londiste_rs.takeover_final_tick(i_queue text, i_note text)
--   On the old root, after the fence (_fence_queue): puts the statement trigger refusing the
--   application's writes with i_note on its tables (_fence_tables, which waits for the
--   transactions still writing them), waits for the rest (_await_writers), then makes the
--   final tick and records it in takeover_state, in this one transaction. Lock waits follow the caller's
--   lock_timeout. Run again, it returns the recorded tick without ticking.
--   Returns: the final tick's id.
create or replace function londiste_rs.takeover_final_tick(i_queue text, i_note text)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    st londiste_rs.takeover_state;
    tick int8;
begin
    select * into st from londiste_rs.takeover_state where queue_name = i_queue for update;
    if not found or st.node_role <> 'old' then
        raise exception 'queue % is not being taken over from this node', i_queue
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if st.last_tick is not null then
        return st.last_tick;
    end if;
    if londiste_rs._cur_table(q.queue_id) < 100 then
        raise exception 'queue % is not fenced; fence it first', i_queue
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    perform londiste_rs._fence_tables(i_queue, i_note);
    perform londiste_rs._await_writers(q.queue_id);
    q := londiste_rs._queue(i_queue, true);
    tick := londiste_rs._tick(q.queue_id,
        nextval(format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass),
        now(), londiste_rs._event_seq(q.queue_id));
    if tick is null then  -- nothing happened since the last tick: that one is the final tick
        select max(t.tick_id) into tick from londiste_rs.tick t where t.tick_queue = q.queue_id;
    end if;
    update londiste_rs.takeover_state set last_tick = tick, step = 'final-tick', step_at = now()
     where queue_name = i_queue;
    return tick;
end $$;
