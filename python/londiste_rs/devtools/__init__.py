"""Tools for throwaway local clusters: the demo, the test fixtures and the bench use
them; no production code imports this package."""
