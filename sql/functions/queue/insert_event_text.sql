-- londiste_rs.insert_event(i_queue text, i_ev_type text, i_ev_data text)
--   Inserts a bookkeeping event whose data is text (stored as its UTF-8 bytes).
--   Returns: the event id.
create or replace function londiste_rs.insert_event(i_queue text, i_ev_type text, i_ev_data text)
returns int8 language sql
set search_path = pg_catalog, pg_temp as $$
    select londiste_rs.insert_event(i_queue, i_ev_type, convert_to(i_ev_data, 'UTF8'),
                                    null, null, null, null)
$$;
