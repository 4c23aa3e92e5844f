"""Bridges from autopeft's search to tools users already run (Ray Tune)."""
