-- get_queue_locations(queue): the members of the cascade this node knows, by name.
create or replace function londiste_rs.get_queue_locations(i_queue text)
returns table (node_name text, node_location text, dead boolean)
language sql stable
set search_path = pg_catalog, pg_temp as $$
    select l.node_name, l.node_location, l.dead
    from londiste_rs.node_location l
    where l.queue_name = i_queue
    order by l.node_name;
$$;
