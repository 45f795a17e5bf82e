"""The tables and sequences a node replicates: the verbs, and the initial copy the worker
runs (DESIGN part 6)."""
