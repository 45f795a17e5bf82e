-- londiste_rs.maint_retry_events()
--   Moves due retry events (at most 10000 per call) back into their queue's current event
--   table, keeping ev_id and ev_owner; they get this transaction's txid, so they appear in
--   the owner's next batch after this commits. Queues with inserts disabled wait.
--   Returns: the number of events moved (the ticker calls again while it is positive).
create or replace function londiste_rs.maint_retry_events()
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    qid int4;
    cur int8;
    n int4;
    moved int4 := 0;
begin
    perform pg_current_xact_id();  -- a txid before reading the current table, as insert_event
    for qid in select distinct ev_queue from londiste_rs.retry_queue where ev_retry_after <= now()
    loop
        cur := londiste_rs._cur_table(qid);
        continue when cur < 0;
        execute format(
            'with due as (delete from londiste_rs.retry_queue where ctid in ('
            '  select ctid from londiste_rs.retry_queue where ev_queue = $1 and ev_retry_after <= now()'
            '  order by ev_retry_after limit $2 for update skip locked) returning *)'
            ' insert into londiste_rs.%I (ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
            ' ev_extra1, ev_extra2, ev_extra3, ev_extra4)'
            ' select ev_id, ev_time, ev_owner, ev_retry, ev_type, ev_data,'
            ' ev_extra1, ev_extra2, ev_extra3, ev_extra4 from due',
            'event_' || qid || '_' || londiste_rs._cur_index(cur)) using qid, 10000 - moved;
        get diagnostics n = row_count;
        moved := moved + n;
        exit when moved >= 10000;
    end loop;
    return moved;
end $$;
