"""The Rust binary COPY writer: what it refuses before anything reaches a server."""

from __future__ import annotations

import pytest

from londiste_rs._native._testing import encode_copy


def test_wrong_row_length_is_refused():
    with pytest.raises(ValueError, match="row 0 has 1 values but 2 types"):
        encode_copy([[1]], ["int4", "int4"])


def test_numeric_text_in_exponent_form_is_refused():
    """numeric values come as the server's own text (never with an exponent)."""
    with pytest.raises(ValueError, match="not a numeric value"):
        encode_copy([["1e3"]], ["numeric"])
