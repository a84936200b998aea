"""Closed-loop evaluation: the same loop, policy and firmware core on a simulated clock, judged by the world.

Tiny stand-in networks make the outcomes certain (one that always says GO collides with a can on the path;
one that always says STOP never moves: a false stop); the shipped network must pass a short evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from car.commands import sim_eval as sim_eval_command
from car.config import CarConfig, with_overrides
from car.errors import CarError
from car.sim_eval import EvalSettings, evaluate
from tests.test_loop import bundles  # noqa: F401  (the fixture is used by name)
from vision.bundle import DEFAULT_BUNDLE


def config_for(bundle: Path) -> CarConfig:
    return with_overrides(CarConfig(), [f"model.bundle={bundle}"])


def test_always_go_collides_with_a_can_on_the_path(bundles: dict[str, Path]) -> None:  # noqa: F811
    report = evaluate(EvalSettings(runs=2, seed=3, kinds=("can_path",)), config_for(bundles["always_go"]))
    assert report.runs == 2 and report.collisions == 2
    assert report.false_stops == 0 and report.stop_distance_p50 is None
    for outcome in report.outcomes:
        assert outcome.kind == "can_path" and outcome.can_in_path
        assert outcome.can_start_m is not None and 0.9 <= outcome.can_start_m <= 2.6
        # it drove the whole way at 0.5 of 0.5 m/s: the simulated time matches the distance
        assert outcome.sim_seconds == pytest.approx(outcome.can_start_m / 0.25, rel=0.1, abs=0.3)
        assert outcome.impact_speed_mps == pytest.approx(0.25)  # it hit the can at its full drive speed
    assert report.impact_speed_max == pytest.approx(0.25)


def test_always_stop_is_a_false_stop_and_runs_are_deterministic(bundles: dict[str, Path]) -> None:  # noqa: F811
    settings = EvalSettings(runs=3, seed=5, kinds=("empty", "dark_mat"))
    first = evaluate(settings, config_for(bundles["always_stop"]))
    assert first.false_stops == 3 and first.collisions == 0 and first.false_stop_rate == 1.0
    # standing at the start, the wall (at least a metre beyond the track) is what lies ahead
    assert all(o.obstacle_ahead_m is not None and o.obstacle_ahead_m > 1.0 for o in first.outcomes)
    assert first.false_stops_at_obstacles == 0
    again = evaluate(settings, config_for(bundles["always_stop"]))
    assert again.outcomes == first.outcomes


def run_command(argv: list[str]) -> int:
    """`car sim eval ARGV` as car/commands/sim.py runs it: this module's add_arguments + run."""
    parser = argparse.ArgumentParser(prog="car sim eval")
    sim_eval_command.add_arguments(parser)
    return sim_eval_command.run(parser.parse_args(argv))


