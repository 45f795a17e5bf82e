-- londiste_rs.ticker(i_queue text)
--   Makes a tick when the queue needs one (_tick_due: new events >= ticker_max_count, or new
--   events and the last tick older than ticker_max_lag, or the last tick older than
--   ticker_idle_period). Paused queues and queues with an external ticker are left alone.
--   Returns: the new tick id, or NULL when no tick was made.
create or replace function londiste_rs.ticker(i_queue text)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    last londiste_rs.tick;
begin
    if q.queue_ticker_paused or q.queue_external_ticker then
        return null;
    end if;
    select * into last from londiste_rs.tick
     where tick_queue = q.queue_id order by tick_id desc limit 1;
    if not londiste_rs._tick_due(q, last.tick_time, last.tick_event_seq) then
        return null;
    end if;
    return londiste_rs._tick(q.queue_id,
        nextval(format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass),
        now(), londiste_rs._event_seq(q.queue_id));
end $$;
