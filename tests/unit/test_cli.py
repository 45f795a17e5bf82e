"""londiste3's argument order (`CONFIG.ini VERB`), turned into Typer's (`VERB CONFIG.ini`)."""

from __future__ import annotations

from londiste_rs.cli import normalize_argv


def test_config_first_order_is_accepted():
    assert normalize_argv(["-d", "slave.ini", "worker"]) == ["-d", "worker", "slave.ini"]
    assert normalize_argv(["master.ini", "add-table", "--all"]) == [
        "add-table",
        "master.ini",
        "--all",
    ]
    assert normalize_argv(["-s", "slave.ini"]) == ["-s", "stop", "slave.ini"]
    assert normalize_argv(["ticker", "-d", "ticker.ini"]) == ["ticker", "-d", "ticker.ini"]


def test_flags_before_the_config_stay_in_front():
    assert normalize_argv(["-v", "-q", "x.ini", "status"]) == ["-v", "-q", "status", "x.ini"]
    assert normalize_argv(["-vvv", "x.ini", "status"]) == ["-vvv", "status", "x.ini"]
    assert normalize_argv(["--verbose", "x.ini", "status", "--json"]) == [
        "--verbose",
        "status",
        "x.ini",
        "--json",
    ]


def test_a_bare_config_with_a_signal_flag_is_that_verb():
    assert normalize_argv(["-k", "x.ini"]) == ["-k", "kill", "x.ini"]
    assert normalize_argv(["--reload", "x.ini"]) == ["--reload", "reload", "x.ini"]
    # no signal flag: left for Typer to refuse
    assert normalize_argv(["-d", "x.ini"]) == ["-d", "x.ini"]
    assert normalize_argv(["x.ini", "--help"]) == ["x.ini", "--help"]


def test_verb_first_order_is_left_alone():
    for argv in (["status", "x.ini"], ["--help"], [], ["-d"], ["-vx", "x.ini", "status"]):
        assert normalize_argv(argv) == argv


def test_the_workers_plain_start_skips_typer_with_the_same_flags():
    from pathlib import Path

    from londiste_rs.cli.options import GlobalOptions
    from londiste_rs.cli.worker import plain_args

    args = normalize_argv(["-d", "-vv", "--verbose", "-q", "x.ini", "worker"])
    assert plain_args(args) == (Path("x.ini"), GlobalOptions(daemon=True, verbose=3, quiet=True))
    assert plain_args(["worker", "x.ini"]) == (Path("x.ini"), GlobalOptions())
    for flag, options in (
        ("-s", GlobalOptions(stop=True)),
        ("--kill", GlobalOptions(kill=True)),
        ("-r", GlobalOptions(reload=True)),
    ):
        assert plain_args([flag, "worker", "x.ini"]) == (Path("x.ini"), options)
    # anything else is Typer's: help, options after the verb, other verbs, a missing file
    for argv in (
        ["worker", "x.ini", "--help"],
        ["worker", "--help"],
        ["worker", "-d", "x.ini"],
        ["-V", "worker", "x.ini"],
        ["status", "x.ini"],
        ["worker"],
        ["-d"],
        [],
    ):
        assert plain_args(argv) is None, argv
