//! londiste-rs hot path. The modules here are plain Rust with no PyO3 in them; `py` is the only
//! file that knows Python, converting arguments, releasing the GIL and mapping errors.

pub mod copy_binary;
mod py;
pub mod sql_bundle;
