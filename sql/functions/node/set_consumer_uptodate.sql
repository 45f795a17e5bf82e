-- set_consumer_uptodate(queue, uptodate): the worker's acknowledgement that it has seen the
-- current paused flag.
create or replace function londiste_rs.set_consumer_uptodate(i_queue text, i_uptodate boolean)
returns void language sql
set search_path = pg_catalog, pg_temp as $$
    update londiste_rs.local_state set uptodate = i_uptodate where queue_name = i_queue;
$$;
