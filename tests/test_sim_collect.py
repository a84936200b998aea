"""`car sim collect`: closed-loop frames, labelled by the world, in the dataset layout `car train` reads.

Tiny stand-in bundles make the closed loop certain: "always_stop" never moves (every frame of a scene
without a can in reach is a STOP on a GO frame: a mistake), "always_go" drives into a can on the path
(its last frames are STOP frames it called GO).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from car.cli import main
from car.commands import sim_collect as sim_collect_command
from car.config import CarConfig, with_overrides
from car.errors import CarError
from car.sim_collect import (
    CollectSettings,
    KeepAll,
    KeepDisagreements,
    KeepEveryKth,
    KeepLargeErrors,
    KeepMistakes,
    SeenFrame,
    collect,
    parse_keep,
)
from car.sim_world import make_world
from tests.test_loop import bundles  # noqa: F401  (the fixture is used by name)
from vision.datasets import load_folders, read_manifest, scan_folder
from vision.imageio import read_rgb
from vision.labels import GO, STOP
from vision.sim import CanGeometry, WorldConfig, label_for


def config_for(bundle: Path) -> CarConfig:
    return with_overrides(CarConfig(), [f"model.bundle={bundle}"])


def seen(
    truth: int, p_stop: float | None, *, frame: int = 1, decision: int | None = None, accepted: bool = False
) -> SeenFrame:
    call = STOP if p_stop is not None and p_stop > 0.5 else GO
    return SeenFrame(0, frame, truth, call if decision is None else decision, p_stop, 0.5, accepted)


# -- the keep rules ------------------------------------------------------------------------------------------


def test_keep_rules_judge_frames_as_documented() -> None:
    wrong, disagree = KeepMistakes(), KeepDisagreements()
    assert wrong.keeps(seen(GO, 0.9)) and wrong.keeps(seen(STOP, 0.2))
    assert not wrong.keeps(seen(GO, 0.1)) and not wrong.keeps(seen(STOP, 0.8))
    # a STOP 0.35-0.7 m before a can in the path is accepted by the evaluation: not a mistake, no error
    assert not wrong.keeps(seen(GO, 0.9, accepted=True))
    assert not KeepLargeErrors(0.3).keeps(seen(GO, 0.9, accepted=True))
    # the start-up hysteresis: the network says GO (right), the policy still holds STOP
    startup = seen(GO, 0.01, decision=STOP)
    assert disagree.keeps(startup) and not wrong.keeps(startup)
    assert KeepLargeErrors(0.3).keeps(seen(GO, 0.35)) and not KeepLargeErrors(0.3).keeps(seen(GO, 0.25))
    assert KeepLargeErrors(0.3).keeps(seen(STOP, 0.65)) and not KeepLargeErrors(0.3).keeps(seen(STOP, 0.75))
    assert not KeepLargeErrors(0.3).keeps(seen(GO, None))
    assert [f for f in range(10) if KeepEveryKth(4).keeps(seen(GO, 0.0, frame=f))] == [0, 4, 8]
    assert KeepAll().keeps(seen(GO, 0.0))


def test_keep_spec_parses_names_the_first_rule_and_rejects_bad_specs() -> None:
    spec = parse_keep(" wrong, error=0.25 ,every=30")
    assert spec.spec() == "wrong,error=0.25,every=30"
    assert spec.why_kept(seen(GO, 0.9, frame=30)) == "wrong"
    assert spec.why_kept(seen(GO, 0.3, frame=31)) == "error"
    assert spec.why_kept(seen(GO, 0.0, frame=60)) == "every"
    assert spec.why_kept(seen(GO, 0.0, frame=61)) is None
    for bad, message in [
        ("often", "unknown rule 'often'"),
        ("every=0", "at least 1"),
        ("every=x", "whole number"),
        ("every", "whole number"),
        ("error=1.5", "strictly between"),
        ("wrong=3", "takes no value"),
        ("wrong,wrong", "given twice"),
        (" , ", "no rule given"),
    ]:
        with pytest.raises(CarError, match=message) as exc:
            parse_keep(bad)
        assert "\n" not in str(exc.value) and "--keep" in str(exc.value)


# -- collecting ----------------------------------------------------------------------------------------------


def test_collect_writes_a_dataset_folder_labelled_by_the_world(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """always_go drives into the can: the frames it called GO inside the STOP cutoff are kept as STOP."""
    out = tmp_path / "collected"
    settings = CollectSettings(out=out, runs=1, seed=21, kinds=("can_path",))
    summary = collect(settings, config_for(bundles["always_go"]))
    assert summary.outcomes["collision"] == 1 and summary.runs == 1
    assert summary.saved_stop > 0 and summary.saved_go > 0
    assert summary.saved_because["wrong"] == summary.saved_stop  # every STOP frame was called GO
    assert summary.frames_seen > summary.saved
    records = read_manifest(out)
    assert len(records) == summary.saved
    scan = scan_folder(out)
    assert scan.layout == "label_prefix" and not scan.skipped and len(scan.items) == summary.saved
    run_seed = records[0].closed_loop.run_seed if records[0].closed_loop else -1
    world = make_world(run_seed, "can_path")  # the run's scene, rebuilt from its seed
    assert world.scene.can is not None
    config = WorldConfig()
    for index, record in enumerate(records):
        loop = record.closed_loop
        assert (
            loop is not None
            and loop.run == 0
            and loop.outcome == "collision"
            and loop.model == "test-always_go"
        )
        assert record.index == index and record.seed == 21 and record.scene == "can_path"
        assert record.file.startswith(f"{record.label}_")
        assert record.distance_m is not None and record.lateral_m is not None
        geometry = CanGeometry(record.distance_m, record.lateral_m)
        assert record.label == label_for(config, geometry, world.scene.can.radius)
        if record.label == STOP:
            assert loop.kept_because == "wrong" and loop.decision == "GO" and loop.p_stop is not None
            assert loop.p_stop < 0.5
        else:
            assert loop.kept_because == "every" and loop.frame % 30 == 0
        if record.mask is not None:  # the can's pixels, the same size as the frame
            mask = read_rgb(out / record.mask)
            assert mask.shape == (224, 224, 3) and mask.max() == 255
    frames = [r.closed_loop.frame for r in records if r.closed_loop]
    assert frames == sorted(frames) and frames[0] == 0
    # the first frame is the run's start pose: it must look like the world's own first frame
    start = world.frame().rgb
    first = read_rgb(out / records[0].file)
    assert np.abs(first.astype(int) - start.astype(int)).mean() < 4  # JPEG at quality 92


def test_collect_is_deterministic_whatever_the_jobs_and_train_reads_it(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """always_stop never moves: each scene ends as a false stop, every frame of it a mistake (kept)."""
    base = CollectSettings(out=tmp_path / "a", runs=2, seed=22, kinds=("empty", "dark_mat"))
    config = config_for(bundles["always_stop"])
    first = collect(base, config)
    second = collect(
        CollectSettings(out=tmp_path / "b", runs=2, seed=22, kinds=("empty", "dark_mat")), config, jobs=2
    )
    assert first.outcomes["false_stop"] == 2 and first.saved == first.frames_seen == first.network_mistakes
    assert first.saved_stop == 0 and set(first.saved_because) == {"wrong", "error", "every"}
    a = (tmp_path / "a" / "manifest.jsonl").read_text()
    assert a == (tmp_path / "b" / "manifest.jsonl").read_text()
    for record in read_manifest(tmp_path / "a"):
        assert (tmp_path / "a" / record.file).read_bytes() == (tmp_path / "b" / record.file).read_bytes()
    assert first.to_dict() | {"out": "", "wall_seconds": 0} == second.to_dict() | {
        "out": "",
        "wall_seconds": 0,
    }
    # another seed: other scenes, other files
    other = collect(CollectSettings(out=tmp_path / "c", runs=1, seed=23, kinds=("empty",)), config)
    names = {r.file for r in read_manifest(tmp_path / "c")}
    assert other.saved > 0 and not names & {r.file for r in read_manifest(tmp_path / "a")}
    # the loaders `car train` uses read the collected folders as they are, beside each other
    data = load_folders([tmp_path / "a", tmp_path / "c"])
    assert len(data.labels) == first.saved + other.saved and set(data.labels.tolist()) == {GO}
    assert [part.n for part in data.parts] == [first.saved, other.saved]


def test_collect_refuses_eval_seeds_and_used_folders(bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    config = config_for(bundles["always_stop"])
    with pytest.raises(CarError, match="evaluation seed"):
        collect(CollectSettings(out=tmp_path / "x", runs=1, seed=1), config)
    assert not (tmp_path / "x").exists()
    out = tmp_path / "used"
    collect(CollectSettings(out=out, runs=1, seed=24, kinds=("empty",)), config)
    with pytest.raises(Exception, match="already holds frames"):
        collect(CollectSettings(out=out, runs=1, seed=25, kinds=("empty",)), config)


# -- the command ---------------------------------------------------------------------------------------------


def test_command_prints_json(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    parser = argparse.ArgumentParser()
    sim_collect_command.add_arguments(parser)
    argv = [
        "--model",
        str(bundles["always_stop"]),
        "--runs",
        "1",
        "--seed",
        "26",
        "--out",
        str(tmp_path / "o"),
    ]
    assert (
        sim_collect_command.run(
            parser.parse_args([*argv, "--kinds", "shadow", "--keep", "every=10", "--json"])
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["keep"] == "every=10" and doc["saved_because"] == {"every": doc["saved"]}
    assert doc["frames_seen"] >= 30 and doc["saved"] == len(range(0, doc["frames_seen"], 10))
    assert doc["by_kind"]["shadow"]["runs"] == 1 and doc["outcomes"]["false_stop"] == 1


def test_perturbed_collection_saves_the_perturbed_frames_the_network_saw(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Same runs with and without `--perturb`: the kept frames are the ones after the camera effects."""
    import json

    parser = argparse.ArgumentParser()
    sim_collect_command.add_arguments(parser)
    common = ["--model", str(bundles["always_stop"]), "--runs", "1", "--seed", "27", "--kinds", "empty"]
    common += ["--keep", "every=10", "--json"]
    docs = {}
    for name, extra in (("plain", []), ("perturbed", ["--perturb", "white_balance,noise"])):
        args = parser.parse_args([*common, "--out", str(tmp_path / name), *extra])
        assert sim_collect_command.run(args) == 0
        docs[name] = json.loads(capsys.readouterr().out)
    assert (
        docs["perturbed"]["perturbations"] == ["white_balance", "noise"]
        and docs["plain"]["perturbations"] == []
    )
    plain, perturbed = read_manifest(tmp_path / "plain"), read_manifest(tmp_path / "perturbed")
    assert [r.closed_loop.frame for r in plain if r.closed_loop] == [
        r.closed_loop.frame for r in perturbed if r.closed_loop
    ]
    for a, b in zip(plain, perturbed, strict=True):
        assert a.label == b.label == GO
        diff = np.abs(
            read_rgb(tmp_path / "plain" / a.file).astype(int) - read_rgb(tmp_path / "perturbed" / b.file)
        )
        assert diff.mean() > 4  # sensor noise of 4-12 grey levels and a colour cast, beyond JPEG's error


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep", "every=0"], "car sim: error: --keep 'every=0': every=0: K must be at least 1"),
        (["--keep", "sometimes"], "unknown rule 'sometimes'"),
        (["--seed", "0"], "--seed 0: an evaluation seed"),
        (["--model", "no/such/bundle"], "no/such/bundle: no such model bundle folder"),
        (["--kinds", "lava"], "--kinds 'lava'"),
        (["--runs", "0"], "--runs 0"),
        (["--perturb", "fog"], "--perturb 'fog': choose 'all' or from"),
    ],
)
def test_cli_errors_are_one_line(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    argv = ["sim", "collect", "--model", "models/edge-sim", "--runs", "1", "--seed", "10", "--out", str(out)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()
