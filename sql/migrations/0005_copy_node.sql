-- The initial copy from another node of the cascade (add-table/resync --copy-node=NODE,
-- stored as table_attrs copy_node=NODE). Such a copy holds NODE's rows as of NODE's last
-- applied tick T; the events of ticks <= T are then skipped through the provider's tick T
-- snapshot (custom_snapshot). When the provider has no tick T yet (NODE is ahead of it),
-- copy_tick holds T until the worker reaches it and stores that snapshot instead.

alter table londiste_rs.table_info add column copy_tick int8;
