-- Node locations hold no passwords (DESIGN I6; londiste-rs stores them without password and
-- sslpassword since this version, see python/londiste_rs/pg/location.py). Rows stored by
-- earlier versions lose them here, in both libpq forms:
--   key=value:  password=... and sslpassword=... pairs (quoted 'with spaces' or unquoted,
--               backslash escapes), whatever the spacing around '=';
--   URI:        the password of the userinfo (postgresql://user:PASSWORD@host) and the
--               password= / sslpassword= query parameters.
-- Only rows that mention a password or have URI userinfo with one are rewritten. Every name is
-- schema-qualified: this runs with the installer's search_path.
do $scrub$
declare
    r record;
    loc pg_catalog.text;
    prev pg_catalog.text;
    kv pg_catalog.text[];
    pairs pg_catalog.text[];
begin
    for r in
        select queue_name, node_name, node_location from londiste_rs.node_location
         where node_location OPERATOR(pg_catalog.~*) 'password'
            or node_location OPERATOR(pg_catalog.~*) '^postgres(ql)?://[^:@/?#]*:[^@/?#]*@'
    loop
        loc := r.node_location;
        if loc OPERATOR(pg_catalog.~*) '^postgres(ql)?://' then
            loc := pg_catalog.regexp_replace(
                loc, '^(postgres(?:ql)?://[^:@/?#]*):[^@/?#]*@', '\1@', 'i');
            loop  -- one parameter per pass: the next one's '&' is consumed by this one's match
                prev := loc;
                loc := pg_catalog.regexp_replace(loc, '([?&])(?:ssl)?password=[^&#]*&?', '\1', 'i');
                exit when loc OPERATOR(pg_catalog.=) prev;
            end loop;
            loc := pg_catalog.regexp_replace(loc, '[?&]$', '');
        else
            pairs := '{}';
            for kv in
                select pg_catalog.regexp_matches(loc,
                    '\s*([^\s=]+)\s*=\s*(''(?:[^''\\]|\\.)*''|(?:[^\s''\\]|\\.)(?:[^\s\\]|\\.)*|)',
                    'g')
            loop
                if pg_catalog.lower(kv[1]) OPERATOR(pg_catalog.<>) 'password'
                   and pg_catalog.lower(kv[1]) OPERATOR(pg_catalog.<>) 'sslpassword' then
                    pairs := pg_catalog.array_append(pairs,
                        pg_catalog.concat(kv[1], '=', kv[2]));
                end if;
            end loop;
            loc := pg_catalog.array_to_string(pairs, ' ');
        end if;
        update londiste_rs.node_location set node_location = loc
         where queue_name OPERATOR(pg_catalog.=) r.queue_name
           and node_name OPERATOR(pg_catalog.=) r.node_name;
    end loop;
end
$scrub$;
