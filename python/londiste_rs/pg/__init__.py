"""PostgreSQL primitives shared by every part: connections, the libpq bridge, names,
catalog reads and DDL. Nothing here knows the londiste_rs schema."""
