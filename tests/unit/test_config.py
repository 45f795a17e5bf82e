"""Config files parsed once: londiste3 job files and pgqd ticker files, their defaults and
units, and errors that name the file, the section and the key, with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from londiste_rs.config import load_job_config, load_ticker_config
from londiste_rs.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_minimal_job_file_and_its_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ini = write(tmp_path / "slave.ini", "[londiste3]\ndb = dbname=x\nqueue_name = q1\n")
    cfg = load_job_config("slave.ini")
    assert cfg.path == ini and cfg.path.is_absolute()
    assert (cfg.job_name, cfg.consumer_name, cfg.db, cfg.queue_name) == (
        "slave",
        "slave",
        "dbname=x",
        "q1",
    )
    assert cfg.logfile is None and cfg.pidfile is None and cfg.node_name is None
    assert (cfg.loop_delay, cfg.parallel_copies, cfg.lock_timeout) == (1.0, 1, 10.0)
    assert cfg.apply_chunk_bytes == 12 << 20 and cfg.batch_collect_interval is None


def test_londiste_section_old_key_names_interpolation_and_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "node.ini",
        "[londiste]\n"
        "job_name = n1\n"
        "db = dbname=%(job_name)s\n"
        "pgq_queue_name = q2\n"
        "pgq_consumer_id = c1\n"
        "logfile = log/%(job_name)s.log\n"
        "pidfile = %(config_dir)s/pid/n1.pid\n"
        "loop_delay = 500ms\n"
        "connection_lifetime = 5 min\n"
        "pgq_keep_lag = 1.5 h\n"
        "apply_chunk_bytes = 16MB\n"
        "batch_work_mem = 1 gb\n"
        "parallel_copies = 0\n",
    )
    cfg = load_job_config(tmp_path / "node.ini")
    assert (cfg.job_name, cfg.db, cfg.queue_name, cfg.consumer_name) == (
        "n1",
        "dbname=n1",
        "q2",
        "c1",
    )
    # relative paths are taken from where the command runs, once and for all
    assert cfg.logfile == tmp_path / "log/n1.log" and cfg.pidfile == tmp_path / "pid/n1.pid"
    assert (cfg.loop_delay, cfg.connection_lifetime, cfg.keep_lag) == (0.5, 300.0, 5400.0)
    assert (cfg.apply_chunk_bytes, cfg.batch_work_mem) == (16 << 20, 1 << 30)
    assert cfg.parallel_copies == 1  # at least one


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[londiste3]\nqueue_name = q\n",
         "{p}: [londiste3] has no 'db'; add db = <connection string of this node's database>"),
        ("[londiste3]\ndb = x\n",
         "{p}: [londiste3] has no 'queue_name'; add queue_name = <name of the set>"),
        ("[londiste3]\ndb = x\nqueue_name = q\nloop_delay = fast\n",
         "{p}: [londiste3] loop_delay = 'fast' is not a number; fix the value"),
        ("[londiste3]\ndb = x\nqueue_name = q\nparallel_copies = 2.5\n",
         "{p}: [londiste3] parallel_copies = '2.5' is not a whole number; fix the value"),
        ("[londiste3]\ndb = x\nqueue_name = q\napply_chunk_bytes = 64 TB\n",
         "{p}: [londiste3] apply_chunk_bytes = '64 TB' is not a size such as 64MB; fix the value"),
        ("[londiste3]\ndb = %(nope)s\nqueue_name = q\n",
         "{p}: [londiste3] db: a '%' in its value starts a reference to another key, written "
         "%(key)s (value not shown); write a literal % as %%, or fix the reference"),
        ("[pgqd]\nbase_connstr = x\n",
         "{p}: has [pgqd]; a londiste job file needs a [londiste3] or [londiste] section"),
        ("", "{p}: has no sections; a londiste job file needs a [londiste3] or [londiste] section"),
        ("db = x\n", "{p}: cannot parse the file: File contains no section headers."),
    ],
)  # fmt: skip
def test_job_file_errors_name_the_file_and_the_key(tmp_path, text, says):
    p = write(tmp_path / "slave.ini", text)
    with pytest.raises(ConfigError) as e:
        load_job_config(p)
    assert str(e.value) == says.format(p=p)
    assert e.value.exit_code == 2


def test_a_file_configparser_refuses_is_named_with_its_line(tmp_path):
    p = write(tmp_path / "slave.ini", "[londiste3]\ndb = x\n[londiste3]\n")
    with pytest.raises(ConfigError) as e:
        load_job_config(p)
    assert str(e.value).startswith(f"{p}: cannot parse the file: While reading from ")
    assert str(e.value).endswith("[line  3]: section 'londiste3' already exists")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_job_config(tmp_path / "nope.ini")
    assert str(e.value) == (
        f"config file {tmp_path / 'nope.ini'} not found; give the path of a londiste job file"
    )
    with pytest.raises(ConfigError, match="not found; give the path of the ticker"):
        load_ticker_config(tmp_path)  # a directory is no file


def test_ticker_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path / "ticker.ini",
        "[pgqd]\nbase_connstr = host=h user=u\ndatabase_list = a, b\n  c\n"
        "logfile = log/ticker.log\nticker_period = 0.2\nmaint_period = 2 min\n",
    )
    cfg = load_ticker_config("ticker.ini")
    assert cfg.base_connstr == "host=h user=u" and cfg.database_list == ("a", "b", "c")
    assert cfg.initial_database == "template1" and cfg.logfile == tmp_path / "log/ticker.log"
    assert (cfg.ticker_period, cfg.maint_period, cfg.retry_period) == (0.2, 120.0, 30.0)
    empty = load_ticker_config(write(tmp_path / "empty.ini", "[pgqd]\n"))
    assert empty.database_list == () and empty.base_connstr == "" and empty.pidfile is None
    bad = write(tmp_path / "bad.ini", "[pgqd]\nstats_period = -1\n")
    with pytest.raises(ConfigError) as e:
        load_ticker_config(bad)
    assert str(e.value) == f"{bad}: [pgqd] stats_period = '-1' is not a number; fix the value"
    job = write(tmp_path / "job.ini", "[londiste3]\ndb = x\n")
    with pytest.raises(ConfigError) as e:
        load_ticker_config(job)
    assert (
        str(e.value) == f"{job}: has [londiste3]; the ticker (pgqd format) needs a [pgqd] section"
    )


def test_keys_nothing_reads_are_named_in_a_warning(tmp_path, caplog):
    """A londiste3 feature londiste-rs does not implement, or a misspelt key, is named (it
    would change nothing, without a word); londiste3's own tuning keys pass silently, so a
    londiste3 ini works as it is."""
    write(
        tmp_path / "leaf.ini",
        "[londiste3]\ndb = dbname=x\nqueue_name = q1\nlocal_only = 1\npgq_keep_lags = 1h\n"
        "pgq_lazy_fetch = 500\nuse_skylog = 0\nlogfmt_file = %%(asctime)s\nloop_delay = 1\n",
    )
    with caplog.at_level("WARNING"):
        cfg = load_job_config(tmp_path / "leaf.ini")
    assert cfg.keep_lag is None
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/leaf.ini: [londiste3] local_only is ignored: a londiste3 setting "
        "londiste-rs does not implement (docs/migrating.md)",
        f"{tmp_path}/leaf.ini: [londiste3] pgq_keep_lags is ignored: not a setting of "
        "londiste-rs (check its spelling)",
    ]
    caplog.clear()
    write(tmp_path / "t.ini", "[pgqd]\nbase_connstr = host=x\nticker_perod = 1\nsyslog = 0\n")
    with caplog.at_level("WARNING"):
        load_ticker_config(tmp_path / "t.ini")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}/t.ini: [pgqd] ticker_perod is ignored: not a setting of londiste-rs "
        "(check its spelling)"
    ]
    # the walkthrough's files, and every key londiste-rs reads: not a word
    caplog.clear()
    write(
        tmp_path / "slave.ini",
        "[londiste3]\njob_name = slave\ndb = dbname=x\nqueue_name = q1\nlogfile = s.log\n"
        "pidfile = s.pid\nloop_delay = 0.5\n",
    )
    with caplog.at_level("WARNING"):
        load_job_config(tmp_path / "slave.ini")
    assert caplog.records == []
