-- londiste_rs._tick_due(q londiste_rs.queue, i_last_time timestamptz, i_last_seq int8)
--   Whether the queue needs a tick, given its last tick's time and event sequence value (NULL:
--   no tick yet): new events >= ticker_max_count, or new events and the last tick at least
--   ticker_max_lag old, or the last tick at least ticker_idle_period old. Reads nothing, so
--   ticker() can ask it of every queue without locking one.
create or replace function londiste_rs._tick_due(
    q londiste_rs.queue, i_last_time timestamptz, i_last_seq int8)
returns boolean language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    seq int8;
begin
    if i_last_time is null then
        return true;
    end if;
    if now() - i_last_time >= q.queue_ticker_idle_period then
        return true;
    end if;
    seq := londiste_rs._event_seq(q.queue_id);
    return seq - i_last_seq >= q.queue_ticker_max_count
        or (seq > i_last_seq and now() - i_last_time >= q.queue_ticker_max_lag);
end $$;
