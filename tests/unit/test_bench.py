"""The bench's figures and report (bench/support), without running it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _bench_modules() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        from support import measure, report, results
    finally:
        sys.path.remove(str(BENCH))
    return measure, report, results


def test_percentiles_are_nearest_rank() -> None:
    measure, _, _ = _bench_modules()
    values = [float(v) for v in range(100, 0, -1)]
    assert measure.percentile(values, 50) == 50.0
    assert measure.percentile(values, 99) == 99.0
    assert measure.percentile([7.0], 99) == 7.0
    assert measure.median([3.0, 1.0, 2.0]) == 2.0


def test_report_counts_only_verified_runs_and_divides_ours_by_each_peer() -> None:
    _, report, results = _bench_modules()
    r = results.Results(meta={"mode": "test", "runs": 3, "duration_s": 1.0})
    metric = results.Metric("rate", "rate", "ev/s", "higher")
    r.declare("backlog", "Backlog", [metric], [("ours", "londiste-rs"), ("peer", "peer")])
    for run, (ours, peer) in enumerate([(300.0, 100.0), (200.0, 50.0), (250.0, 75.0)]):
        r.add(results.Sample("backlog", "ours", run, {"rate": ours}, True))
        r.add(results.Sample("backlog", "peer", run, {"rate": peer}, True))
    # An unverified run never counts, however good its figure.
    r.add(results.Sample("backlog", "peer", 3, {"rate": 1e9}, False))
    assert report.medians(r, "backlog") == {"ours": {"rate": 250.0}, "peer": {"rate": 75.0}}
    text = report.render(r, [("ours", "londiste-rs"), ("peer", "peer")], "machine", None)
    assert "3.33×" in text  # 250 ÷ 75
    assert "| peer | 3/4 |" in text


def test_compare_counts_a_run_only_when_the_tool_answers_right() -> None:
    import json
    import subprocess

    sys.path.insert(0, str(BENCH))
    try:
        from peers import Londiste3, LondisteRs
        from scenarios import compare
    finally:
        sys.path.remove(str(BENCH))

    def ours(code: int, different: list[list[str]], extra: list[list[str]] | None = None) -> Any:
        d = {"missing_here": [], "extra_here": extra or [], "different": different}
        return subprocess.CompletedProcess([], code, json.dumps([d]), "")

    rs, l3 = LondisteRs(), Londiste3()
    assert compare._judge(rs, ours(0, []), None)[0]
    assert compare._judge(rs, ours(1, [["42"]]), 42)[0]
    # The changed row only, named as different, with exit 1.
    assert not compare._judge(rs, ours(0, [["42"]]), 42)[0]
    assert not compare._judge(rs, ours(1, [["41"]]), 42)[0]
    assert not compare._judge(rs, ours(1, [["42"]], extra=[["7"]]), 42)[0]
    assert not compare._judge(rs, ours(2, []), None)[0]
    mismatch = "WARNING public.pgbench_accounts: Results do not match!"
    assert compare._judge(l3, subprocess.CompletedProcess([], 1, "", mismatch), 42)[0]
    assert not compare._judge(l3, subprocess.CompletedProcess([], 0, "", ""), 42)[0]
    assert compare._judge(l3, subprocess.CompletedProcess([], 0, "", ""), None)[0]
