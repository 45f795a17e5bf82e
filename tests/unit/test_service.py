"""Running it like a service (issue 15), without a server: the metrics_listen and log_format
keys, JSON log lines, the copy counters, and the Grafana dashboard naming only metrics the
daemons export."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from londiste_rs import metrics
from londiste_rs.config import load_job_config, load_ticker_config
from londiste_rs.errors import ConfigError
from londiste_rs.logsetup import JsonFormatter, figures, set_context
from londiste_rs.progress import Progress

DOCS = Path(__file__).parents[2] / "docs"


def job(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "slave.ini"
    path.write_text(f"[londiste3]\ndb = dbname=x\nqueue_name = q1\n{extra}")
    return path


def test_service_keys_and_their_defaults(tmp_path):
    cfg = load_job_config(job(tmp_path, ""))
    assert cfg.metrics_listen is None and cfg.log_format == "text"
    cfg = load_job_config(job(tmp_path, "metrics_listen = 127.0.0.1:9187\nlog_format = JSON\n"))
    assert cfg.metrics_listen == ("127.0.0.1", 9187) and cfg.log_format == "json"
    assert load_job_config(job(tmp_path, "metrics_listen = [::1]:9\n")).metrics_listen == (
        "::1",
        9,
    )
    assert load_job_config(job(tmp_path, "metrics_listen = :9187\n")).metrics_listen == (
        "0.0.0.0",
        9187,
    )
    ticker = tmp_path / "ticker.ini"
    ticker.write_text("[pgqd]\nmetrics_listen = localhost:9188\nlog_format = json\n")
    tcfg = load_ticker_config(ticker)
    assert tcfg.metrics_listen == ("localhost", 9188) and tcfg.log_format == "json"


@pytest.mark.parametrize("bad", ["9187", "localhost", "host:0", "host:70000", "::1:9", "a:b"])
def test_a_bad_metrics_listen_is_one_line(tmp_path, bad):
    path = job(tmp_path, f"metrics_listen = {bad}\n")
    with pytest.raises(ConfigError) as e:
        load_job_config(path)
    assert str(e.value) == (
        f"{path}: [londiste3] metrics_listen = {bad!r} is not HOST:PORT such as "
        "127.0.0.1:9187; fix the value"
    )


def test_a_bad_log_format_is_one_line(tmp_path):
    path = job(tmp_path, "log_format = xml\n")
    with pytest.raises(ConfigError) as e:
        load_job_config(path)
    assert str(e.value) == (
        f"{path}: [londiste3] log_format = 'xml' is not one of text, json; fix the value"
    )


def test_a_json_log_line_parses_with_its_figures():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("londiste_rs.test_service")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        set_context(node="slave", queue="q1")
        logger.warning("applied %d events", 7, extra=figures(ticks=2, events=7, seconds=0.5))
        set_context()
        logger.warning("no context")
    finally:
        logger.removeHandler(handler)
        set_context()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert {k: v for k, v in first.items() if k not in ("time", "pid")} == {
        "level": "WARNING",
        "node": "slave",
        "queue": "q1",
        "message": "applied 7 events",
        "ticks": 2,
        "events": 7,
        "seconds": 0.5,
    }
    assert second["node"] is None and second["message"] == "no context"


def test_copy_counters_move_by_what_is_new():
    m = metrics.NodeMetrics("unitq", enabled=False)
    m.position("unitnode", None, None)
    for rows in (100, 250, 250):
        m.copy_progress(Progress("public.t", rows, rows * 10, 1000, 1.0))
    m.copy_progress(Progress("public.t", 40, 400, 1000, 1.0))  # copied again from the start
    labels = {"queue": "unitq", "node": "unitnode", "table": "public.t"}
    rows = metrics.REGISTRY.get_sample_value("londiste_rs_copy_rows_total", labels)
    assert rows == 250 + 40
    assert metrics.REGISTRY.get_sample_value("londiste_rs_copy_bytes_total", labels) == 2900


def test_the_dashboard_names_only_exported_metrics():
    m = metrics.NodeMetrics("dashq", enabled=False)
    m.position("dashnode", 1, None)
    m.batch(1, 1, 0.1)
    m.copy_progress(Progress("public.t", 1, 1, 1, 1.0))
    metrics.TABLES.labels("dashq", "dashnode", "ok").set(1)
    metrics.QUEUE_PENDING.labels("dashq", "dashnode").set(0)
    metrics.TICKS_BEHIND.labels("dashq", "dashnode").set(0)
    metrics.ticked("dashdb", 1)
    exported = set(re.findall(r"^(londiste_rs_\w+?)[{ ]", generate_latest(metrics.REGISTRY)
                              .decode(), re.M))  # fmt: skip
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for e in exprs for name in re.findall(r"londiste_rs_\w+", e)}
    assert used and used <= exported, used - exported
    # the list of metrics is what the module exports
    wanted = {"node_lag_seconds", "ticks_behind", "events_applied_total",
              "batches_applied_total", "apply_seconds_bucket", "tables", "copy_rows_total",
              "copy_bytes_total", "last_error_timestamp_seconds", "ticker_ticks_total",
              "queue_events_pending"}  # fmt: skip
    assert {f"londiste_rs_{n}" for n in wanted} <= exported


def test_lag_is_unknown_before_a_position_and_an_early_error_is_kept():
    m = metrics.NodeMetrics("earlyq", enabled=False)
    m.error()  # the first step failed before the node was known
    m.position("earlynode", None, None)
    labels = {"queue": "earlyq", "node": "earlynode"}
    lag = metrics.REGISTRY.get_sample_value("londiste_rs_node_lag_seconds", labels)
    assert lag is not None and lag != lag  # NaN: not known, not 0
    assert (metrics.REGISTRY.get_sample_value("londiste_rs_last_error_timestamp_seconds", labels)
            or 0) > 1.7e9  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["n.ini", "status", "--watch"], ["n.ini", "status", "--watch", "2"]),
        (["status", "n.ini", "--watch", "0.5"], ["status", "n.ini", "--watch", "0.5"]),
        (["status", "--watch", "--json", "n.ini"], ["status", "--watch", "2", "--json", "n.ini"]),
    ],
)
def test_watch_takes_a_default_interval(argv, want):
    from londiste_rs.cli import watch_default

    assert watch_default(argv) == want
