-- londiste_rs.maint_rotate_tables_step2(i_queue text)
--   Completes a switch (in a later transaction than step1): records as step2 the xmax of the
--   current snapshot. Every writer of the previous table took its txid before reading the
--   current-table sequence, which step1 changed before this, so all of them are below it.
--   Also brings queue_cur_table / queue_disable_insert back in line with the sequence after a
--   step1 or set_queue_config that rolled back.
--   Returns: 0.
create or replace function londiste_rs.maint_rotate_tables_step2(i_queue text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    cur int8 := londiste_rs._cur_table(q.queue_id);
    tbl int4 := londiste_rs._cur_index(cur);
begin
    if q.queue_switch_step2 is not null and q.queue_cur_table = tbl
       and q.queue_disable_insert = (cur < 0) then
        return 0;
    end if;
    update londiste_rs.queue
       set queue_cur_table = tbl, queue_disable_insert = (cur < 0),
           queue_switch_step2 = case when queue_switch_step2 is null or queue_cur_table <> tbl
                                     then pg_snapshot_xmax(pg_current_snapshot())
                                     else queue_switch_step2 end
     where queue_id = q.queue_id;
    return 0;
end $$;
