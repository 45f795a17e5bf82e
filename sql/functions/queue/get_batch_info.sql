-- londiste_rs.get_batch_info(i_batch_id int8)
--   Returns: queue_name, consumer_name, batch_start, batch_end (tick times), prev_tick_id,
--   tick_id, lag (now - batch_end), seq_start, seq_end (event sequence at the two ticks).
create or replace function londiste_rs.get_batch_info(
    i_batch_id int8,
    out queue_name text, out consumer_name text, out batch_start timestamptz,
    out batch_end timestamptz, out prev_tick_id int8, out tick_id int8, out lag interval,
    out seq_start int8, out seq_end int8)
language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    b record := londiste_rs._batch(i_batch_id);
begin
    select q.queue_name, c.co_name into queue_name, consumer_name
      from londiste_rs.subscription s
      join londiste_rs.queue q on q.queue_id = s.sub_queue
      join londiste_rs.consumer c on c.co_id = s.sub_consumer
     where s.sub_id = b.sub_id;
    batch_start := (b.prev).tick_time;
    batch_end := (b.cur).tick_time;
    prev_tick_id := (b.prev).tick_id;
    tick_id := (b.cur).tick_id;
    lag := now() - (b.cur).tick_time;
    seq_start := (b.prev).tick_event_seq;
    seq_end := (b.cur).tick_event_seq;
end $$;
