"""The markdown report: medians of verified runs and ratios (ours ÷ each peer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from support.measure import median
from support.results import Results, Sample

OURS = "ours"


def verified_values(results: Results, scenario: str, tool: str, metric: str) -> list[float]:
    return [s.metrics[metric] for s in _samples(results, scenario, tool) if s.verified]


def _samples(results: Results, scenario: str, tool: str) -> list[Sample]:
    return [s for s in results.samples if s.scenario == scenario and s.tool == tool]


def medians(results: Results, scenario: str) -> dict[str, dict[str, float]]:
    """tool -> metric -> median over verified runs (tools without a verified run left out)."""
    out: dict[str, dict[str, float]] = {}
    info = results.scenarios[scenario]
    for tool, _ in info["tools"]:
        for m in info["metrics"]:
            values = verified_values(results, scenario, tool, m["key"])
            if values:
                out.setdefault(tool, {})[m["key"]] = median(values)
    return out


def _fmt(value: float, unit: str) -> str:
    if unit in ("s",):
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def _status(results: Results, scenario: str, tool: str) -> str | None:
    """Why a tool has no figure, or None when it has one."""
    why = results.unavailable.get(scenario, {}).get(tool)
    if why:
        return why
    samples = _samples(results, scenario, tool)
    errors = results.errors.get(scenario, {}).get(tool, [])
    if not any(s.verified for s in samples):
        if errors:
            return f"failed: {errors[0]}"
        return "no verified run" if samples else "not run"
    return None


def scenario_table(results: Results, scenario: str) -> list[str]:
    info = results.scenarios[scenario]
    metrics: list[dict[str, Any]] = info["metrics"]
    med = medians(results, scenario)
    ours = med.get(OURS)
    head = ["tool", "verified runs"] + [f"{m['title']} ({m['unit']})" for m in metrics]
    if ours:
        head += [f"ours ÷ this, {m['title']}" for m in metrics]
    lines = [f"### {info['title']}", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]  # fmt: skip
    for tool, name in info["tools"]:
        samples = _samples(results, scenario, tool)
        runs = f"{sum(s.verified for s in samples)}/{len(samples)}"
        why = _status(results, scenario, tool)
        if why:
            row = [name, runs, why] + [""] * (len(head) - 3)
        else:
            row = [name, runs] + [_fmt(med[tool][m["key"]], m["unit"]) for m in metrics]
            if ours:
                row += [_ratio(ours[m["key"]], med[tool][m["key"]]) for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", info.get("notes", ""), ""]
    return lines


def coalescing_note(results: Results) -> list[str]:
    """What coalescing is worth to each tool: its drain rate on pgbench's mix (`backlog`, hot
    rows changed over and over) against its rate when no key repeats (`backlog-distinct`)."""
    if not {"backlog", "backlog-distinct"} <= set(results.scenarios):
        return []
    mix, distinct = medians(results, "backlog"), medians(results, "backlog-distinct")
    parts = []
    for tool, name in results.scenarios["backlog-distinct"]["tools"]:
        a = mix.get(tool, {}).get("events_per_s")
        b = distinct.get(tool, {}).get("events_per_s")
        if a and b:
            parts.append(f"{name} {_fmt(a, 'row events/s')} against {_fmt(b, 'row events/s')}"
                         f" ({a / b:.2f}×)")  # fmt: skip
    if not parts:
        return []
    return [
        "**What coalescing is worth** (the two backlogs of this run, drain rate on pgbench's mix "
        "against the rate when no key repeats, row events/s): " + "; ".join(parts) + ". "
        "The mix changes 1 branch and 10 teller rows over and over: londiste-rs writes each "
        "key's final row once per batch, the others apply every event. The two backlogs differ "
        "in more than repeated keys (the mix has no deletes, the distinct one more accounts), "
        "so each figure compares a tool with itself.",
        "",
    ]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "–"


def summary_table(results: Results, peers: Sequence[tuple[str, str]]) -> list[str]:
    """One line per scenario and metric: each tool's median, the scenario's reference (the raw
    COPY pipe, writes with no capture, pgcopydb) where it has one, and ours ÷ each of them."""
    head = ["scenario", "metric"] + [n for _, n in peers] + ["reference"]
    head += [f"ours ÷ {n}" for k, n in peers if k != OURS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    peer_keys = {k for k, _ in peers}
    for key, info in results.scenarios.items():
        med = medians(results, key)
        references = [(t, n) for t, n in info["tools"] if t not in peer_keys]
        for m in info["metrics"]:
            row = [key, f"{m['title']} ({m['unit']}, {m['better']} is better)"]
            for tool, _ in peers:
                v = med.get(tool, {}).get(m["key"])
                row.append(_fmt(v, m["unit"]) if v is not None else "n/a")
            ours = med.get(OURS, {}).get(m["key"])
            refs = []
            for tool, name in references:
                v = med.get(tool, {}).get(m["key"])
                if v is not None:
                    vs = f" (ours ÷ {name}: {_ratio(ours, v)})" if ours is not None else ""
                    refs.append(f"{name}: {_fmt(v, m['unit'])}{vs}")
            row.append(", ".join(refs) or "–")
            for tool, _ in peers:
                if tool == OURS:
                    continue
                v = med.get(tool, {}).get(m["key"])
                row.append(_ratio(ours, v) if ours is not None and v is not None else "n/a")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def render(results: Results, peers: Sequence[tuple[str, str]], machine: str,
           chart: str | None) -> str:  # fmt: skip
    meta = results.meta
    lines = [
        "# londiste-rs bench results",
        "",
        f"{meta.get('mode', '')} run of `bench/run.py` finished {meta.get('finished', '')}, "
        f"{meta.get('duration_s', 0):.0f} s; every figure is the median of the verified runs "
        f"({meta.get('runs', '?')} per tool, taken alternately). A run counts only when the "
        "subscriber's tables equal the provider's afterwards (row count and md5 of the sorted "
        "row texts of every table). 'n/a' means no verified figure; the tables below say why.",
        "",
        *summary_table(results, peers),
        "",
    ]
    if chart:
        lines += [f"![medians]({chart})", ""]
    for key in results.scenarios:
        lines += scenario_table(results, key)
        if key == "backlog-distinct":
            lines += coalescing_note(results)
    lines += ["## Machine", "", machine, ""]
    return "\n".join(lines)
