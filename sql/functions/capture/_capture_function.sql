-- londiste_rs._capture_function(i_queue text, i_table regclass, i_name text default null)
--   Generates (CREATE OR REPLACE) the trigger function londiste_rs._capture_<queue id>_<table
--   oid> that captures i_table's changes into i_queue, with the key columns and the event tables
--   written out (static SQL, cached plans, no per-row catalog lookups). i_name is the table's
--   global name its events carry in ev_extra1 (NULL: schema.table as quote_ident writes them
--   now; capture_refresh passes the name an existing function already uses).
--   Refuses tables without a primary key, partitioned tables and columns whose type has no
--   binary send function (the trigger would fail the application's writes).
--   The function is SECURITY DEFINER (roles that may write the table need no rights on the
--   queue) and runs beside roles we do not trust (internals §3): every name in it, types
--   included, is schema-qualified (PL/pgSQL looks up a variable's type through the writer's
--   search_path, pg_temp first), so it resolves nothing through the writer's search_path, and
--   PUBLIC may not EXECUTE it (a trigger fires without that right). Its search_path is pinned
--   through that qualification, not by a SET clause: setting a GUC on every call added 1 to
--   2 us per captured row (+17 to 23% of the trigger's cost, measured interleaved on PG 15);
--   tests/test_security.py checks that the generated body stays fully qualified.
--   Every data event carries the table's shape (table_shape) in ev_extra3, so a subscriber
--   can refuse events captured while the table had other columns (internals §3). The shape
--   is computed here; each row only checks that it still holds, and computes it again when
--   not (until the next install or execute generates this function anew): a column added
--   since has the attnum after the last one then (has_column_privilege on it is not NULL, a
--   syscache lookup), a dropped one changes the row's field count (the first 4 bytes of its
--   record_send). Together they catch a column dropped and another added (E9). That costs
--   0.3 to 0.6 us per row (8.9 against 8.5 us for a one-row insert with the trigger, median
--   of 16 interleaved rounds on PG 15); reading pg_class.relnatts with a query cost 1.9 us. A rename or a type
--   change keeps the field count: a type change of a built-in type is caught by the
--   subscriber's type check, and both are refused there until execute makes them.
--   The current event table is read first; a queue that takes no events (inserts disabled, or
--   a takeover's fence) is handled by _capture_refused on that path only, so the fence costs
--   the writes nothing while the queue is open.
--   Returns: the function's name.
create or replace function londiste_rs._capture_function(i_queue text, i_table regclass,
                                                         i_name text default null)
returns text language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue);
    rel record;
    keys text[];
    col record;
    bad text;
    fn text := format('_capture_%s_%s', q.queue_id, i_table::oid);
    global_name text;
    db_encoding text := pg_encoding_to_char((select encoding from pg_database
                                              where datname = current_database()));
    old_key text;
    new_key text;
    inserts text := '';
    payload text;
    refused text;
    not_taking text;
    changed text;
    fast text := '';
    op record;
    n int4;
    shape text := londiste_rs.table_shape(i_table);
    -- the attnum a column added later gets, and the field count of a row now
    next_attnum int2 := (select c.relnatts + 1 from pg_class c where c.oid = i_table);
    fields bytea := decode(lpad(to_hex((select count(*) from pg_attribute a
                                         where a.attrelid = i_table and a.attnum > 0
                                           and not a.attisdropped)), 8, '0'), 'hex');
begin
    select c.relkind, n.nspname, c.relname into rel
      from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = i_table;
    global_name := quote_ident(rel.nspname) || '.' || quote_ident(rel.relname);
    if rel.relkind = 'p' then
        raise exception 'cannot capture %: it is a partitioned table; add its partitions instead',
            global_name using errcode = 'feature_not_supported';
    elsif rel.relkind <> 'r' then
        raise exception 'cannot capture %: it is not a table', global_name
            using errcode = 'feature_not_supported';
    end if;
    select array_agg(format('%I', a.attname) order by k.ord) into keys
      from pg_index i
      cross join unnest(i.indkey) with ordinality k(attnum, ord)
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
     where i.indrelid = i_table and i.indisprimary;
    if keys is null then
        raise exception 'cannot capture %: it has no primary key; add one (ALTER TABLE % ADD PRIMARY KEY (...)) and add the table again',
            global_name, global_name using errcode = 'invalid_table_definition';
    end if;
    for col in select attname, atttypid from pg_attribute
                where attrelid = i_table and attnum > 0 and not attisdropped order by attnum loop
        bad := londiste_rs._unsendable_type(col.atttypid);
        if bad is not null then
            raise exception 'cannot capture %: column % has type %, which has no binary send function; change the column''s type or leave the table out',
                global_name, quote_ident(col.attname), bad using errcode = 'feature_not_supported';
        end if;
    end loop;
    global_name := coalesce(i_name, global_name);
    old_key := 'pg_catalog.record_send(ROW(OLD.' || array_to_string(keys, ', OLD.') || '))';
    new_key := 'pg_catalog.record_send(ROW(NEW.' || array_to_string(keys, ', NEW.') || '))';
    -- The shape of now when a column was added (the attnum after the last one exists) or, for
    -- rows of all columns, dropped (the row's field count differs)
    changed := format('pg_catalog.has_column_privilege(TG_RELID, %s::pg_catalog.int2, ''SELECT'') IS NOT NULL',
                      next_attnum);
    -- The fast path (the writer's client_encoding is the database's, as it nearly always is):
    -- per operation, the fewest PL/pgSQL expressions (8 for an update, not 17: each is set up
    -- again in every transaction, so with a row or two per transaction, as in pgbench, per row)
    -- and an INSERT of variables and constants only (its VALUES are set up again at every
    -- execution). 9.2 against 10.3 us a row in pgbench's mix (backend CPU, internals §3).
    -- A queue that takes no events now: not captured when londiste-rs itself writes here (a
    -- fenced node's apply), else refused (by a takeover's fence: saying where writes go). Both
    -- paths below run this; the fast one raises after it (inserts disabled).
    not_taking := format($r$
        if cur OPERATOR(pg_catalog.>=) 100 AND pg_catalog.current_setting('londiste_rs.replica',
                true) OPERATOR(pg_catalog.=) 'on' then
            return null;
        end if;
        if londiste_rs._capture_refused(%L, %L, cur) then
            return null;
        end if;
$r$, i_queue, global_name);
    refused := not_taking || format($r$
        raise exception 'queue %% does not accept events now (inserts disabled)', %L
            using errcode = 'object_not_in_prerequisite_state';
$r$, i_queue);
    for op in select * from (values
        ('UPDATE', 'U', 'pg_catalog.record_send(NEW)',
         format('case when %s OPERATOR(pg_catalog.=) %s then null else %s end',
                old_key, new_key, old_key), true),
        ('INSERT', 'I', 'pg_catalog.record_send(NEW)', 'null', true),
        ('DELETE', 'D', old_key, 'null', false),
        ('TRUNCATE', 'R', 'null', 'null', false)) o(tg_op, typ, dat, oldkey, whole_row)
    loop
        fast := fast || format(E'        %s TG_OP OPERATOR(pg_catalog.=) %L then\n',
                               case when op.tg_op = 'UPDATE' then 'if' else 'elsif' end, op.tg_op);
        fast := fast || format(E'            dat := %s;\n', op.dat);
        if op.oldkey <> 'null' then
            fast := fast || format(E'            oldkey := %s;\n', op.oldkey);
        end if;
        fast := fast || format(E'            if %s%s then\n'
                               || E'                shape := londiste_rs.table_shape(TG_RELID);\n'
                               || E'            end if;\n',
            changed,
            case when op.whole_row then format(
                ' OR pg_catalog.substr(dat, 1, 4) OPERATOR(pg_catalog.<>) %L::pg_catalog.bytea', fields)
            else '' end);
        for n in 0 .. q.queue_ntables - 1 loop
            fast := fast || format(
                E'            %s cur OPERATOR(pg_catalog.=) %s then\n'
                || E'                insert into londiste_rs.%I (ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3)\n'
                || E'                values (%L, dat, %L, oldkey, shape);\n',
                case when n = 0 then 'if' else 'elsif' end, n, 'event_' || q.queue_id || '_' || n,
                op.typ, global_name);
        end loop;
        fast := fast || E'            else\n' || refused || E'            end if;\n';
    end loop;
    fast := fast || E'        end if;\n        return null;\n';
    for n in 0 .. q.queue_ntables - 1 loop
        inserts := inserts || format(
            E'    %s cur OPERATOR(pg_catalog.=) %s then\n'
            || E'        insert into londiste_rs.%I (ev_type, ev_data, ev_extra1, ev_extra2, ev_extra4, ev_extra3)\n'
            || E'        values (typ, dat, %L, oldkey, enc, shape);\n',
            case when n = 0 then 'if' else 'elsif' end, n, 'event_' || q.queue_id || '_' || n,
            global_name);
    end loop;
    -- The payload for the operation; repeated below for writers whose client encoding cannot
    -- hold some text of the row (record_send converts text to the client encoding).
    payload := format($p$
        if TG_OP OPERATOR(pg_catalog.=) 'INSERT' then
            typ := 'I';
            dat := pg_catalog.record_send(NEW);
        elsif TG_OP OPERATOR(pg_catalog.=) 'UPDATE' then
            typ := 'U';
            dat := pg_catalog.record_send(NEW);
            oldkey := %s;
            if oldkey OPERATOR(pg_catalog.=) %s then
                oldkey := null;
            end if;
        elsif TG_OP OPERATOR(pg_catalog.=) 'DELETE' then
            typ := 'D';
            dat := %s;
        else
            typ := 'R';
        end if;$p$, old_key, new_key, old_key);
    execute format($f$
create or replace function londiste_rs.%I() returns pg_catalog.trigger
language plpgsql security definer as $body$
-- generated by londiste_rs.capture_attach(%L, %L)
declare
    typ pg_catalog.text;
    dat pg_catalog.bytea;
    oldkey pg_catalog.bytea;
    enc pg_catalog.text;
    cur pg_catalog.int8;
    shape pg_catalog.text := %L;
begin
    cur := pg_catalog.pg_sequence_last_value(%s::pg_catalog.oid::pg_catalog.regclass);
    if pg_catalog.current_setting('client_encoding') OPERATOR(pg_catalog.=) %L then
%s    end if;
    enc := pg_catalog.current_setting('client_encoding');
    if cur OPERATOR(pg_catalog.<) 0 OR cur OPERATOR(pg_catalog.>=) %s then
%s    end if;
    -- the writer's client_encoding is not the database's (the fast path above takes the rest)
    begin
%s
    exception when untranslatable_character then
        -- Send this row in the database encoding instead, and say so (ev_extra4 NULL).
        perform pg_catalog.set_config('client_encoding', %L, true);
%s
        perform pg_catalog.set_config('client_encoding', enc, true);
        enc := null;
    end;
    if typ OPERATOR(pg_catalog.=) 'R' then
        enc := null;
    end if;
    -- a column added or dropped since this function was generated: the shape of now
    if pg_catalog.has_column_privilege(TG_RELID, %s::pg_catalog.int2, 'SELECT') IS NOT NULL then
        shape := londiste_rs.table_shape(TG_RELID);
    elsif typ OPERATOR(pg_catalog.=) 'I' OR typ OPERATOR(pg_catalog.=) 'U' then
        if pg_catalog.substr(dat, 1, 4) OPERATOR(pg_catalog.<>) %L::pg_catalog.bytea then
            shape := londiste_rs.table_shape(TG_RELID);
        end if;
    end if;
%s    else
        raise exception 'queue %% does not accept events now (inserts disabled)', %L
            using errcode = 'object_not_in_prerequisite_state';
    end if;
    return null;
end $body$;
$f$, fn, i_queue, global_name, shape,
        format('londiste_rs.%I', 'event_' || q.queue_id || '_cur')::regclass::oid,
        db_encoding, fast, q.queue_ntables, not_taking,
        payload, db_encoding, payload, next_attnum, fields, inserts, i_queue);
    execute format('revoke all on function londiste_rs.%I() from public', fn);
    return fn;
end $$;
