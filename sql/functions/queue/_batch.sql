-- londiste_rs._batch(i_batch_id int8)
--   Returns: (queue_id, sub_id, prev tick, cur tick) of an open batch; raises undefined_object
--   when no open batch has that id.
create or replace function londiste_rs._batch(
    i_batch_id int8, out queue_id int4, out sub_id int4,
    out prev londiste_rs.tick, out cur londiste_rs.tick)
language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    prev_id int8;
    cur_id int8;
begin
    select s.sub_queue, s.sub_id, s.sub_last_tick, s.sub_next_tick
      into queue_id, sub_id, prev_id, cur_id
      from londiste_rs.subscription s where s.sub_batch = i_batch_id;
    if not found then
        raise exception 'batch % is not open (finished, or never started)', i_batch_id
            using errcode = 'undefined_object';
    end if;
    select * into prev from londiste_rs.tick where tick_queue = queue_id and tick_id = prev_id;
    select * into cur from londiste_rs.tick where tick_queue = queue_id and tick_id = cur_id;
end $$;
