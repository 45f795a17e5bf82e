"""londiste-rs: PostgreSQL replication in the Londiste tradition, with a Rust hot path."""

from londiste_rs._native import __version__

__all__ = ["__version__"]
