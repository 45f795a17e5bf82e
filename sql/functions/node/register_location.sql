-- register_location(queue, node, location, dead): records (or updates) where a member of the
-- cascade can be reached. Returns nothing.
create or replace function londiste_rs.register_location(
    i_queue text, i_node text, i_location text, i_dead boolean default false)
returns void language sql
set search_path = pg_catalog, pg_temp as $$
    insert into londiste_rs.node_location (queue_name, node_name, node_location, dead)
    values (i_queue, i_node, i_location, i_dead)
    on conflict (queue_name, node_name)
    do update set node_location = excluded.node_location, dead = excluded.dead;
$$;
