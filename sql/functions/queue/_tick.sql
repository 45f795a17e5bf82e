-- londiste_rs._tick(i_queue_id int4, i_tick_id int8, i_tick_time timestamptz, i_event_seq int8)
--   Records a tick with the current snapshot, after sanity checks: READ COMMITTED (an older
--   transaction snapshot would cut batches in the past), snapshot not older than the last
--   tick's, never the same snapshot twice. The caller holds the queue row lock.
--   Events written by the ticking transaction itself belong to this tick (a branch copies
--   events and ticks in one transaction): PostgreSQL leaves a transaction's own txid out of
--   its snapshot's in-progress list but may put it at or above xmax, which would make it
--   invisible here and visible in the next snapshot depending on timing. So when it is at or
--   above xmax, xmax is moved past it and the txids in between are listed as in progress.
--   Notifies channel londiste_rs_tick (payload: the queue's name) at commit, so idle workers
--   consuming the queue wake at once instead of at their next poll.
--   Returns: the tick id, or NULL when the snapshot equals the last tick's.
create or replace function londiste_rs._tick(
    i_queue_id int4, i_tick_id int8, i_tick_time timestamptz, i_event_seq int8)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    last record;
    snap pg_snapshot;
    own xid8 := pg_current_xact_id_if_assigned();
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'ticks must be made in READ COMMITTED transactions, not %',
            upper(current_setting('transaction_isolation'))
            using errcode = 'invalid_transaction_state';
    end if;
    select tick_id, tick_snapshot into last from londiste_rs.tick
     where tick_queue = i_queue_id order by tick_id desc limit 1;
    snap := pg_current_snapshot();
    if own >= pg_snapshot_xmax(snap) then
        snap := format('%s:%s:%s', pg_snapshot_xmin(snap), own::text::int8 + 1,
                       array_to_string(array(
                           select x::text::int8 from pg_snapshot_xip(snap) x
                           union
                           select generate_series(pg_snapshot_xmax(snap)::text::int8, own::text::int8 - 1)
                           order by 1), ','))::pg_snapshot;
    end if;
    if found then
        if pg_snapshot_xmax(snap) < pg_snapshot_xmax(last.tick_snapshot)
           or pg_snapshot_xmin(snap) < pg_snapshot_xmin(last.tick_snapshot) then
            raise exception 'invalid queue state: snapshot % is older than tick %''s (%)',
                snap, last.tick_id, last.tick_snapshot;
        end if;
        if snap::text = last.tick_snapshot::text then
            return null;
        end if;
        if i_tick_id <= last.tick_id then
            raise exception 'tick % is not after the last tick %', i_tick_id, last.tick_id
                using errcode = 'invalid_parameter_value';
        end if;
    end if;
    insert into londiste_rs.tick (tick_queue, tick_id, tick_time, tick_snapshot, tick_event_seq)
        values (i_queue_id, i_tick_id, i_tick_time, snap, i_event_seq);
    perform pg_notify('londiste_rs_tick',
                      (select queue_name from londiste_rs.queue where queue_id = i_queue_id));
    return i_tick_id;
end $$;
