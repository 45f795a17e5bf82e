-- unregister_subscriber(queue, subscriber_node): on a provider, forgets a subscriber and
-- unregisters its consumer. Returns true when it was subscribed.
create or replace function londiste_rs.unregister_subscriber(i_queue text, i_subscriber_node text)
returns boolean language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    v_consumer text;
begin
    delete from londiste_rs.subscriber_info
    where queue_name = i_queue and subscriber_node = i_subscriber_node
    returning consumer_name into v_consumer;
    if v_consumer is null then
        return false;
    end if;
    perform londiste_rs.unregister_consumer(i_queue, v_consumer);
    return true;
end;
$$;
