-- londiste_rs.batch_event_sql(i_batch_id int8)
--   Returns: a SELECT of the batch's events (every event table column, ORDER BY ev_id): events
--   of transactions visible in the end tick's snapshot and not in the start tick's, that are
--   not retry events of another consumer. Written for index scans on ev_txid: the range from
--   the start snapshot's xmax to the end snapshot's xmax, plus the explicit list of txids that
--   were in progress at the start tick (those close to the range are folded into it), so a
--   long-open transaction does not widen the scan. A batch spanning several ticks
--   (next_batch_span) reads the events of the one-tick batches between, as if the ticks
--   between had never been made.
create or replace function londiste_rs.batch_event_sql(i_batch_id int8)
returns text language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    b record := londiste_rs._batch(i_batch_id);
    s1 pg_snapshot := (b.prev).tick_snapshot;
    s2 pg_snapshot := (b.cur).tick_snapshot;
    lo xid8 := pg_snapshot_xmax(s1);
    x xid8;
    listed text[] := '{}';
    extra text := '';
begin
    for x in select t from pg_snapshot_xip(s1) t where pg_visible_in_snapshot(t, s2) order by t desc
    loop
        if lo::text::int8 - x::text::int8 <= 100 then
            lo := x;
        else
            listed := listed || x::text;
        end if;
    end loop;
    if cardinality(listed) > 0 then
        extra := format(' or ev_txid = any (%L::xid8[])', listed);
    end if;
    return format(
        'select ev_id, ev_time, ev_txid, ev_owner, ev_retry, ev_type, ev_data,'
        ' ev_extra1, ev_extra2, ev_extra3, ev_extra4'
        ' from londiste_rs.%I'
        ' where (ev_owner is null or ev_owner = %s)'
        ' and ((ev_txid >= %L::xid8 and ev_txid < %L::xid8)%s)'
        ' and pg_visible_in_snapshot(ev_txid, %L::pg_snapshot)'
        ' and not pg_visible_in_snapshot(ev_txid, %L::pg_snapshot)'
        ' order by ev_id',
        'event_' || b.queue_id, b.sub_id, lo, pg_snapshot_xmax(s2), extra, s2, s1);
end $$;
