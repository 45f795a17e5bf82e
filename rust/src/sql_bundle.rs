//! The repository's `sql/` files, embedded at build time by `build.rs` as (relative path, text),
//! sorted by path.

include!(concat!(env!("OUT_DIR"), "/sql_files.rs"));
