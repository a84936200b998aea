"""The drive log: round trip of every field, lossless frames, readable with plain sqlite3, drops counted."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from car.drivelog import BundleFile, DriveLogReader, DriveLogWriter, DriveMeta, RunSummary, utc_now
from car.errors import CarError
from car.timing import stage_stat
from car.types import (
    AckRecord,
    CommandKind,
    CommandRecord,
    Decision,
    DriveRecord,
    Fault,
    FaultKind,
    Probabilities,
    Reason,
    StageTimings,
)
from vision.frame import GroundTruth
from vision.imageio import decode_rgb


def make_meta(frame_format: str = "png") -> DriveMeta:
    return DriveMeta(
        started_utc=utc_now(),
        source_kind="sim",
        source_id="world:seed=1",
        bundle_name="tiny",
        bundle_path="/tmp/tiny",
        bundle_sha256="ab" * 32,
        runtime="fp32",
        threshold=0.5,
        frame_format=frame_format,
        config_json=json.dumps({"loop": {"rate_hz": 30.0}}),
        versions=(("python", "3.11"), ("numpy", np.__version__)),
        bundle_files=(BundleFile("onnx", "model.onnx", "cd" * 32, 1234),),
    )


def make_record(seq: int, rng: np.random.Generator, *, with_frame: bool = True) -> DriveRecord:
    rgb = rng.integers(0, 256, size=(224, 224, 3), dtype=np.uint8) if with_frame else None
    mask = np.zeros((224, 224), dtype=bool)
    mask[100:140, 90:130] = True
    stop = seq % 3 == 0
    return DriveRecord(
        seq=seq,
        t_tick=10.0 + seq / 30,
        frame_seq=seq + 100 if with_frame else None,
        t_capture=10.0 + seq / 30 - 0.002 if with_frame else None,
        source="sim",
        rgb=rgb,
        decision=Decision(
            1 if stop else 0,
            Reason.STOP_PROBABILITY if stop else Reason.GO_CONFIDENT,
            Probabilities(0.1 + seq / 100, 0.9 - seq / 100) if with_frame else None,
            go_streak=seq % 4,
        ),
        command=CommandRecord(
            CommandKind.STOP if stop else CommandKind.DRIVE, 0.0 if stop else 0.4, seq, 11.0, 9
        ),
        ack=AckRecord(seq - 1, "ARMED", 0.4, 0.4, 0.0012) if seq else None,
        faults=(Fault(FaultKind.STALE_FRAME, "age 0.3 s"), Fault(FaultKind.ACK_MISSING, "x"))
        if seq == 2
        else (),
        timings=StageTimings(0.001, 0.002, 0.003, 0.0001, 0.0002, 0.00005, latency=0.0061),
        truth=GroundTruth(1, 0.3, 0.01, mask, "can_path") if with_frame else None,
    )


def test_round_trip_every_field(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "drive.sqlite"
    written = [make_record(i, rng, with_frame=i != 4) for i in range(8)]
    summary = RunSummary(
        "duration", 8, 7, 3, 5, 1, 0, 0, (("stale_frame", 1),), (stage_stat("capture", [0.001]),)
    )
    with DriveLogWriter(path, make_meta()) as log:
        for r in written:
            assert log.submit(r)
        log.event("signal", "SIGINT")
        log.close(summary)
    with DriveLogReader(path) as log:
        assert len(log) == 8
        assert log.meta == dataclasses.replace(make_meta(), started_utc=log.meta.started_utc)
        assert log.meta.file_sha256("onnx") == "cd" * 32
        assert log.meta.config() == {"loop": {"rate_hz": 30.0}}
        got = list(log.records())
        assert [r.seq for r in got] == list(range(8))
        for w, g in zip(written, got, strict=True):
            assert g.decision == w.decision
            assert g.command == w.command
            assert g.faults == w.faults
            assert g.frame_seq == w.frame_seq and g.t_capture == w.t_capture
            assert g.timings.latency == pytest.approx(w.timings.latency)
            assert g.timings.inference == pytest.approx(w.timings.inference)
            if w.ack is None:
                assert g.ack is None
            else:
                assert g.ack is not None and g.ack.rtt_s == pytest.approx(w.ack.rtt_s)
            if w.rgb is None:
                assert g.rgb is None and g.truth is None
            else:
                assert g.rgb is not None and np.array_equal(g.rgb, w.rgb)  # lossless
                assert g.truth is not None and w.truth is not None and w.truth.mask is not None
                assert g.truth.mask is not None and np.array_equal(g.truth.mask, w.truth.mask)
                assert g.truth.scene == "can_path"
        frames_only = list(log.records(masks=False))
        for w, g in zip(written, frames_only, strict=True):
            if w.rgb is not None:
                assert g.rgb is not None and np.array_equal(g.rgb, w.rgb)
                assert g.truth is not None and g.truth.mask is None and g.truth.label == 1
        assert log[5].decision == written[5].decision
        with pytest.raises(KeyError):
            log[99]
        got_summary = log.summary
        assert got_summary is not None and got_summary.fault_counts == (("stale_frame", 1),)
        assert got_summary.stages[0].stage == "capture"
        assert log.events()[0][1:] == ("signal", "SIGINT")


def test_plain_sqlite3_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "drive.sqlite"
    rng = np.random.default_rng(1)
    record = make_record(0, rng)
    with DriveLogWriter(path, make_meta()) as log:
        log.submit(record)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    row = conn.execute("SELECT decision_name, reason, cmd_kind FROM records").fetchone()
    assert row == ("STOP", "stop_probability", "STOP")
    blob = conn.execute("SELECT image FROM frames WHERE seq = 0").fetchone()[0]
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    assert record.rgb is not None and np.array_equal(decode_rgb(blob), record.rgb)


def test_jpeg_frames_are_optional(tmp_path: Path) -> None:
    path = tmp_path / "drive.sqlite"
    rng = np.random.default_rng(2)
    with DriveLogWriter(path, make_meta("jpeg")) as log:
        log.submit(make_record(0, rng))
    with DriveLogReader(path) as log:
        assert log.meta.frame_format == "jpeg"
        assert log[0].rgb is not None and log[0].rgb.shape == (224, 224, 3)
    with pytest.raises(CarError, match="frame_format"):
        DriveLogWriter(tmp_path / "x.sqlite", make_meta("gif"))


def test_full_queue_keeps_decisions_and_counts_dropped_images(tmp_path: Path) -> None:
    path = tmp_path / "drive.sqlite"
    rng = np.random.default_rng(3)
    records = [make_record(i, rng) for i in range(60)]
    writer = DriveLogWriter(path, make_meta(), queue_size=2)
    writer.open()
    accepted = [writer.submit(r) for r in records]  # faster than the writer can encode PNGs
    writer.close()
    assert not all(accepted)
    with DriveLogReader(path) as log:
        assert len(log) == 60  # every decision is kept
        images = sum(r.rgb is not None for r in log.records())
        assert images == 60 - writer.dropped_images
        assert any(kind == "dropped" for _, kind, _ in log.events())


def test_existing_file_and_garbage_file_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "drive.sqlite"
    path.write_bytes(b"not a database at all" * 10)
    with pytest.raises(CarError, match="already exists"):
        DriveLogWriter(path, make_meta()).open()
    with pytest.raises(CarError, match="not a drive log"):
        DriveLogReader(path).open()
    with pytest.raises(CarError, match="no such drive log"):
        DriveLogReader(tmp_path / "missing.sqlite").open()
