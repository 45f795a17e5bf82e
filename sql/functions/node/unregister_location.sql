-- unregister_location(queue, node): forgets a member. Returns true when it was known.
create or replace function londiste_rs.unregister_location(i_queue text, i_node text)
returns boolean language sql
set search_path = pg_catalog, pg_temp as $$
    with d as (
        delete from londiste_rs.node_location where queue_name = i_queue and node_name = i_node
        returning 1)
    select exists (select 1 from d);
$$;
