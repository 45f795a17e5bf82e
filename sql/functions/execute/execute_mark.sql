-- londiste_rs.execute_mark(i_queue text, i_ev_id int8, i_extra2 bytea)
--   Sets ev_extra2 of event i_ev_id of i_queue, only if the calling transaction queued it:
--   execute completes its EXECUTE_BEGIN event this way once the file's statements ran (the
--   ranges of the row events they queued: execute_own_events).
--   Returns: whether the event was found.
create or replace function londiste_rs.execute_mark(i_queue text, i_ev_id int8, i_extra2 bytea)
returns boolean language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    n int8;
begin
    execute format(
        'update londiste_rs.%I set ev_extra2 = $2'
        ' where ev_id operator(pg_catalog.=) $1'
        '   and ev_txid operator(pg_catalog.=) pg_catalog.pg_current_xact_id()',
        'event_' || q.queue_id)
        using i_ev_id, i_extra2;
    get diagnostics n = row_count;
    return n > 0;
end $$;
