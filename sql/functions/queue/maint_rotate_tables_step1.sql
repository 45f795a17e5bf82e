-- londiste_rs.maint_rotate_tables_step1(i_queue text)
--   Rotates the event tables when rotation_period has passed since the last switch: empties
--   the next table and makes writers use it. The next table is the oldest one; it is emptied
--   only when every consumer's position (its last tick's xmin) is past the last switch's
--   step2 txid, i.e. every transaction that could have written into it has ended and every
--   consumer has passed its events (invariant I3). Skips (returns 0) when a reader holds the
--   table, when the last switch awaits step2, or when inserts are disabled (a queue whose
--   capture a takeover fenced is rotated, and stays fenced).
--   Returns: 1 when it switched, else 0.
create or replace function londiste_rs.maint_rotate_tables_step1(i_queue text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    cur int8 := londiste_rs._cur_table(q.queue_id);
    fenced boolean := cur >= 100;  -- a takeover's fence on capture: rotated, and kept
    nxt int4;
    lowest xid8;
    keep int8;
    tbl text;
begin
    if fenced then
        cur := londiste_rs._cur_index(cur);
    end if;
    if cur < 0 or q.queue_switch_step2 is null or q.queue_cur_table <> cur
       or now() < q.queue_switch_time + q.queue_rotation_period then
        return 0;
    end if;
    select min(pg_snapshot_xmin(t.tick_snapshot)), min(t.tick_id) into lowest, keep
      from londiste_rs.subscription s
      join londiste_rs.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
     where s.sub_queue = q.queue_id;
    if lowest < q.queue_switch_step2 then
        return 0;  -- a consumer may still need the events of a transaction before the switch
    end if;
    nxt := (cur + 1) % q.queue_ntables;
    tbl := 'event_' || q.queue_id || '_' || nxt;
    begin
        execute format('lock table londiste_rs.%I in access exclusive mode nowait', tbl);
    exception when lock_not_available then
        return 0;  -- a batch is being read; next time
    end;
    execute format('truncate londiste_rs.%I', tbl);
    update londiste_rs.queue
       set queue_switch_step1 = pg_current_xact_id(), queue_switch_step2 = null,
           queue_switch_time = now()
     where queue_id = q.queue_id;
    -- Ticks before every consumer's position are of no use any more (and registering at one
    -- would miss the events just removed).
    if keep is null then
        select max(tick_id) into keep from londiste_rs.tick where tick_queue = q.queue_id;
    end if;
    delete from londiste_rs.tick where tick_queue = q.queue_id and tick_id < keep;
    -- Last, as it takes effect at once: writers use the emptied table from now on (they wait
    -- for our lock, so they see it empty).
    perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_cur')::regclass,
                   nxt + case when fenced then 100 else 0 end);
    return 1;
end $$;
