"""The `--runs-out` file's format: its header records a run's inputs, and a bad line or header is named."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from car.config import CarConfig, with_overrides
from car.errors import CarError
from car.eval_runs import (
    check_header,
    evaluation_header,
    header_line,
    parse_runs_file,
    settings_from_header,
)
from car.sim_eval import EvalSettings, RunOutcome
from vision.sim import WorldConfig

RUN = RunOutcome(0, 11, "empty", "reached_end", None, None, False, 90, 3.0, 0, 0)


def test_header_round_trips_to_the_settings_and_leaves_the_bundle_path_out() -> None:
    settings = EvalSettings(
        runs=9, seed=4, kinds=("empty",), world=WorldConfig(domain="shifted"), perturbations=("noise",)
    )
    config = with_overrides(CarConfig(), ["model.bundle=elsewhere/bundle"])
    header = evaluation_header(settings, config, "ab" * 32)
    text = header_line(header) + json.dumps(asdict(RUN)) + "\n"
    runs = parse_runs_file(text, "runs.jsonl")
    assert runs.header == header and runs.outcomes == [RUN]
    assert "bundle" not in header["config"]["model"]
    assert settings_from_header(header, 1, "runs.jsonl") == EvalSettings(
        runs=1, seed=4, kinds=("empty",), world=WorldConfig(domain="shifted"), perturbations=("noise",)
    )
    check_header(header, evaluation_header(settings, CarConfig(), "ab" * 32), "runs.jsonl")  # path only
    with pytest.raises(CarError, match=r"bundle_sha256 .* resume with --model"):
        check_header(header, evaluation_header(settings, config, "cd" * 32), "runs.jsonl")


def test_a_bad_line_or_a_damaged_header_is_named() -> None:
    with pytest.raises(CarError, match=r"runs.jsonl: line 2 is not a --runs-out line"):
        parse_runs_file(json.dumps(asdict(RUN)) + "\n{not json\n", "runs.jsonl")
    with pytest.raises(CarError, match=r"runs.jsonl: its header line is damaged .*delete that line"):
        settings_from_header({"seed": 1}, 1, "runs.jsonl")
