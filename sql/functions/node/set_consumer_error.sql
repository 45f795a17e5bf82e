-- set_consumer_error(queue, error): the last error the local worker met (NULL clears it),
-- shown by status and node-info.
create or replace function londiste_rs.set_consumer_error(i_queue text, i_error text)
returns void language sql
set search_path = pg_catalog, pg_temp as $$
    update londiste_rs.local_state
       set cur_error = i_error, error_time = case when i_error is null then null else now() end
     where queue_name = i_queue;
$$;
