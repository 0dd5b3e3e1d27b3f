"""Micro-benchmarks of mls_core (run each module with ``python3 -m benchmarks.NAME``)."""
