-- londiste_rs.table_shape(i_table regclass)
--   The table's shape: a digest of its columns' names and types in column order. The capture
--   trigger writes it into every data event (ev_extra3); a subscriber refuses an event whose
--   shape is not the table's on its provider, so a column changed while events were queued
--   can never shift values into another column (internals §3). Names are compared, not
--   attnums, so nodes whose tables were created separately agree.
--   Returns: an md5 hex digest.
create or replace function londiste_rs.table_shape(i_table regclass)
returns text language sql stable
set search_path = pg_catalog, pg_temp
as $$
    select md5(string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod),
                          ', ' order by a.attnum))
      from pg_attribute a
     where a.attrelid = i_table and a.attnum > 0 and not a.attisdropped;
$$;
