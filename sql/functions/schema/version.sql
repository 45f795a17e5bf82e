-- londiste_rs.version()
--   Returns: the londiste-rs package version that installed (or last upgraded) this schema.
--   The installer puts the version in place of the marker below.
create or replace function londiste_rs.version() returns text
language sql immutable
set search_path = pg_catalog, pg_temp as $$ select '@PACKAGE_VERSION@'::text $$;
