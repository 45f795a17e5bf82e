//! PostgreSQL's binary COPY format, named as rust-postgres names its halves: `read` parses what
//! `COPY ... TO STDOUT (FORMAT binary)` sends (COPY OUT), `write` builds what
//! `COPY ... FROM STDIN (FORMAT binary)` takes (COPY IN).

pub mod read;
pub mod write;
