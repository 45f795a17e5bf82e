-- create_node(queue, node_type, node_name, worker_name, location, provider_node, last_tick):
-- makes this database a node of the queue. Root and branch get their own queue (a branch's is
-- ticked externally, with its provider's tick ids); the local worker's position starts at
-- last_tick (NULL on a root). Raises if the database already is a node of the queue.
create or replace function londiste_rs.create_node(
    i_queue text, i_node_type text, i_node_name text, i_worker_name text, i_location text,
    i_provider_node text default null, i_last_tick int8 default null)
returns void language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
    if exists (select 1 from londiste_rs.node_info where queue_name = i_queue) then
        raise exception 'this database already is a node of queue %', i_queue
            using errcode = 'unique_violation';
    end if;
    if i_node_type <> 'root' and i_provider_node is null then
        raise exception 'a % node needs a provider', i_node_type;
    end if;
    insert into londiste_rs.node_info (queue_name, node_type, node_name, worker_name)
    values (i_queue, i_node_type, i_node_name, i_worker_name);
    insert into londiste_rs.local_state (queue_name, consumer_name, provider_node, last_tick_id)
    values (i_queue, i_worker_name, i_provider_node, i_last_tick);
    perform londiste_rs.register_location(i_queue, i_node_name, i_location, false);
    if i_node_type in ('root', 'branch') then
        perform londiste_rs.create_queue(i_queue);
    end if;
end;
$$;
