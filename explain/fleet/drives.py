"""Which drive logs a fleet audit covers, and the folder each one's report goes to."""

from __future__ import annotations

import glob
import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from explain.errors import ExplainError

LOG_SUFFIX = ".sqlite"


def _expand(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.rglob(f"*{LOG_SUFFIX}") if p.is_file())
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        return sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
    raise ExplainError(f"{spec}: no such drive log, folder or glob; give .sqlite files, folders or globs")


def find_logs(specs: Sequence[str]) -> list[Path]:
    """Every drive log named by files, folders (searched for *.sqlite) and globs, each once, sorted."""
    found: dict[Path, Path] = {}
    for spec in specs:
        matched = _expand(spec)
        if not matched:
            raise ExplainError(f"{spec}: matches no drive log (*{LOG_SUFFIX})")
        for path in matched:
            found.setdefault(path.resolve(), path)
    return [found[key] for key in sorted(found)]


def drive_names(logs: Sequence[Path]) -> list[str]:
    """A report folder name per log: its file name without suffix; logs of the same name in different
    folders get a short hash of their full path appended, so names are stable across runs (resuming)."""
    stems = Counter(p.stem for p in logs)
    names = []
    for path in logs:
        if stems[path.stem] == 1:
            names.append(path.stem)
        else:
            digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
            names.append(f"{path.stem}-{digest}")
    return names
