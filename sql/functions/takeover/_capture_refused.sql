-- londiste_rs._capture_refused(i_queue text, i_table text, i_cur int8)
--   The capture triggers' path for a queue that takes no events now (i_cur: the value of its
--   current-table sequence, _cur_index), and only that path: the writes of an open queue never
--   come here. Inserts disabled: refused. Fenced by a takeover (100 + n): a session of
--   londiste-rs itself (londiste_rs.replica = on, which every session it opens sets) applies
--   or copies rows into this node, which is not captured here (a fenced branch re-queues
--   its provider's events instead); any other write is refused with the queue's fence note,
--   which says where writes go now, as a read-only error (SQLSTATE 25006, what a standby
--   says), so a client's failover handling treats it as "connected to the wrong server".
--   Returns: true when the row is to be left uncaptured; otherwise it raises.
create or replace function londiste_rs._capture_refused(i_queue text, i_table text, i_cur int8)
returns boolean language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    note text;
begin
    if i_cur < 0 then
        raise exception 'queue % does not accept events now (inserts disabled)', i_queue
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    if current_setting('londiste_rs.replica', true) = 'on' then
        return true;
    end if;
    select q.queue_fence_note into note from londiste_rs.queue q where q.queue_name = i_queue;
    raise exception 'cannot write to % here: %', i_table,
        coalesce(note, format('queue %s is fenced by a takeover; write to its root', i_queue))
        using errcode = 'read_only_sql_transaction';
end $$;
