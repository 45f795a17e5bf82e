"""The one gateway to the londiste_rs schema: every statement against its tables and
functions lives in this package (tests/unit/test_store_guard.py fails on any other)."""
