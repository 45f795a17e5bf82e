"""The replay: the worker loop, batch reading, apply plans, the apply itself and a
branch's re-queue (DESIGN parts 3-5)."""
