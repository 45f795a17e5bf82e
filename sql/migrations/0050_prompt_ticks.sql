-- 0050_prompt_ticks: events are ticked within tens of milliseconds by default (issue 14).
-- The ticker daemon now asks every ticker_period (default 0.02 s) which queues need a tick,
-- which writes nothing when none does (ticker()); ticker_max_lag is then the least time
-- between two ticks while events trickle in. PgQ's 3 seconds made every change wait that long
-- before a subscriber could see it. Queues that exist keep the value they have.
alter table londiste_rs.queue alter queue_ticker_max_lag set default '20 milliseconds';
