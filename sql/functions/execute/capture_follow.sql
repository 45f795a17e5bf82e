-- londiste_rs.capture_follow(i_queue text)
--   Generates again (_capture_function) the capture function of every table of i_queue whose
--   columns or primary key are no longer those it was generated for: the shape written in
--   its body is not the table's shape now (table_shape), or its key is another one. execute
--   runs it in the transaction of a file's statements, before queueing the EXECUTE event, so
--   every event captured after the file carries the table's new shape (internals §3); it also
--   catches up with columns renamed or retyped earlier without execute (the per-row check of a
--   capture function sees only added columns). The table name its events carry is kept.
--   Raises what _capture_function raises (a table left without a primary key, ...): the
--   caller's transaction, and the file's statements with it, are then rolled back.
--   Returns: the tables whose function was generated again.
create or replace function londiste_rs.capture_follow(i_queue text)
returns setof text language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    r record;
    lit text;
    name text;
    keys text[];
begin
    for r in
        select p.proname, p.prosrc, c.oid::regclass as tbl
          from pg_proc p
          cross join lateral regexp_match(p.proname, '^_capture_([0-9]{1,9})_([0-9]{1,10})$') m
          join pg_class c on c.oid = m[2]::oid
         where p.pronamespace = 'londiste_rs'::regnamespace
           and m[1]::int4 = q.queue_id
         order by p.proname
    loop
        select array_agg(format('%I', a.attname) order by k.ord) into keys
          from pg_index i
          cross join unnest(i.indkey) with ordinality k(attnum, ord)
          join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
         where i.indrelid = r.tbl and i.indisprimary;
        if strpos(r.prosrc, format('shape pg_catalog.text := %L;',
                                   londiste_rs.table_shape(r.tbl))) > 0
           and keys is not null
           and strpos(r.prosrc, 'oldkey := pg_catalog.record_send(ROW(OLD.'
                                || array_to_string(keys, ', OLD.') || '));') > 0 then
            continue;
        end if;
        -- the name as generated: values (typ, dat, <quote_literal(name)>, oldkey, enc[, shape])
        lit := (regexp_match(r.prosrc, $re$values \(typ, dat, (E?'(?:[^']|'')*'), oldkey, enc(?:, shape)?\)$re$))[1];
        name := null;
        if lit is not null then
            name := replace(substr(lit, strpos(lit, '''') + 1,
                                   length(lit) - strpos(lit, '''') - 1), '''''', '''');
            if lit like 'E%' then
                name := replace(name, E'\\\\', E'\\');
            end if;
        end if;
        perform londiste_rs._capture_function(i_queue, r.tbl, name);
        return next coalesce(name, r.tbl::text);
    end loop;
end $$;
