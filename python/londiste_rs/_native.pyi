"""Type stubs for the Rust extension module `londiste_rs._native`."""

from collections.abc import Sequence

__version__: str

def encode_copy(rows: Sequence[Sequence[object]], types: Sequence[str]) -> bytes:
    """Encode rows of Python values as one binary COPY stream (tools and tests only)."""

def sql_files() -> list[tuple[str, str]]:
    """The embedded `sql/` files as (relative path, text), sorted by path."""
