-- londiste_rs._unfence_queue(i_queue text)
--   Lifts a takeover's fence (_fence_queue): the capture triggers of the queue capture the
--   application's writes again from the moment this runs (not transactional: call it last in
--   a transaction). Whether the queue is ticked externally is the caller's to set.
--   Returns: nothing.
create or replace function londiste_rs._unfence_queue(i_queue text)
returns void language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    cur int8 := londiste_rs._cur_table(q.queue_id);
begin
    update londiste_rs.queue set queue_fence_note = null where queue_id = q.queue_id;
    if cur >= 100 then
        perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_cur')::regclass,
                       londiste_rs._cur_index(cur));
    end if;
end $$;
