"""Benchmarks of MPRNet inference: speed, tiled memory, half precision and test-time local statistics.

Run them from the repository root as modules, e.g. `python -m benchmarks.speed --help`; the README's
"Speed and memory" section gives the command behind every published number.
"""
