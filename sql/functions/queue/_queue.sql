-- londiste_rs._queue(i_queue text, i_lock boolean default false)
--   Returns: the queue's row; with i_lock, locked FOR UPDATE until the transaction ends.
--   Raises undefined_object naming the queue when it does not exist.
create or replace function londiste_rs._queue(i_queue text, i_lock boolean default false)
returns londiste_rs.queue language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue;
begin
    if i_lock then
        select * into q from londiste_rs.queue where queue_name = i_queue for update;
    else
        select * into q from londiste_rs.queue where queue_name = i_queue;
    end if;
    if not found then
        raise exception 'queue % does not exist in database %; create it first (create_queue)',
            quote_literal(coalesce(i_queue, '')), current_database()
            using errcode = 'undefined_object';
    end if;
    return q;
end $$;
