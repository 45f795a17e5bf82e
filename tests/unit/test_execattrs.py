"""An execute file's header attributes, parsed as londiste3 writes them (no server needed)."""

from __future__ import annotations

import pytest

from londiste_rs.errors import UsageError
from londiste_rs.pg.execattrs import ExecAttrs, parse_attrs

SAMPLE = """
 --
--*-- Local-Table: foo ,
--
--*-- public."Bar" ,
--*--
--*-- zoo
--*--
--*-- local-sequence: goo
--*-- Need-Function: public.f(2)
-- an ordinary comment; and a --*-- Need-View: not_parsed after code below
alter table @foo@ add c int;
--*-- Need-Schema: ignored, after the first statement
"""


def test_header_values_continue_after_a_trailing_comma_and_stop_at_code() -> None:
    attrs = parse_attrs(SAMPLE)
    assert attrs.values == {
        "local-table": ("foo", 'public."Bar"', "zoo"),
        "local-sequence": ("goo",),
        "need-function": ("public.f(2)",),
    }
    assert attrs.urlencoded() == (
        "local-table=foo%2Cpublic.%22Bar%22%2Czoo&local-sequence=goo&need-function=public.f%282%29"
    )
    assert attrs.describe() == (
        'Local-Table: foo, public."Bar", zoo; Local-Sequence: goo; Need-Function: public.f(2)'
    )


def test_no_header_means_no_attributes() -> None:
    assert not parse_attrs("alter table t add c int;")
    assert parse_attrs("-- plain comment\n--*--\nselect 1") == ExecAttrs()


def test_an_unknown_key_is_refused_naming_the_file() -> None:
    with pytest.raises(UsageError, match=r"^f.sql: unknown attribute 'Need-Tabel' in its header"):
        parse_attrs("--*-- Need-Tabel: t\nselect 1", "f.sql")
