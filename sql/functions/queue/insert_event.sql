-- londiste_rs.insert_event(i_queue text, i_ev_type text, i_ev_data bytea, i_extra1 text,
--                          i_extra2 bytea, i_extra3 text, i_extra4 text)
--   Inserts one event into the queue's current event table.
--   Returns: the event id.
create or replace function londiste_rs.insert_event(
    i_queue text, i_ev_type text, i_ev_data bytea,
    i_extra1 text, i_extra2 bytea, i_extra3 text, i_extra4 text)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    cur int8;
    id int8;
begin
    -- Take a txid before reading the current table: rotation (step2) relies on every writer
    -- of the previous table having a txid from before the switch.
    perform pg_current_xact_id();
    cur := londiste_rs._cur_table(q.queue_id);  -- (fenced by a takeover: still taken)
    if cur < 0 then
        raise exception 'queue % does not accept events now (inserts disabled)', i_queue
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    execute format('insert into londiste_rs.%I (ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
                   ' values ($1, $2, $3, $4, $5, $6) returning ev_id',
                   'event_' || q.queue_id || '_' || londiste_rs._cur_index(cur))
        into id using i_ev_type, i_ev_data, i_extra1, i_extra2, i_extra3, i_extra4;
    return id;
end $$;

