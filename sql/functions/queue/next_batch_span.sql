-- londiste_rs.next_batch_span(i_queue text, i_consumer text, i_min_lag interval,
--                             i_min_count int4, i_min_interval interval, i_stop_tick int8,
--                             i_max_ticks int4, i_max_events int8)
--   Opens the consumer's next batch as next_batch_custom does, then, for a consumer that lags,
--   lets it span up to i_max_ticks ticks as long as they hold at most i_max_events events
--   (always at least the one tick next_batch_custom chose): PgQ's merged batch. Its events are
--   those of the batches between, read in one scan (batch_event_sql), and opening it costs
--   one index probe, whatever the number of ticks (with ticks every 20 ms a day's backlog is
--   millions of them). A consumer whose node already applied up to i_stop_tick (a crash
--   between its local commit and the provider's) gets a batch ending exactly there, to
--   finish without applying. A batch already open is returned again.
--   Returns: the columns of next_batch_custom, and the number of ticks the batch spans.
create or replace function londiste_rs.next_batch_span(
    i_queue text, i_consumer text, i_min_lag interval, i_min_count int4, i_min_interval interval,
    i_stop_tick int8, i_max_ticks int4, i_max_events int8,
    out batch_id int8, out cur_tick_id int8, out prev_tick_id int8,
    out cur_tick_time timestamptz, out prev_tick_time timestamptz,
    out cur_tick_event_seq int8, out prev_tick_event_seq int8, out ticks int4)
language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    s londiste_rs.subscription := londiste_rs._subscription(i_queue, i_consumer, true);
    first record;
    cur londiste_rs.tick;
begin
    select * into first from londiste_rs.next_batch_custom(
        i_queue, i_consumer, i_min_lag, i_min_count, i_min_interval);
    if first.batch_id is null then
        return;
    end if;
    select t.* into cur from londiste_rs.tick t
     where t.tick_queue = s.sub_queue and t.tick_id = first.cur_tick_id;
    if s.sub_batch is not null then
        null;  -- opened before this call: returned as it is
    elsif i_stop_tick > first.cur_tick_id then
        -- applied here up to i_stop_tick already: the batch ends there (when it is a tick)
        select t.* into cur from londiste_rs.tick t
         where t.tick_queue = s.sub_queue and t.tick_id = i_stop_tick;
        if not found then
            select t.* into cur from londiste_rs.tick t
             where t.tick_queue = s.sub_queue and t.tick_id = first.cur_tick_id;
        end if;
    elsif i_max_ticks > 1 and (i_stop_tick is null or i_stop_tick <= first.prev_tick_id) then
        -- ticks are made in order, so their event_seq and tick_time grow with tick_id
        select t.* into cur from (
            select * from londiste_rs.tick
             where tick_queue = s.sub_queue and tick_id >= first.cur_tick_id
               and (i_min_lag is null or tick_time <= now() - i_min_lag)
             order by tick_id limit i_max_ticks) t
         where t.tick_id = first.cur_tick_id
            or t.tick_event_seq - first.prev_tick_event_seq <= i_max_events
         order by t.tick_id desc limit 1;
    end if;
    if cur.tick_id <> first.cur_tick_id then
        update londiste_rs.subscription set sub_next_tick = cur.tick_id
         where sub_id = s.sub_id;
    end if;
    select count(*) into ticks from londiste_rs.tick t
     where t.tick_queue = s.sub_queue and t.tick_id > first.prev_tick_id
       and t.tick_id <= cur.tick_id;
    batch_id := first.batch_id;
    cur_tick_id := cur.tick_id;
    prev_tick_id := first.prev_tick_id;
    cur_tick_time := cur.tick_time;
    prev_tick_time := first.prev_tick_time;
    cur_tick_event_seq := cur.tick_event_seq;
    prev_tick_event_seq := first.prev_tick_event_seq;
end $$;
