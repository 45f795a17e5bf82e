"""The end of a migration: compare, repair (DESIGN part 8; OPERATIONS-REFERENCE §1)."""
