-- 0007_max_consumer_lag: an opt-in limit on how far a consumer may lag while it holds back
-- the rotation of the event tables (review finding 9): a consumer that has gone away would
-- otherwise keep every event forever. NULL (the default): never unregister anyone. The ticker
-- unregisters a consumer that blocks rotation with a lag above it (set_queue_config
-- 'max_consumer_lag'; rotation_blockers() lists who blocks).
alter table londiste_rs.queue add column queue_max_consumer_lag interval
    check (queue_max_consumer_lag > interval '0');
