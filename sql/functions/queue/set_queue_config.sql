-- londiste_rs.set_queue_config(i_queue text, i_param text, i_value text)
--   Changes one per-queue setting (with or without the queue_ prefix): ticker_max_count,
--   ticker_max_lag, ticker_idle_period, ticker_paused, rotation_period, external_ticker,
--   disable_insert, extra_maint (comma-separated function names, empty for none),
--   max_consumer_lag (an interval, empty for none: the ticker unregisters a consumer that
--   blocks rotation with a lag above it).
--   Returns: 1.
create or replace function londiste_rs.set_queue_config(i_queue text, i_param text, i_value text)
returns int4 language plpgsql
set search_path = pg_catalog, pg_temp as $$
declare
    q londiste_rs.queue := londiste_rs._queue(i_queue, true);
    p text := regexp_replace(lower(coalesce(i_param, '')), '^queue_', '');
    cur int8;
begin
    begin
        case p
        when 'ticker_max_count' then
            update londiste_rs.queue set queue_ticker_max_count = i_value::int4 where queue_id = q.queue_id;
        when 'ticker_max_lag' then
            update londiste_rs.queue set queue_ticker_max_lag = i_value::interval where queue_id = q.queue_id;
        when 'ticker_idle_period' then
            update londiste_rs.queue set queue_ticker_idle_period = i_value::interval where queue_id = q.queue_id;
        when 'ticker_paused' then
            update londiste_rs.queue set queue_ticker_paused = i_value::boolean where queue_id = q.queue_id;
        when 'rotation_period' then
            update londiste_rs.queue set queue_rotation_period = i_value::interval where queue_id = q.queue_id;
        when 'external_ticker' then
            update londiste_rs.queue set queue_external_ticker = i_value::boolean where queue_id = q.queue_id;
        when 'extra_maint' then
            update londiste_rs.queue
               set queue_extra_maint = nullif(string_to_array(replace(i_value, ' ', ''), ','), '{}')
             where queue_id = q.queue_id;
        when 'max_consumer_lag' then
            update londiste_rs.queue
               set queue_max_consumer_lag = nullif(trim(coalesce(i_value, '')), '')::interval
             where queue_id = q.queue_id;
        when 'disable_insert' then
            update londiste_rs.queue set queue_disable_insert = i_value::boolean where queue_id = q.queue_id;
        else
            raise exception 'unknown queue setting %: use ticker_max_count, ticker_max_lag, '
                'ticker_idle_period, ticker_paused, rotation_period, external_ticker, '
                'disable_insert, extra_maint or max_consumer_lag', quote_literal(coalesce(i_param, ''))
                using errcode = 'invalid_parameter_value';
        end case;
    exception
        when invalid_text_representation or invalid_datetime_format or datetime_field_overflow
             or numeric_value_out_of_range or check_violation or not_null_violation then
            raise exception 'invalid value % for queue setting %: %', quote_literal(coalesce(i_value, 'NULL')),
                p, sqlerrm using errcode = 'invalid_parameter_value';
    end;
    if p = 'disable_insert' then
        -- Writers read the current table from a sequence; a negative value -1-n refuses inserts.
        -- Set last (non-transactional); maint_rotate_tables_step2 repairs it after a rollback.
        cur := londiste_rs._cur_table(q.queue_id);
        -- (a takeover's fence, 100 + n, gives way to disabled inserts, and is not restored)
        if (cur < 0) <> i_value::boolean then
            perform setval(format('londiste_rs.%I', 'event_' || q.queue_id || '_cur')::regclass,
                           case when i_value::boolean then -1 - londiste_rs._cur_index(cur)
                                else londiste_rs._cur_index(cur) end);
        end if;
    end if;
    return 1;
end $$;
