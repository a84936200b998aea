"""Where a generated artefact came from: the command that made it and the version of the code.

A dataset folder is only reproducible if the command *and* the code that ran it are known: the simulated
world's renderer changes, and the same `car sim dataset` command then writes different frames.
"""

from __future__ import annotations

import datetime as dt
import functools
import shlex
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


@functools.cache
def code_version() -> str:
    """The checkout's commit (`-dirty` when tracked files differ from it), or why it is not known.

    Asked once per process: the code that runs is the code imported at start, whatever happens to the
    checkout later.
    """
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        changed = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit}-dirty" if changed else commit


def command_line(argv: list[str] | None = None) -> str:
    """This process's command line as a shell would take it, the program by its name only."""
    args = list(sys.argv if argv is None else argv)
    if not args:
        return ""
    return shlex.join([Path(args[0]).name, *args[1:]])


def provenance(argv: list[str] | None = None) -> dict[str, str]:
    """The record written beside a generated dataset (`dataset.json`)."""
    return {
        "command": command_line(argv),
        "code_version": code_version(),
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
