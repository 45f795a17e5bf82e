-- londiste_rs.get_queue_info(i_queue text default null)
--   Returns: one row per queue (or the one named): its settings, the current table, the last
--   tick, how long ago it was (ticker_lag) and how many events came since (ev_new).
create or replace function londiste_rs.get_queue_info(
    i_queue text default null,
    out queue_name text, out queue_ntables int4, out queue_cur_table int4,
    out queue_rotation_period interval, out queue_switch_time timestamptz,
    out queue_external_ticker boolean, out queue_ticker_paused boolean,
    out queue_disable_insert boolean,
    out queue_ticker_max_count int4, out queue_ticker_max_lag interval,
    out queue_ticker_idle_period interval, out last_tick_id int8, out last_tick_time timestamptz,
    out ticker_lag interval, out ev_new int8)
returns setof record language sql stable
set search_path = pg_catalog, pg_temp as $$
    select q.queue_name, q.queue_ntables, q.queue_cur_table, q.queue_rotation_period,
           q.queue_switch_time, q.queue_external_ticker, q.queue_ticker_paused,
           q.queue_disable_insert, q.queue_ticker_max_count, q.queue_ticker_max_lag,
           q.queue_ticker_idle_period, t.tick_id, t.tick_time, now() - t.tick_time,
           londiste_rs._event_seq(q.queue_id) - t.tick_event_seq
      from londiste_rs.queue q
      left join lateral (select * from londiste_rs.tick where tick_queue = q.queue_id
                          order by tick_id desc limit 1) t on true
     where i_queue is null or q.queue_name = i_queue
     order by q.queue_name
$$;
