"""Type stubs for the Rust extension module `londiste_rs._native` (rust/src/py.rs), checked
against the built module by `make lint` (mypy.stubtest). A directory, so that the
`_native._testing` submodule has stubs too; the module itself is the compiled file."""

from collections.abc import Mapping, Sequence
from enum import IntEnum
from typing import Any, Self, final

import psycopg
from typing_extensions import Buffer

from londiste_rs._native import _testing as _testing

__all__ = [
    "Barrier",
    "BatchDecoder",
    "ReadAhead",
    "Step",
    "StepKind",
    "__version__",
    "libpq_path",
    "relay",
    "sql_files",
]

__version__: str

def sql_files() -> list[tuple[str, str]]:
    """The embedded `sql/` files as (relative path, text), sorted by path."""

class StepKind(IntEnum):
    """What a `Step` does with its rows (docs/internals.md, §4)."""

    DELETE = 1
    UPSERT = 2
    UPDATE = 3
    INSERT = 4
    TRUNCATE = 5

@final
class Step:
    """One apply step: the rows of one table, kind and client encoding as a binary COPY
    payload. Made by `BatchDecoder.drain`."""

    @property
    def kind(self) -> StepKind: ...
    @property
    def table(self) -> str:
        """The table's name as given to `add_table`."""
    @property
    def payload(self) -> bytes:
        """Binary COPY of the key columns (DELETE), of `out_cols` (UPDATE, INSERT, UPSERT),
        or empty (TRUNCATE)."""
    @property
    def rows(self) -> int: ...
    @property
    def encoding(self) -> str | None:
        """None, or the client encoding the payload's text is in."""
    @property
    def more(self) -> bool:
        """The next step goes on with these rows (same kind, table and encoding, other
        keys): cut for its size only, it may be staged with the next before one merge."""

@final
class Barrier:
    """Where a `BatchDecoder` stopped (docs/internals.md, section 4): `kind` "event", just
    after an event of one of its `barrier_types` (ev_type, extra1, extra2, data: the event's);
    or "shape", just before a row event its table's spec does not fit (`table`; `shape`: the
    event's ev_extra3; `problem`: why its fields do not fit, None when only the shape
    differs or the table is blocked)."""

    @property
    def kind(self) -> str: ...
    @property
    def ev_id(self) -> int: ...
    @property
    def txid(self) -> int: ...
    @property
    def ev_type(self) -> str: ...
    @property
    def table(self) -> str | None: ...
    @property
    def shape(self) -> str | None: ...
    @property
    def problem(self) -> str | None: ...
    @property
    def extra1(self) -> str | None: ...
    @property
    def extra2(self) -> bytes | None: ...
    @property
    def data(self) -> bytes | None: ...

