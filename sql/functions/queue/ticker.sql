-- londiste_rs.ticker(i_queue text)
--   Makes a tick when the queue needs one: new events >= ticker_max_count, or new events and
--   the last tick older than ticker_max_lag, or the last tick older than ticker_idle_period.
--   Paused queues and queues with an external ticker are left alone.
--   Returns: the new tick id, or NULL when no tick was made.
create or replace function londiste_rs.ticker(i_queue text)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    last londiste_rs.tick;
    seq int8;
begin
    if q.queue_ticker_paused or q.queue_external_ticker then
        return null;
    end if;
    select * into last from londiste_rs.tick
     where tick_queue = q.queue_id order by tick_id desc limit 1;
    seq := londiste_rs._event_seq(q.queue_id);
    if last.tick_id is not null
       and seq - last.tick_event_seq < q.queue_ticker_max_count
       and not (seq > last.tick_event_seq and now() - last.tick_time >= q.queue_ticker_max_lag)
       and now() - last.tick_time < q.queue_ticker_idle_period then
        return null;
    end if;
    return londiste_rs._tick(q.queue_id,
        nextval(format('londiste_rs.%I', 'event_' || q.queue_id || '_tick_seq')::regclass),
        now(), seq);
end $$;
