"""Measurements as they are taken, saved as JSON next to the report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    unit: str
    better: str  # "lower" or "higher"


@dataclass
class Sample:
    scenario: str
    tool: str
    run: int
    metrics: dict[str, float]
    verified: bool
    note: str = ""


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    # scenario key -> {"title", "metrics": [Metric...], "tools": [(key, name)...]}
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    # scenario -> tool -> why it did not run
    unavailable: dict[str, dict[str, str]] = field(default_factory=dict)
    # scenario -> tool -> errors of runs that failed
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def declare(self, key: str, title: str, metrics: list[Metric],
                tools: list[tuple[str, str]], notes: str = "") -> None:  # fmt: skip
        self.scenarios[key] = {"title": title, "metrics": [asdict(m) for m in metrics],
                               "tools": tools, "notes": notes}  # fmt: skip

    def add(self, sample: Sample) -> None:
        self.samples.append(sample)

    def not_available(self, scenario: str, tool: str, why: str) -> None:
        self.unavailable.setdefault(scenario, {})[tool] = why

    def failed(self, scenario: str, tool: str, error: str) -> None:
        self.errors.setdefault(scenario, {}).setdefault(tool, []).append(error)

    def save(self, path: Path) -> None:
        data = {"meta": self.meta, "scenarios": self.scenarios,
                "samples": [asdict(s) for s in self.samples],
                "unavailable": self.unavailable, "errors": self.errors}  # fmt: skip
        path.write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Results:
        data = json.loads(path.read_text())
        return cls(meta=data["meta"], scenarios=data["scenarios"],
                   samples=[Sample(**s) for s in data["samples"]],
                   unavailable=data["unavailable"], errors=data["errors"])  # fmt: skip
