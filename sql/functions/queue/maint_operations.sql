-- londiste_rs.maint_operations()
--   Returns: (func_name, func_arg) rows the ticker's maintenance runs, in order; each function
--   is called as func_name(func_arg) again while it returns a positive number, and func_name
--   'vacuum' means VACUUM of the table named in func_arg. Per queue: rotation step1 and step2
--   when due (step2 alone when a switch is incomplete), then the queue's extra_maint functions;
--   then the queue metadata tables to vacuum.
create or replace function londiste_rs.maint_operations(out func_name text, out func_arg text)
returns setof record language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue;
    cur int8;
    tbl int8;
    f text;
begin
    for q in select * from londiste_rs.queue order by queue_id loop
        cur := londiste_rs._cur_table(q.queue_id);
        tbl := londiste_rs._cur_index(cur);  -- (a queue fenced by a takeover rotates)
        if q.queue_switch_step2 is null or q.queue_cur_table <> tbl
           or q.queue_disable_insert <> (cur < 0) then
            func_name := 'londiste_rs.maint_rotate_tables_step2'; func_arg := q.queue_name;
            return next;
        elsif now() >= q.queue_switch_time + q.queue_rotation_period and cur >= 0 then
            func_name := 'londiste_rs.maint_rotate_tables_step1'; func_arg := q.queue_name;
            return next;
            func_name := 'londiste_rs.maint_rotate_tables_step2';
            return next;
        end if;
        foreach f in array coalesce(q.queue_extra_maint, '{}') loop
            func_name := f; func_arg := q.queue_name;
            return next;
        end loop;
    end loop;
    func_arg := null;
    foreach f in array array['londiste_rs.tick', 'londiste_rs.subscription',
                             'londiste_rs.queue', 'londiste_rs.retry_queue'] loop
        func_name := 'vacuum'; func_arg := f;
        return next;
    end loop;
end $$;
