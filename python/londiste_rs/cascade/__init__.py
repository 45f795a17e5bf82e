"""Nodes of a cascade: creating, dropping, pausing and moving them, walking the cascade,
its status (DESIGN part 1, the node registry)."""
