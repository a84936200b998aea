"""`car label`'s session: labels, skips, ranges, undo, resume, suggestions; the folder loads as a dataset.

The drive logs are real (written by `DriveLogWriter`, read by `DriveLogReader`) with synthetic frames
whose red channel encodes the tick, so a written file can be traced back to its frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from starlette.testclient import TestClient

from car.drivelog import DriveLogWriter, DriveMeta, utc_now
from car.errors import CarError
from car.label_session import JOURNAL_NAME, LabelSession, read_items, suggest
from car.types import CommandKind, CommandRecord, Decision, DriveRecord, Probabilities, Reason, StageTimings
from car.web.labeller import labeller_app
from car.web.security import AccessPolicy
from tests.test_loop import bundles  # noqa: F401  (the fixture is used by name)
from vision.datasets import load_dataset, read_manifest
from vision.imageio import read_rgb
from vision.labels import GO, STOP


def frame_for(seq: int) -> np.ndarray:
    rgb = np.full((224, 224, 3), 60, np.uint8)
    rgb[..., 0] = 8 * seq + 20
    rgb[100:140, 100:140] = 200
    return rgb


def write_log(path: Path, n: int, stop_from: int | None = None) -> Path:
    """A drive log of `n` ticks with frames; ticks from `stop_from` on were logged as STOP."""
    meta = DriveMeta(
        started_utc=utc_now(),
        source_kind="sim",
        source_id="test",
        bundle_name="test",
        bundle_path="/nowhere",
        bundle_sha256="0" * 64,
        runtime="fp32",
        threshold=0.5,
        frame_format="png",
        config_json="{}",
        versions=(),
    )
    with DriveLogWriter(path, meta) as writer:
        for seq in range(n):
            stop = stop_from is not None and seq >= stop_from
            p = 0.9 if stop else 0.1
            decision = Decision(STOP if stop else GO, Reason.STOP_PROBABILITY if stop else Reason.GO_HOLD)
            decision = Decision(decision.label, decision.reason, Probabilities(1 - p, p))
            writer.submit(
                DriveRecord(
                    seq=seq,
                    t_tick=seq / 30,
                    frame_seq=seq,
                    t_capture=seq / 30,
                    source="test",
                    rgb=frame_for(seq),
                    decision=decision,
                    command=CommandRecord(
                        CommandKind.STOP if stop else CommandKind.DRIVE, 0.0, seq, seq / 30
                    ),
                    ack=None,
                    faults=(),
                    timings=StageTimings(),
                )
            )
    return path


def test_labels_skips_ranges_undo_and_resume_write_a_dataset(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.sqlite", 12)
    out = tmp_path / "labels"
    session = LabelSession(read_items([log]), out)
    assert session.label([0, 1, 2], "go") == (0, [0, 1, 2])
    assert session.label([3], "stop")[1] == [3]
    assert session.label([4], "skip")[1] == [4]
    assert session.label([0, 5, 6], "stop")[1] == [5, 6]  # item 0 is already labelled: left as it was
    assert session.undo() == [5, 6]
    assert session.label([7], "stop")[1] == [7]
    assert session.counts() == {"go": 3, "stop": 2, "skip": 1, "left": 6, "total": 12}
    session.close()

    files = sorted(p.name for p in out.iterdir() if p.suffix == ".jpg")
    assert len(files) == 5 and sum(f.startswith("0_") for f in files) == 3
    data = load_dataset(out)
    assert sorted(data.labels.tolist()) == [GO, GO, GO, STOP, STOP]
    assert data.skipped == {}  # manifest, dataset.json and the hidden journal are not counted as junk
    manifest = read_manifest(out)  # the vision reader takes it as well
    assert [(m.label, m.index) for m in manifest] == [(GO, 0), (GO, 1), (GO, 2), (STOP, 3), (STOP, 4)]
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {line["seq"]: line["label"] for line in lines} == {0: GO, 1: GO, 2: GO, 3: STOP, 7: STOP}
    assert all(line["log"] == str(log.resolve()) for line in lines)
    for line in lines:  # each file is its tick's frame (JPEG: approximately)
        image = read_rgb(out / line["file"])
        assert abs(float(image[..., 0].mean()) - float(frame_for(line["seq"])[..., 0].mean())) < 3

    # resume: a new session on the same folder carries on
    resumed = LabelSession(read_items([log]), out)
    assert resumed.counts() == {"go": 3, "stop": 2, "skip": 1, "left": 6, "total": 12}
    assert resumed.label_of(4) == "skip" and resumed.label_of(5) is None
    assert resumed.undo() == [7]  # the journal remembers the order of actions
    assert not any(
        p.name.endswith(".jpg") and p.name.startswith("1_") and p.stat().st_size == 0 for p in out.iterdir()
    )
    assert len(load_dataset(out).labels) == 4
    resumed.close()
    assert (out / JOURNAL_NAME).exists() and (out / "dataset.json").exists()


def test_every_nth_frame_and_bad_input(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.sqlite", 10)
    assert [it.seq for it in read_items([log], every=3)] == [0, 3, 6, 9]
    session = LabelSession(read_items([log]), tmp_path / "out")
    with pytest.raises(CarError, match="expected one of"):
        session.label([0], "maybe")
    with pytest.raises(CarError, match="items"):
        session.label([99], "go")
    session.close()


def test_model_suggestions_put_disagreements_first(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    log = write_log(tmp_path / "a.sqlite", 8, stop_from=3)  # the car logged GO for 0-2, STOP for 3-7
    items, threshold = suggest(read_items([log]), bundles["always_stop"])
    assert threshold == pytest.approx(0.5)
    assert all(it.p_stop_model is not None and it.p_stop_model > 0.9 for it in items)
    assert [it.seq for it in items[:3]] == [0, 1, 2]  # the model says STOP where the car drove


def test_labeller_http_api_is_guarded_and_takes_no_paths(tmp_path: Path) -> None:
    log = write_log(tmp_path / "a.sqlite", 4)
    session = LabelSession(read_items([log]), tmp_path / "out")
    policy = AccessPolicy.resolve("127.0.0.1", "", environ={})
    client = TestClient(labeller_app(session, policy), base_url="http://127.0.0.1:8090")
    origin = {"origin": "http://127.0.0.1:8090"}
    assert client.get("/api/items").json()["counts"]["total"] == 4
    assert client.get("/api/frame/2").headers["content-type"] == "image/png"
    for path in (
        "/api/frame/9",
        "/api/frame/-1",
        "/api/frame/../../a.sqlite",
        "/api/frame/%2e%2e",
        "/a.sqlite",
    ):
        assert client.get(path).status_code == 404, path
    body = {"indices": [0], "label": "go"}
    assert client.post("/api/label", json=body, headers=origin).status_code == 403  # no control token
    evil = {"origin": "http://evil.example", "x-car-token": policy.token}
    assert client.post("/api/label", json=body, headers=evil).status_code == 403
    assert session.counts()["go"] == 0
    ok = {**origin, "x-car-token": policy.token}
    assert client.post("/api/label", json=body, headers=ok).json()["changed"] == [0]
    assert client.post("/api/undo", headers=ok).json()["restored"] == [0]
    session.close()