@final
class BatchDecoder:
    """Decodes a batch's events into apply steps (docs/internals.md, section 4).

    Input: the bytes of `COPY (...) TO STDOUT (FORMAT binary)` of the columns ev_id, ev_txid,
    ev_type, ev_extra1, ev_data, ev_extra2, ev_extra4, fed in chunks split anywhere. Malformed
    input raises `errors.DecodeError` (a ValueError) naming the event id; the decoder is then
    unusable.
    """

    def __new__(
        cls,
        chunk_bytes: int = ...,
        exact_order: bool = False,
        barrier_types: Sequence[str] = ...,
        shape_barriers: bool = False,
    ) -> Self:
        """chunk_bytes (default 64 MiB): drain threshold and largest step payload.
        barrier_types: event types the decoder stops after (`barrier()`); shape_barriers:
        a row its table's spec does not fit stops the decoder before it instead of being
        refused."""
    def add_table(
        self,
        name: str,
        ncols: int,
        key_cols: Sequence[int],
        out_cols: Sequence[int],
        walk_cols: Sequence[int] = ...,
        skip_snapshot: tuple[int, int, Sequence[int]] | None = None,
        shape: str | None = None,
        col_types: Sequence[int] = ...,
        blocked: bool = False,
    ) -> None:
        """Replicate events whose ev_extra1 is `name`; indices are full-row field positions.
        `shape`: refuse events whose ev_extra3 is another one; `col_types`: the source
        columns' type OIDs (0: not checked), a field of another type is refused. `blocked`
        (shape barriers only): every row event of the table stops the decoder."""

    def replace_table(
        self,
        name: str,
        ncols: int,
        key_cols: Sequence[int],
        out_cols: Sequence[int],
        walk_cols: Sequence[int] = ...,
        skip_snapshot: tuple[int, int, Sequence[int]] | None = None,
        shape: str | None = None,
        col_types: Sequence[int] = ...,
        blocked: bool = False,
    ) -> None:
        """Another spec for a table added before, keeping its place in the apply order;
        what is pending is flushed into steps first."""

    def early_inserts(self, names: Sequence[str]) -> None:
        """The tables whose new keys may be inserted before the batch's other pending
        changes (no unique constraint but their key): memory then holds the existing keys'
        rows for longer, so they coalesce over more events. Replaces the previous list."""

    def barrier(self) -> Barrier | None:
        """Where the decoder stopped; it takes no input until `resume()`."""

    def resume(self) -> None:
        """Goes on with the input kept at the barrier (it may stop at the next one)."""

    def set_skip_events(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Row events whose ev_id is in one of these inclusive ranges are skipped (stats:
        skipped_own) until called again; empty: none."""

    def set_type_map(self, map: Mapping[int, tuple[int, str, int | None]]) -> None:
        """{src_oid: (dst_oid, kind, inner_src_oid)}, kind: array, composite, range,
        multirange, domain or scalar. Replaces any earlier map."""

    def feed(self, chunk: Buffer) -> None:
        """The next chunk of the stream (bytes, bytearray, memoryview...)."""

    def finish(self) -> None:
        """End of input; raises DecodeError when the stream stopped before its trailer."""

    def pending_bytes(self) -> int:
        """Memory held by coalesced rows and undrained steps; drain() at chunk_bytes."""

    def drain(self) -> list[Step]:
        """Steps for everything fed so far, in apply order."""

    def next_step(self) -> Step | None:
        """The next of the steps drain() would give, or None; made one at a time (each at most
        about chunk_bytes / 4), so applying them holds the coalesced rows and one step."""

    def other_events(self) -> list[tuple[int, str, str | None, bytes | None]]:
        """Non-data events (ev_id, ev_type, ev_extra1, ev_data) since the last call."""

    def stats(self) -> dict[str, int]:
        """Counters: bytes_in, events, inserts, updates, deletes, truncates, key_changes,
        skipped_snapshot, skipped_table, skipped_own, other_events, steps, step_rows."""

def libpq_path() -> str:
    """The file of the libpq the COPY loops call: the one loaded into the process whose
    version is psycopg's `pq.version()`. Raises LondisteError unless exactly one is."""

def relay(src: psycopg.Connection[Any], dst: psycopg.Connection[Any]) -> int:
    """Moves the rows of the COPY OUT running on `src` into the COPY IN running on `dst` until
    the source's COPY ends, without the GIL; returns the bytes moved. The caller holds both
    connections' `lock`. Raises CopySourceFailed or CopyTargetFailed naming the failed side
    (the server's error is in that connection's result)."""

@final
class ReadAhead:
    """A COPY OUT's data read ahead in Rust by a thread of its own, in chunks of at least
    `chunk` bytes, at most `depth` of them waiting. The caller holds `conn.lock` until
    close() returned; the reader keeps `conn` referenced. Iterate for the chunks, then
    close()."""

    def __new__(cls, conn: psycopg.Connection[Any], chunk: int, depth: int = 2) -> Self: ...
    def __iter__(self) -> Self: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None:
        """Stops reading and waits for the thread (cancel the query first to stop a running
        COPY); raises CopySourceFailed when the source's COPY failed."""
