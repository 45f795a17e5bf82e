"""The statement splitter `execute` runs files with (no server needed): semicolons inside
quotes, dollar quoting, comments and SQL-standard function bodies do not end a statement;
unterminated quoting is refused with its line; transaction control is recognised."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from londiste_rs.pg.statements import (
    SplitError,
    Statement,
    split_statements,
    transaction_control,
)


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


def test_plain_statements_blanks_and_a_missing_last_semicolon() -> None:
    got = split_statements("alter table t add c int;\n\n  create index i on t (c) ;\nselect 1")
    assert got == [
        Statement("alter table t add c int", 1),
        Statement("create index i on t (c)", 3),
        Statement("select 1", 4),
    ]
    assert split_statements("") == []
    assert split_statements(" ;; \n;") == []


def test_semicolons_in_literals_identifiers_and_comments_do_not_split() -> None:
    sql = (
        "insert into t values ('a;b', 'it''s; fine', E'back\\'slash;', U&'d\\0061t;a');\n"
        'alter table "we;ird" add "c;1" int; -- trailing; comment\n'
        "/* block; /* nested; */ still; */ select 2;\n"
        "select 'x' -- a comment; with a semicolon\n  , 3;"
    )
    assert texts(sql) == [
        "insert into t values ('a;b', 'it''s; fine', E'back\\'slash;', U&'d\\0061t;a')",
        'alter table "we;ird" add "c;1" int',
        "select 2",
        "select 'x' -- a comment; with a semicolon\n  , 3",
    ]


def test_a_backslash_ends_nothing_in_a_standard_string() -> None:
    # standard_conforming_strings: 'a\' is a string holding a backslash
    assert texts("select 'a\\'; select 'b';") == ["select 'a\\'", "select 'b'"]
    # an identifier ending in e before a quote is not an E'' string
    assert texts("select type'x\\'; select 1") == ["select type'x\\'", "select 1"]


def test_dollar_quoting() -> None:
    sql = (
        "create function f() returns int language plpgsql as $$\n"
        "begin perform 1; return 2; end $$;\n"
        "do $body$ begin raise notice 'x;$$;'; end $body$;\n"
        "select $1::int, a$b$c from t;\n"
    )
    assert texts(sql) == [
        "create function f() returns int language plpgsql as $$\nbegin perform 1; return 2; end $$",
        "do $body$ begin raise notice 'x;$$;'; end $body$",
        "select $1::int, a$b$c from t",
    ]


def test_sql_standard_function_bodies_keep_their_semicolons() -> None:
    sql = (
        "create or replace function g(x int) returns int language sql\n"
        "begin atomic\n  select case when x > 0 then 1 else 0 end;\n  select 2;\nend;\n"
        "create procedure p() begin atomic insert into t values (1); end;\n"
        "create function h() returns int return case when true then 1 end;\n"
        "select 9;"
    )
    got = split_statements(sql)
    assert [s.line for s in got] == [1, 6, 7, 8]
    assert got[0].text.endswith("select 2;\nend")
    assert got[1].text == "create procedure p() begin atomic insert into t values (1); end"
    assert got[3].text == "select 9"


@pytest.mark.parametrize(
    ("sql", "what", "line"),
    [
        ("select 1;\nselect 'abc;", "a string literal", 2),
        ('select 1;\n\nselect "abc', "a quoted identifier", 3),
        ("do $x$ begin end $y$;", "a $x$-quoted string", 1),
        ("select 1; /* /* */", "a /* comment", 1),
    ],
)
def test_unterminated_quoting_is_refused_with_its_line(sql: str, what: str, line: int) -> None:
    with pytest.raises(SplitError) as e:
        split_statements(sql, "f.sql")
    assert str(e.value) == f"f.sql: {what} starting on line {line} never ends; close it"


def test_transaction_control_is_recognised() -> None:
    def tc(sql: str) -> bool:
        return transaction_control(split_statements(sql)[0])

    control = ["BEGIN", "begin transaction", "commit", "End", "rollback", "savepoint a"]
    control += ["start transaction", "-- c\n/* x */ COMMIT", "prepare transaction 'x'"]
    for sql in control:
        assert tc(sql), sql
    for sql in ("create table begin_x (a int)", "beginning()", "select 1", "endpoint"):
        assert not tc(sql), sql


def test_first_line_names_a_statement() -> None:
    s = split_statements("  alter table t\n  add c int;")[0]
    assert s.first_line == "alter table t"
    assert len(split_statements("select '" + "x" * 200 + "'")[0].first_line) == 80


# Pieces a statement may contain, none of which ends it.
_PIECES = st.sampled_from(
    [
        "select 1",
        "'a;b'",
        "'it''s;'",
        "E'x\\';y'",
        '"id;x"',
        "$$ a; b $$",
        "$t$ ; $$ ; $t$",
        "/* c; /* d; */ */",
        "-- e;\n",
        "x",
        " ",
        "\n",
    ]
)


@given(st.lists(st.lists(_PIECES, min_size=1, max_size=6), min_size=1, max_size=5))
def test_any_join_of_statements_splits_back(statements: list[list[str]]) -> None:
    bodies = ["x " + " ".join(parts) for parts in statements]
    sql = ";\n".join(bodies) + ";"
    assert texts(sql) == [b.strip() for b in bodies]
