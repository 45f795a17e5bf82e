"""Sequences through the CLI on two separate clusters: add-seq (--all, --create, quoted names),
the worker moving them forward only, seqs showing both sides, sync-seqs --exact for a
cut-over, remove-seq and missing."""

from __future__ import annotations

import json
from pathlib import Path

from londiste_rs.config import load_job_config
from londiste_rs.replication.worker import Worker
from tests.fix_cli import ok, one_line_error, run_cli
from tests.fix_nodes import nodes

SCHEMA = 'create sequence plain start 10; create sequence "Odd Seq" increment by -1 start -1;'


def nextval(db, seq: str) -> int:
    return int(db.sql(f"select nextval('{seq}')")[0][0])


def seqs(ini: str) -> dict[str, dict]:
    return {s["seq_name"]: s for s in json.loads(ok(ini, "seqs", "--json"))}


def test_sequences_follow_forward_only_and_exact_sync(tmp_path, provider_db, subscriber_db):
    provider_db.sql(SCHEMA)
    root, leaf = nodes(tmp_path, provider_db, subscriber_db)
    for _ in range(5):
        nextval(provider_db, "plain")  # 10..14
    nextval(provider_db, '"Odd Seq"')  # -1

    assert "not one of the sequences provider master" in one_line_error(
        run_cli(leaf, "add-seq", "plain")
    )
    assert "'nope' does not exist" in one_line_error(run_cli(root, "add-seq", "nope"))
    out = ok(root, "add-seq", "--all")
    assert 'Sequence added: public."Odd Seq"' in out and "Sequence added: public.plain" in out
    assert "does not exist" in one_line_error(run_cli(leaf, "add-seq", "plain"))
    ok(leaf, "add-seq", "--create", "public.*")
    # created and moved to the provider's position at once
    assert seqs(leaf) == {
        "public.plain": {"seq_name": "public.plain", "local_value": 15, "provider_value": 15},
        'public."Odd Seq"': {
            "seq_name": 'public."Odd Seq"',
            "local_value": -2,
            "provider_value": -2,
        },
    }
    assert ok(root, "missing") == "" and ok(leaf, "missing") == ""

    worker = Worker(load_job_config(Path(leaf)))
    try:
        for _ in range(100):
            nextval(provider_db, "plain")  # provider at 115 next
        nextval(provider_db, '"Odd Seq"')
        worker.step()
        assert seqs(leaf)["public.plain"]["local_value"] == 115
        assert seqs(leaf)['public."Odd Seq"']["local_value"] == -3
        # ahead on the subscriber: never moved back
        for _ in range(50):
            nextval(subscriber_db, "plain")  # local next 165
        nextval(provider_db, "plain")
        worker.next_seq_sync = 0.0
        worker.step()
        assert seqs(leaf)["public.plain"] == {
            "seq_name": "public.plain",
            "local_value": 165,
            "provider_value": 116,
        }
        assert "public.plain 165 (unchanged)" in ok(leaf, "sync-seqs", "plain")
        # the cut-over: the provider's exact values, backwards too
        out = ok(leaf, "sync-seqs", "--exact")
        assert "public.plain 165 -> 116" in out and 'public."Odd Seq" -3 (unchanged)' in out
        assert nextval(subscriber_db, "plain") == 116
        assert "branch or leaf" in one_line_error(run_cli(root, "sync-seqs", "--exact"))
    finally:
        worker.close()

    assert ok(leaf, "remove-seq", "plain").strip() == "Sequence removed: public.plain"
    assert ok(leaf, "missing").strip() == "sequence public.plain"
    assert list(seqs(leaf)) == ['public."Odd Seq"']
