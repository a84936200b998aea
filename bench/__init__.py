"""Benchmarks: `python -m bench [NAME ...] [--json]` (or `make bench`). Ratios are measured side by side."""

from __future__ import annotations

import sys


def car_command(*args: str) -> list[str]:
    """`car ARGS...` with this interpreter (no reliance on the `car` script being on PATH)."""
    return [sys.executable, "-c", "import sys; from car.cli import main; sys.exit(main())", *args]
