-- merge_state takes only the states this version sets (docs/internals.md, "Table states"):
-- NULL (needs its initial copy), 'in-copy', 'ok', 'failed'. londiste3's 'catching-up',
-- 'wanna-sync:T' and 'do-sync:T' (named in 0003) are never set: the copy's snapshot makes
-- a table join the event stream at once. A value this version does not know needs a copy.

update londiste_rs.table_info set merge_state = null
 where merge_state not in ('in-copy', 'ok', 'failed');

alter table londiste_rs.table_info
    add constraint table_info_merge_state_check
    check (merge_state in ('in-copy', 'ok', 'failed'));
