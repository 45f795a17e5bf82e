-- change_consumer_provider(queue, provider_node): the local worker follows another provider
-- from now on (it must already be registered there at the local position).
create or replace function londiste_rs.change_consumer_provider(i_queue text, i_provider text)
returns void language sql
set search_path = pg_catalog, pg_temp as $$
    update londiste_rs.local_state set provider_node = i_provider where queue_name = i_queue;
$$;
