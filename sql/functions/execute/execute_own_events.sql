-- londiste_rs.execute_own_events(i_queue text, i_after int8)
--   The row events (I, U, D, R) the calling transaction queued into i_queue after event
--   i_after (an execute's EXECUTE_BEGIN), as ranges of consecutive event ids. execute puts them
--   into that EXECUTE_BEGIN event: a node that runs the file leaves these rows out (the file's
--   statements change them there), on every node of the cascade: a branch re-queues events
--   with their ids (not their transaction ids).
--   Returns: (lo, hi) ranges, inclusive, in order.
create or replace function londiste_rs.execute_own_events(i_queue text, i_after int8,
                                                          out lo int8, out hi int8)
returns setof record language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
begin
    return query execute format(
        'select min(ev_id), max(ev_id) from ('
        '  select ev_id, ev_id - row_number() over (order by ev_id) as island'
        '    from londiste_rs.%I'
        '   where ev_txid operator(pg_catalog.=) pg_catalog.pg_current_xact_id()'
        '     and ev_id operator(pg_catalog.>) $1'
        '     and ev_type operator(pg_catalog.=) any (array[''I'', ''U'', ''D'', ''R''])) e'
        ' group by island order by 1', 'event_' || q.queue_id)
        using i_after;
end $$;
