-- londiste_rs.create_queue(i_queue text, i_ntables int4 default 3)
--   Creates a queue: a parent event table event_<id> with i_ntables rotating children
--   event_<id>_<n> (each indexed on ev_txid), the event id, tick id and current-table sequences,
--   and the first tick. Queue names are 1 to 40 letters, digits, _ . or -, and at most 40
--   bytes (the capture triggers are named after them, and names are cut at 63 bytes).
--   Returns: 1 when created, 0 when the queue already exists.
create or replace function londiste_rs.create_queue(i_queue text, i_ntables int4 default 3)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    qid int4;
    base text;
    n int4;
begin
    if i_queue is null or i_queue !~ '^[[:alnum:]_.\-]{1,40}$' then
        raise exception 'invalid queue name %: use 1 to 40 letters, digits, _ . or -',
            quote_literal(coalesce(i_queue, 'NULL')) using errcode = 'invalid_name';
    end if;
    -- the capture triggers are named after the queue, and names are cut at 63 bytes
    if octet_length(i_queue) > 40 then
        raise exception 'invalid queue name %: it is % bytes long, at most 40 are allowed (a letter outside ASCII takes 2 to 4); use a shorter name',
            quote_literal(i_queue), octet_length(i_queue) using errcode = 'invalid_name';
    end if;
    if exists (select 1 from londiste_rs.queue where queue_name = i_queue) then
        return 0;
    end if;
    if i_ntables is null or i_ntables < 2 or i_ntables > 64 then
        raise exception 'invalid table count % for queue %: use 2 to 64 (3 is usual)',
            i_ntables, i_queue using errcode = 'invalid_parameter_value';
    end if;
    insert into londiste_rs.queue (queue_name, queue_ntables) values (i_queue, i_ntables)
        returning queue_id into qid;
    base := 'event_' || qid;
    execute format('create sequence londiste_rs.%I', base || '_id_seq');
    execute format('create sequence londiste_rs.%I', base || '_tick_seq');
    execute format('create sequence londiste_rs.%I minvalue -1000 maxvalue 1000', base || '_cur');
    perform setval(format('londiste_rs.%I', base || '_cur')::regclass, 0, true);
    execute format('create table londiste_rs.%I (like londiste_rs.event_template including defaults)', base);
    execute format('alter table londiste_rs.%I alter ev_id set default nextval(%L::regclass)',
                   base, 'londiste_rs.' || base || '_id_seq');
    for n in 0 .. i_ntables - 1 loop
        execute format('create table londiste_rs.%I () inherits (londiste_rs.%I)', base || '_' || n, base);
        execute format('create index on londiste_rs.%I (ev_txid)', base || '_' || n);
    end loop;
    insert into londiste_rs.tick (tick_queue, tick_id, tick_event_seq)
        values (qid, nextval(format('londiste_rs.%I', base || '_tick_seq')::regclass), 0);
    return 1;
end $$;
