-- londiste_rs._fence_queue(i_queue text, i_note text)
--   Fences the queue's capture (internals §10): from the moment this runs (the sequence
--   event_<id>_cur is not transactional), every capture trigger of the queue refuses the
--   application's writes with i_note (_capture_refused); the queue itself goes on (rotation,
--   a branch's re-queued events) and is ticked externally only (no ticker tick can follow a
--   takeover's final tick). Holds the queue row lock until the caller's transaction ends, so
--   a rotation or another fence does not interleave. Fencing a fenced queue changes the note.
--   Returns: nothing.
create or replace function londiste_rs._fence_queue(i_queue text, i_note text)
returns void language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    cur int8 := londiste_rs._cur_table(q.queue_id);
begin
    update londiste_rs.queue set queue_fence_note = i_note, queue_external_ticker = true
     where queue_id = q.queue_id;
    if cur < 100 then  -- last: it takes effect at once
        perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_cur')::regclass,
                       londiste_rs._cur_index(cur) + 100);
    end if;
end $$;
