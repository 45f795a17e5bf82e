-- get_node_info(queue): this database's node of the queue and its worker's state; no row
-- when the database is not a node of the queue.
create or replace function londiste_rs.get_node_info(i_queue text)
returns table (
    node_type text, node_name text, worker_name text, node_location text,
    provider_node text, provider_location text, last_tick_id int8, last_tick_time timestamptz,
    last_apply_time timestamptz, paused boolean, uptodate boolean, cur_error text,
    error_time timestamptz)
language sql stable
set search_path = pg_catalog, pg_temp as $$
    select n.node_type, n.node_name, n.worker_name, me.node_location,
           s.provider_node, p.node_location, s.last_tick_id, s.last_tick_time,
           s.last_apply_time, s.paused, s.uptodate, s.cur_error, s.error_time
    from londiste_rs.node_info n
    join londiste_rs.local_state s using (queue_name)
    left join londiste_rs.node_location me
           on me.queue_name = n.queue_name and me.node_name = n.node_name
    left join londiste_rs.node_location p
           on p.queue_name = n.queue_name and p.node_name = s.provider_node
    where n.queue_name = i_queue;
$$;
