"""The `--runs-out` file of `car sim eval`: a header line saying what the runs depend on, then a line per run.

A run is a pure function of its seed and kind and of everything else the evaluation was given (`RunSpec`).
The file's first line, `{"evaluation": {...}}`, records that everything else: the evaluation's seed, kinds,
perturbations, world and limits, the bundle's manifest digest, and the sections of the drive config that a
run reads. So `--resume` refuses to append runs made under other options to a file (a mixed file would
report numbers no evaluation produced) and names the option to repeat, and `--from-runs` reports with the
file's own world and perturbations. Files written before the header existed have none: they are read as
before, and the user repeats the options.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from car.config import CarConfig, dotted_items
from car.errors import CarError
from car.sim_eval import EvalSettings, RunOutcome
from vision.sim import WorldConfig

HEADER_KEY = "evaluation"
RUN_CONFIG_SECTIONS = ("source", "link", "model", "policy", "loop")
"""The drive-config sections `car.sim_eval.simulate_spec` reads (`model.bundle`, a path, is left out: the
bundle's digest stands for it, so the same bundle moved elsewhere still resumes)."""

_SETTINGS_HINTS = {
    "seed": "--seed",
    "kinds": "--kinds",
    "perturbations": "--perturb",
    "world.domain": "--domain",
    "bundle_sha256": "--model (the same bundle)",
}


@dataclass(frozen=True, slots=True)
class RunsFile:
    """What a `--runs-out` file holds: its header (None in a file older than headers) and its runs."""

    header: dict[str, Any] | None
    outcomes: list[RunOutcome] = field(default_factory=list)


def evaluation_header(settings: EvalSettings, config: CarConfig, bundle_sha256: str) -> dict[str, Any]:
    """The header of a `--runs-out` file: every input of a run but its seed and kind, JSON-ready."""
    sections = config.to_dict()
    run_config = {name: dict(sections[name]) for name in RUN_CONFIG_SECTIONS}
    run_config["model"].pop("bundle", None)
    doc = {
        **{k: v for k, v in asdict(settings).items() if k != "runs"},
        "bundle_sha256": bundle_sha256,
        "config": run_config,
    }
    normalised: dict[str, Any] = json.loads(json.dumps(doc, default=str))  # tuples become lists, as read
    return normalised


def header_line(header: dict[str, Any]) -> str:
    return json.dumps({HEADER_KEY: header}) + "\n"


def parse_runs_file(text: str, source: str) -> RunsFile:
    """The header (if the first line is one) and the runs of a `--runs-out` file's text; CarError if a line
    is neither."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    header: dict[str, Any] | None = None
    outcomes = []
    for number, line in lines:
        try:
            doc = json.loads(line)
            if number == lines[0][0] and isinstance(doc, dict) and set(doc) == {HEADER_KEY}:
                header = dict(doc[HEADER_KEY])
                continue
            outcomes.append(RunOutcome(**doc))
        except (ValueError, TypeError) as exc:
            raise CarError(f"{source}: line {number} is not a --runs-out line ({exc})") from None
    return RunsFile(header, outcomes)


def read_runs_text(path: Path, source: str) -> str:
    try:
        return path.read_text()
    except (OSError, ValueError) as exc:
        raise CarError(f"{source}: cannot read it as a --runs-out file ({exc})") from None


def _hint(key: str) -> str:
    if key in _SETTINGS_HINTS:
        return _SETTINGS_HINTS[key]
    if key.startswith("config."):
        return f"the same --config, or --set {key.removeprefix('config.')}=VALUE"
    return "the version of car that wrote it"


def check_header(found: dict[str, Any], expected: dict[str, Any], source: str) -> None:
    """CarError naming the first input on which the file's runs and this command differ."""
    was, now = dotted_items(found), dotted_items(expected)
    for key in sorted(was.keys() | now.keys()):
        if was.get(key) != now.get(key):
            raise CarError(
                f"{source}: its runs were made with {key} = {was.get(key)!r}, this command gives "
                f"{now.get(key)!r}; resume with {_hint(key)} as it was started"
            )


def settings_from_header(header: dict[str, Any], runs: int, source: str) -> EvalSettings:
    """The evaluation settings a file's header records (for `--from-runs`)."""
    try:
        return EvalSettings(
            runs=max(runs, 1),
            seed=int(header["seed"]),
            kinds=tuple(header["kinds"]),
            settle_s=float(header["settle_s"]),
            max_seconds=float(header["max_seconds"]),
            false_stop_beyond_m=float(header["false_stop_beyond_m"]),
            world=WorldConfig(**header["world"]),
            perturbations=tuple(header["perturbations"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CarError(f"{source}: its header line is damaged ({exc}); delete that line") from None
