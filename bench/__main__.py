"""Run the benchmarks, one after the other, in this one process.

Each `bench/bench_<name>.py` provides `run() -> dict[str, object]`, printing a human-readable table as it
goes and returning its figures. `--json` prints all figures as one JSON object at the end.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description="GO/STOP benchmarks")
    parser.add_argument("names", nargs="*", help=f"default: all of {names}")
    parser.add_argument("--json", action="store_true", help="print all figures as JSON at the end")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
    results: dict[str, object] = {}
    for name in args.names or names:
        print(f"== bench {name}", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        results[name] = module.run()
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
