"""`londiste_rs._native._testing`: helpers for tests and tools, off the module the package
uses."""

from collections.abc import Sequence

__all__ = ["encode_copy"]

def encode_copy(rows: Sequence[Sequence[object]], types: Sequence[str]) -> bytes:
    """Encodes rows of Python values as one binary COPY stream. `types`: each column's type
    (bool, int2, int4, int8, float4, float8, text, varchar, json, name, bytea, jsonb, numeric,
    timestamp, timestamptz, date, uuid); None is NULL."""
