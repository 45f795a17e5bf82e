"""Settings every session of londiste-rs carries (pg/db.py adds them to each connection)."""

from __future__ import annotations

# `londiste_rs.replica = on`: the session is londiste-rs itself. On a node whose capture a
# takeover fenced (an old root that follows the new one, a subscriber about to be promoted),
# the capture and refusal triggers let the rows our worker, copies and repair write through,
# uncaptured, while the application's writes are refused
# (sql/functions/takeover/_capture_refused.sql, _refuse_writes.sql). Read on that path only.
REPLICA_SETTING = "londiste_rs.replica=on"
