-- londiste_rs.capture_detach(i_queue text, i_table regclass)
--   Stops capturing i_table into i_queue: drops its two triggers and its trigger function.
--   Returns: 1 when the table was captured, 0 otherwise.
create or replace function londiste_rs.capture_detach(i_queue text, i_table regclass)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    fn text := format('_capture_%s_%s', q.queue_id, i_table::oid);
    trg text := '_londiste_rs_' || i_queue;
    was int4;
begin
    select count(*) into was from pg_trigger
     where tgrelid = i_table and tgname in (trg, trg || '_truncate');
    execute format('drop trigger if exists %I on %s', trg, i_table);
    execute format('drop trigger if exists %I on %s', trg || '_truncate', i_table);
    execute format('drop trigger if exists %I on %s', trg || '_fence', i_table);  -- (takeover)
    execute format('drop function if exists londiste_rs.%I()', fn);
    return case when was > 0 then 1 else 0 end;
end $$;
