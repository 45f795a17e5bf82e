"""The PNG chart: one panel per scenario, the median of each tool's headline metric.

matplotlib is a bench-only dependency (the `bench` extra), installed into the running
interpreter's environment on first use when missing; it is never needed by the package."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from support.report import medians
from support.results import Results

COLORS = {"ours": "#d95f02", "londiste3": "#7570b3", "logical": "#1b9e77", "raw": "#999999",
          "none": "#999999", "pgcopydb": "#999999"}  # fmt: skip


def _matplotlib() -> Any:
    try:
        return importlib.import_module("matplotlib")
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "matplotlib"], check=True)  # fmt: skip
        return importlib.import_module("matplotlib")


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def draw(results: Results, path: Path, names: Sequence[tuple[str, str]]) -> None:
    mpl = _matplotlib()
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    label = dict(names)
    keys = list(results.scenarios)
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        info = results.scenarios[key]
        metric = info["metrics"][0]
        med = medians(results, key)
        tools = [t for t, _ in info["tools"] if metric["key"] in med.get(t, {})]
        values = [med[t][metric["key"]] for t in tools]
        bars = ax.bar(range(len(tools)), values, color=[COLORS.get(t, "#666") for t in tools])
        ax.bar_label(bars, labels=[_label(v) for v in values], fontsize=7)
        ax.set_xticks(range(len(tools)), [label.get(t, t) for t in tools], rotation=30,
                      ha="right", fontsize=8)  # fmt: skip
        ax.set_title(f"{key}\n{metric['title']}", fontsize=9)
        ax.set_ylabel(f"{metric['unit']} ({metric['better']} is better)", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        missing = [label.get(t, t) for t, _ in info["tools"] if t not in tools]
        if missing:
            ax.set_xlabel("n/a: " + ", ".join(missing), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
