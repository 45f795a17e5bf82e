"""Shared pieces of the bench: dependencies, clusters, workload, verification, measuring,
processes and reporting."""
