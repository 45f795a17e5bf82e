-- worker_heartbeat(queue, pid, host, period, activity, phase): the local worker's sign of life
-- (migration 0040), written every `period` by its heartbeat thread. phase: 'start' (a worker
-- starts: started_at is now), 'beat', or 'stop' (it stops cleanly: stopped_at is now).
-- Returns true, or NULL when this database is not a node of the queue.
create or replace function londiste_rs.worker_heartbeat(
    i_queue text, i_pid int4, i_host text, i_period interval, i_activity text,
    i_phase text default 'beat')
returns boolean language plpgsql
set search_path = pg_catalog, pg_temp as $$
begin
    if i_phase not in ('start', 'beat', 'stop') then
        raise exception 'worker_heartbeat: phase % is not start, beat or stop', i_phase
            using errcode = 'invalid_parameter_value';
    end if;
    insert into londiste_rs.worker_heartbeat as h
           (queue_name, worker_pid, worker_host, started_at, beat_at, beat_period, stopped_at,
            activity, activity_since)
    select n.queue_name, i_pid, i_host, now(), now(), i_period,
           case when i_phase = 'stop' then now() end, i_activity, now()
      from londiste_rs.node_info n
     where n.queue_name = i_queue
    on conflict (queue_name) do update
       set worker_pid = excluded.worker_pid,
           worker_host = excluded.worker_host,
           started_at = case
               when i_phase = 'start' or h.stopped_at is not null
                    or h.worker_pid is distinct from excluded.worker_pid
                    or h.worker_host is distinct from excluded.worker_host
               then excluded.started_at else h.started_at end,
           beat_at = excluded.beat_at,
           beat_period = excluded.beat_period,
           stopped_at = excluded.stopped_at,
           activity = excluded.activity,
           activity_since = case
               when h.activity is distinct from excluded.activity or i_phase = 'start'
               then excluded.activity_since else h.activity_since end;
    return case when found then true end;
end $$;
