"""PostgreSQL's transaction snapshot (`pg_snapshot`), the one type for every snapshot the
package reads: a copy's, a tick's, a table's skip snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    """A pg_snapshot: transactions below xmin and not in xip, and below xmax, are visible."""

    xmin: int
    xmax: int
    xip: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Snapshot:
        xmin, xmax, xip = text.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))

    def __str__(self) -> str:
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, self.xip))}"

    def as_tuple(self) -> tuple[int, int, list[int]]:
        """The form BatchDecoder.add_table(skip_snapshot=...) takes."""
        return (self.xmin, self.xmax, list(self.xip))

    def visible(self, txid: int) -> bool:
        """pg_visible_in_snapshot(txid, self)."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.xip)

    @classmethod
    def all_visible(cls) -> Snapshot:
        """A snapshot in which every transaction is visible (as a skip snapshot: every event
        of the table is skipped)."""
        return cls(1 << 62, 1 << 62, ())
