-- set_consumer_paused(queue, paused): pauses or resumes the local worker; it acknowledges by
-- setting uptodate back to true. Returns false when the database is not a node of the queue.
create or replace function londiste_rs.set_consumer_paused(i_queue text, i_paused boolean)
returns boolean language sql
set search_path = pg_catalog, pg_temp as $$
    with u as (
        update londiste_rs.local_state
           set paused = i_paused, uptodate = false
         where queue_name = i_queue
        returning 1)
    select exists (select 1 from u);
$$;
