"""Peer MLS stacks driven by benchmarks.compare (see docs/benchmarks.md)."""
