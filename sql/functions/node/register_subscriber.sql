-- register_subscriber(queue, subscriber_node, consumer, tick_id): on a provider, subscribes a
-- node through one consumer of the queue, positioned at tick_id (or at the queue's last tick
-- when NULL). Returns the tick the consumer starts after. Re-registering the same node moves
-- nothing: it returns the consumer's current position.
create or replace function londiste_rs.register_subscriber(
    i_queue text, i_subscriber_node text, i_consumer text, i_tick_id int8 default null)
returns int8 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    v_tick int8;
begin
    if not exists (select 1 from londiste_rs.node_info
                   where queue_name = i_queue and node_type in ('root', 'branch')) then
        raise exception 'this database is not a root or branch of queue %', i_queue;
    end if;
    insert into londiste_rs.subscriber_info (queue_name, subscriber_node, consumer_name)
    values (i_queue, i_subscriber_node, i_consumer)
    on conflict (queue_name, subscriber_node) do update set consumer_name = excluded.consumer_name;
    if i_tick_id is null then
        perform londiste_rs.register_consumer(i_queue, i_consumer);
    else
        perform londiste_rs.register_consumer_at(i_queue, i_consumer, i_tick_id);
    end if;
    v_tick := (londiste_rs._subscription(i_queue, i_consumer)).sub_last_tick;
    return v_tick;
end;
$$;
