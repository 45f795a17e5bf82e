-- londiste_rs._tick_range_sql(i_queue_id int4, i_sub_id int4, i_prev londiste_rs.tick,
--                             i_cur londiste_rs.tick)
--   Returns: a SELECT of the events between two ticks of a queue (every event table column,
--   ORDER BY ev_id): events of transactions visible in i_cur's snapshot and not in i_prev's,
--   that are not retry events of another consumer than i_sub_id. Written for index scans on
--   ev_txid: the range from the start snapshot's xmax to the end snapshot's xmax, plus the
--   explicit list of txids that were in progress at the start tick (those close to the range
--   are folded into it), so a long-open transaction does not widen the scan. The ticks need
--   not be adjacent: the events between ticks 1 and 3 are those of ticks 1-2 and 2-3, as if
--   tick 2 had never been made (a lagging consumer reads many ticks in one scan this way).
create or replace function londiste_rs._tick_range_sql(
    i_queue_id int4, i_sub_id int4, i_prev londiste_rs.tick, i_cur londiste_rs.tick)
returns text language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    s1 pg_snapshot := i_prev.tick_snapshot;
    s2 pg_snapshot := i_cur.tick_snapshot;
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
        'event_' || i_queue_id, i_sub_id, lo, pg_snapshot_xmax(s2), extra, s2, s1);
end $$;
