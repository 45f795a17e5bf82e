"""The test suite, in tiers:

- `tests/unit/`: no server, no child processes; runs in seconds (`make test-unit`).
- `tests/`: against real PostgreSQL (marked `pg`, see fix_pg.py) and real processes.

Names: `test_<module>.py` tests one module's (or Rust part's) behaviour through its API, in
either tier; `test_cli_<group>.py` tests a group of verbs as a user runs them (output, exit
codes, one-line errors); `test_e2e_<scenario>.py` runs a whole scenario with real processes
(the walkthrough, faults, several roots).

Shared fixtures and helpers live in `fix_*.py`, registered here as plugins (so their asserts
are rewritten too); test modules import helpers from them, never from one another.
"""

pytest_plugins = ("tests.fix_pg", "tests.fix_cli", "tests.fix_nodes", "tests.fix_daemon")
