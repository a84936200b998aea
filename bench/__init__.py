"""Benchmarks: `python -m bench [NAME ...] [--json]` (or `make bench`). Ratios are measured side by side."""
