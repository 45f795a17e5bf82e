-- londiste_rs.capture_attach(i_queue text, i_table regclass)
--   Starts capturing i_table's changes into i_queue (internals §3): generates the trigger
--   function londiste_rs._capture_<queue id>_<table oid> (_capture_function, which refuses
--   tables that cannot be captured) and attaches it as AFTER ROW INSERT/UPDATE/DELETE trigger
--   _londiste_rs_<queue> and AFTER TRUNCATE statement trigger _londiste_rs_<queue>_truncate
--   (both replaced if present).
--   Returns: 1.
create or replace function londiste_rs.capture_attach(i_queue text, i_table regclass)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    fn text;
    trg text := '_londiste_rs_' || i_queue;
begin
    -- trigger names are cut at 63 bytes: the two would collide (queues made before
    -- create_queue counted bytes may have longer names)
    if octet_length(trg || '_truncate') > 63 then
        raise exception 'cannot capture into queue %: its name is % bytes long, trigger names allow 41; use a queue with a shorter name',
            quote_literal(i_queue), octet_length(i_queue) using errcode = 'invalid_name';
    end if;
    fn := londiste_rs._capture_function(i_queue, i_table);
    execute format('drop trigger if exists %I on %s', trg, i_table);
    execute format('drop trigger if exists %I on %s', trg || '_truncate', i_table);
    execute format('create trigger %I after insert or update or delete on %s for each row execute function londiste_rs.%I()',
                   trg, i_table, fn);
    execute format('create trigger %I after truncate on %s for each statement execute function londiste_rs.%I()',
                   trg || '_truncate', i_table, fn);
    return 1;
end $$;
