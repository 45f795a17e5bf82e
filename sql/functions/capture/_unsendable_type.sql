-- londiste_rs._unsendable_type(i_type oid)
--   Returns: the name of the first type inside i_type (itself, a domain's base, an array's
--   element, a composite's fields, a range's subtype) that has no binary send function, or
--   NULL when record_send can send every value of i_type.
create or replace function londiste_rs._unsendable_type(i_type oid)
returns text language plpgsql stable
set search_path = pg_catalog, pg_temp as $$
declare
    t pg_type;
    inner_type oid;
    found_name text;
begin
    select * into t from pg_type where oid = i_type;
    if t.typsend = 0 then
        return format_type(i_type, null);
    end if;
    if t.typtype = 'd' then
        return londiste_rs._unsendable_type(t.typbasetype);
    elsif t.typtype = 'r' then
        return londiste_rs._unsendable_type((select rngsubtype from pg_range where rngtypid = i_type));
    elsif t.typtype = 'm' then
        return londiste_rs._unsendable_type((select rngtypid from pg_range where rngmultitypid = i_type));
    elsif t.typtype = 'c' then
        for inner_type in select atttypid from pg_attribute
                           where attrelid = t.typrelid and attnum > 0 and not attisdropped
                           order by attnum loop
            found_name := londiste_rs._unsendable_type(inner_type);
            if found_name is not null then
                return found_name;
            end if;
        end loop;
    elsif t.typelem <> 0 and t.typsubscript = 'array_subscript_handler'::regproc then
        return londiste_rs._unsendable_type(t.typelem);
    end if;
    return null;
end $$;
