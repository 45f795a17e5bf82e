-- londiste_rs._register(q londiste_rs.queue, i_consumer text, i_tick_id int8, i_move boolean)
--   Registers i_consumer on q at tick i_tick_id; with i_move an existing registration is
--   moved there.
--   Returns: 1 when registered, 0 when it already was.
create or replace function londiste_rs._register(
    q londiste_rs.queue, i_consumer text, i_tick_id int8, i_move boolean)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    cid int4;
    s londiste_rs.subscription;
    oldest int8;
begin
    if i_consumer is null or i_consumer = '' then
        raise exception 'a consumer needs a name' using errcode = 'invalid_name';
    end if;
    if not exists (select 1 from londiste_rs.tick where tick_queue = q.queue_id and tick_id = i_tick_id) then
        select min(tick_id) into oldest from londiste_rs.tick where tick_queue = q.queue_id;
        raise exception 'tick % of queue % no longer exists (oldest kept: %); register at a later tick',
            i_tick_id, q.queue_name, oldest using errcode = 'invalid_parameter_value';
    end if;
    insert into londiste_rs.consumer (co_name) values (i_consumer) on conflict (co_name) do nothing;
    select co_id into cid from londiste_rs.consumer where co_name = i_consumer;
    select * into s from londiste_rs.subscription
     where sub_queue = q.queue_id and sub_consumer = cid for update;
    if not found then
        insert into londiste_rs.subscription (sub_queue, sub_consumer, sub_last_tick)
            values (q.queue_id, cid, i_tick_id);
        return 1;
    end if;
    if i_move then
        if s.sub_batch is not null then
            raise exception 'consumer % is inside batch % on queue %; finish it before moving',
                i_consumer, s.sub_batch, q.queue_name using errcode = 'object_in_use';
        end if;
        update londiste_rs.subscription set sub_last_tick = i_tick_id, sub_active = now()
         where sub_id = s.sub_id;
    end if;
    return 0;
end $$;
