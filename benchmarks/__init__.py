"""Benchmarks of MPRNet inference: speed, tiled memory, half precision and test-time local statistics.

Run them from the repository root as modules, e.g. `python -m benchmarks.speed --help`; docs/PERFORMANCE.md lists
the commands behind every published number.
"""
