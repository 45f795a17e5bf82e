"""Relation names without a server: parsing what a user wrote, the global names events carry,
and globs over a given list of names (`select`)."""

from __future__ import annotations

import pytest

from londiste_rs.errors import TableError
from londiste_rs.pg.names import TableName, name_of, parse_name, quote_part, quoted_name, select


def test_parse_name():
    assert parse_name("orders") == (("public", True), ("orders", False))
    assert parse_name("Sales.Orders") == (("sales", False), ("orders", False))
    assert parse_name('public."Mixed Case"') == (("public", False), ("Mixed Case", True))
    assert parse_name('"a.b"."x""y"') == (("a.b", True), ('x"y', True))
    for bad in ('"open', "a.b.c", "a..b", '"a"b', ""):
        with pytest.raises(TableError):
            parse_name(bad)


def test_parse_errors_name_the_text_and_the_fix():
    with pytest.raises(
        TableError, match=r"""^table name '"open' has an unclosed quote; close it$"""
    ):
        parse_name('"open')
    with pytest.raises(TableError, match=r"'a\.b\.c' has more than two parts; write it as"):
        parse_name("a.b.c")
    with pytest.raises(TableError, match=r"""'"a"b' has text after a quoted part; put a dot"""):
        parse_name('"a"b')
    with pytest.raises(TableError, match=r"'a\.\.b' is not a valid \[schema\.\]table name"):
        parse_name("a..b")


def test_global_names_quote_only_when_needed():
    assert [quote_part(p) for p in ("orders", "_a$1", "t2")] == ["orders", "_a$1", "t2"]
    assert quote_part("Mixed Case") == '"Mixed Case"'
    assert quote_part('x"y') == '"x""y"'
    assert quote_part("1st") == '"1st"' and quote_part("é") == '"é"' and quote_part("") == '""'
    assert str(TableName("public", "Mixed Case")) == 'public."Mixed Case"'
    assert str(TableName("s", "t", text="as.read")) == "as.read"  # a server's own text wins
    assert quoted_name(TableName("public", "t")) == '"public"."t"'
    assert quoted_name(TableName("a", 'x"y')) == '"a"."x""y"'


def test_name_of_reads_registry_names():
    assert name_of("public.orders") == TableName("public", "orders")
    assert str(name_of("orders")) == "public.orders"
    assert str(name_of('"S"."Fresh"')) == '"S"."Fresh"'
    assert name_of('"S"."Fresh"') == TableName("S", "Fresh")


CANDIDATES = [
    TableName("public", "a"),
    TableName("public", "b"),
    TableName("other", "a"),
    TableName("public", "Mixed Case"),
    TableName("public", "a*"),
]


def test_select_globs_and_names_in_the_order_asked_without_duplicates():
    def chosen(*patterns: str) -> list[str]:
        return [str(t) for t in select(patterns, CANDIDATES, where="the queue")]

    assert chosen("public.*") == ["public.a", "public.b", 'public."Mixed Case"', 'public."a*"']
    assert chosen("*.a", "public.a", "b") == ["public.a", "other.a", "public.b"]
    assert chosen("p?blic.[ab]") == ["public.a", "public.b"]
    assert chosen('public."Mixed Case"') == ['public."Mixed Case"']
    assert chosen('"a*"') == ['public."a*"']  # quoted: a name, not a glob


def test_select_refuses_what_matches_nothing():
    with pytest.raises(TableError) as e:
        select(["Mixed Case"], CANDIDATES, where="the queue")  # folds to "mixed case"
    assert str(e.value) == (
        "table 'Mixed Case' is not one of the queue; check the name "
        '(quote mixed-case names: public."My Table")'
    )
    with pytest.raises(TableError) as e:
        select(["nope.*"], CANDIDATES, what="sequence", where="the provider's sequences")
    assert str(e.value) == (
        "no sequence of the provider's sequences matches 'nope.*'; check the pattern"
    )
    with pytest.raises(TableError, match="unclosed quote"):
        select(['"a'], CANDIDATES, where="the queue")