def test_command_json_keys(bundles: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    model = str(bundles["always_stop"])
    assert run_command(["--runs", "1", "--kinds", "empty", "--model", model, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"runs", "collisions", "false_stops", "stop_distance_p50", "false_stops_at_obstacles"} <= set(doc)
    assert doc["runs"] == 1 and doc["false_stops"] == 1
    with pytest.raises(CarError, match="no_such_kind"):
        run_command(["--runs", "1", "--kinds", "no_such_kind", "--model", model])
    with pytest.raises(CarError, match="--runs 0"):
        run_command(["--runs", "0", "--model", model])


@pytest.mark.skipif(
    not (DEFAULT_BUNDLE / "manifest.json").exists(), reason="the shipped bundle is not built yet"
)
def test_shipped_model_short_closed_loop_evaluation() -> None:
    """Three short runs (2 m track): a can on the path, a dark mat on the path, a can beside it."""
    from vision.sim import WorldConfig

    settings = EvalSettings(
        runs=3, seed=9, kinds=("can_path", "dark_mat", "can_side"), world=WorldConfig(track_length_m=2.0)
    )
    report = evaluate(settings, CarConfig())
    assert sorted(o.kind for o in report.outcomes) == ["can_path", "can_side", "dark_mat"]
    assert report.collisions == 0 and report.false_stops == 0
    assert all(o.ood_faults == 0 for o in report.outcomes)  # normal drives: the OOD signal never fires
    by_kind = {o.kind: o for o in report.outcomes}
    can = by_kind["can_path"]
    assert can.outcome == "stopped_for_can"  # the can starts 1.3 m ahead, inside the 2 m track
    assert can.stop_distance_m is not None and 0.0 < can.stop_distance_m <= 0.7
    assert by_kind["dark_mat"].outcome == by_kind["can_side"].outcome == "reached_end"


@pytest.mark.skipif(
    not (DEFAULT_BUNDLE / "manifest.json").exists(), reason="the shipped bundle is not built yet"
)
def test_shipped_model_stops_for_a_can_in_front_of_dark_furniture(capsys: pytest.CaptureFixture[str]) -> None:
    """The hard positive `edge-sim-3` drove into (seed 5, run 3 of `--kinds can_before_dark`: P(STOP) near 0
    until the can left the view); the shipped model trained on closed-loop frames of the kind, other seeds."""
    assert run_command(["--run", "727168946:can_before_dark", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["outcome"] == "stopped_for_can", run
    assert 0.30 <= run["stop_distance_m"] <= 0.45


def test_save_failures_writes_ordinary_drive_logs_and_run_repeats_one_run(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from car.cli import main
    from car.drivelog import DriveLogReader

    model = str(bundles["always_stop"])
    out = tmp_path / "failures"
    argv = ["--runs", "2", "--seed", "5", "--kinds", "empty", "--model", model, "--json"]
    runs_out = tmp_path / "runs.jsonl"
    perturb = ["--perturb", "noise,late_frames"]
    assert run_command([*argv, "--save-failures", str(out), *perturb, "--runs-out", str(runs_out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    # --from-runs reports with the world and perturbations the file's header records
    assert run_command(["--from-runs", str(runs_out), "--json"]) == 0
    again_doc = json.loads(capsys.readouterr().out)
    assert again_doc["false_stops"] == doc["false_stops"] and again_doc["by_kind"] == doc["by_kind"]
    assert again_doc["perturbations"] == ["noise", "late_frames"] and again_doc["domain"] == "default"
    assert run_command(["--from-runs", str(runs_out), *perturb, "--json"]) == 0  # the same, said again
    assert json.loads(capsys.readouterr().out)["by_kind"] == doc["by_kind"]
    with pytest.raises(
        CarError, match=r"made with --perturb \('noise', 'late_frames'\).*leave --perturb out"
    ):
        run_command(["--from-runs", str(runs_out), "--perturb", "noise"])
    assert doc["false_stops"] == 2 and doc["perturbations"] == ["noise", "late_frames"]
    assert {"stop_distance_p95", "ood_stops", "by_kind", "false_stop_rate"} <= set(doc)
    logs = sorted(out.glob("false_stop-run*-seed*-empty.sqlite"))
    assert [str(p) for p in logs] == sorted(doc["failure_logs"]) and len(logs) == 2
    with DriveLogReader(logs[0]) as log:
        assert log.summary is not None and log.summary.end_reason == "stopped" and len(log) > 3
    assert main(["log", "info", str(logs[0])]) == 0
    assert main(["replay", str(logs[0]), "--json"]) == 0
    capsys.readouterr()
    seed = logs[0].name.split("-seed")[1].split("-")[0]
    again = tmp_path / "again.sqlite"
    one = [f"--run={seed}:empty", "--model", model, "--perturb", "noise,late_frames", "--log", str(again)]
    assert run_command([*one, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "false_stop"
    with DriveLogReader(logs[0]) as a, DriveLogReader(again) as b:
        assert [r.decision.label for r in a.records()] == [r.decision.label for r in b.records()]


def test_resume_goes_on_with_an_evaluation_stopped_early(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = str(bundles["always_stop"])
    base = ["--seed", "7", "--kinds", "empty,dark_mat", "--model", model, "--json"]
    whole, part = tmp_path / "whole.jsonl", tmp_path / "part.jsonl"
    assert run_command(["--runs", "4", *base, "--runs-out", str(whole)]) == 0
    whole_doc = json.loads(capsys.readouterr().out)
    assert run_command(["--runs", "2", *base, "--runs-out", str(part)]) == 0
    capsys.readouterr()
    assert run_command(["--runs", "4", *base, "--runs-out", str(part), "--resume"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    # the same four runs, in order, whether run at once or in two goes; the report covers all four
    assert part.read_text() == whole.read_text()
    assert resumed["runs"] == 4 and resumed["by_kind"] == whole_doc["by_kind"]
    # nothing left to run: the file stays as it is
    assert run_command(["--runs", "4", *base, "--runs-out", str(part), "--resume"]) == 0
    capsys.readouterr()
    assert part.read_text() == whole.read_text()

    # the file's first line records what its runs depend on; a resume under other options is refused
    header = json.loads(part.read_text().splitlines()[0])["evaluation"]
    assert header["seed"] == 7 and header["kinds"] == ["empty", "dark_mat"] and header["perturbations"] == []
    other_seed = ["--runs", "4", "--seed", "8", "--kinds", "empty,dark_mat", "--model", model]
    with pytest.raises(CarError, match="made with seed = 7, this command gives 8; resume with --seed"):
        run_command([*other_seed, "--runs-out", str(part), "--resume"])
    with pytest.raises(
        CarError, match=r"perturbations = \[\], this command gives \['noise'\]; resume with --perturb"
    ):
        run_command(["--runs", "4", *base, "--perturb", "noise", "--runs-out", str(part), "--resume"])
    with pytest.raises(CarError, match=r"config.policy.drive_speed = .*--set policy.drive_speed=VALUE"):
        run_command(
            ["--runs", "4", *base, "--set", "policy.drive_speed=0.2", "--runs-out", str(part), "--resume"]
        )
    assert part.read_text() == whole.read_text()  # a refused resume never touches the file
    # a file written before headers existed: its runs are still checked against --seed and --kinds
    old = tmp_path / "old.jsonl"
    old.write_text("".join(whole.read_text().splitlines(keepends=True)[1:3]))
    with pytest.raises(CarError, match="resume with the --seed and --kinds it was started with"):
        run_command([*other_seed, "--runs-out", str(old), "--resume"])
    assert run_command(["--runs", "4", *base, "--runs-out", str(old), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["by_kind"] == whole_doc["by_kind"]
    assert old.read_text() == "".join(whole.read_text().splitlines(keepends=True)[1:])
    with pytest.raises(CarError, match="already holds 4 runs"):
        run_command(["--runs", "3", *base, "--runs-out", str(part), "--resume"])
    with pytest.raises(CarError, match="--resume needs --runs-out"):
        run_command(["--runs", "4", *base, "--resume"])
    with pytest.raises(CarError, match="cannot read it as a --runs-out file"):
        run_command(["--runs", "4", *base, "--runs-out", str(tmp_path), "--resume"])
    cut = tmp_path / "cut.jsonl"
    cut.write_text(whole.read_text()[:-20])
    with pytest.raises(CarError, match="cut short"):
        run_command(["--runs", "4", *base, "--runs-out", str(cut), "--resume"])
    assert cut.read_text() == whole.read_text()[:-20]  # an error never touches the file
