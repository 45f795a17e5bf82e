-- drop_node(queue): removes this database's node of the queue: node, position, members,
-- subscribers, table registry and (root, branch, a leaf a takeover armed) the queue itself. Capture triggers are
-- removed by the caller first. Returns the node type that was dropped, NULL if none.
create or replace function londiste_rs.drop_node(i_queue text)
returns text language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    v_type text;
begin
    delete from londiste_rs.node_info where queue_name = i_queue returning node_type into v_type;
    if v_type is null then
        return null;
    end if;
    delete from londiste_rs.node_location where queue_name = i_queue;
    delete from londiste_rs.subscriber_info where queue_name = i_queue;
    delete from londiste_rs.table_info where queue_name = i_queue;
    delete from londiste_rs.seq_info where queue_name = i_queue;
    -- (a leaf has one too while a takeover makes it the root)
    if exists (select 1 from londiste_rs.queue where queue_name = i_queue) then
        perform londiste_rs.drop_queue(i_queue);
    end if;
    return v_type;
end;
$$;
