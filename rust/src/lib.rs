//! londiste-rs hot path. The modules here are plain Rust with no PyO3 in them; `py` is the only
//! file that knows Python, converting arguments, releasing the GIL and mapping errors.

pub mod coalesce;
pub mod decoder;
pub mod exact;
pub mod pgcopy;
pub mod pq;
mod py;
pub mod record;
pub mod snapshot;
pub mod sql_bundle;
pub mod step;
#[cfg(test)]
mod test_support;
pub mod typemap;
