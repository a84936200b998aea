"""Row conversion: a `DriveRecord` to its `records` row and back, the run's metadata to and from `run`."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from car.drivelog.masks import decode_mask
from car.drivelog.meta import BundleFile, DriveMeta
from car.types import (
    AckRecord,
    CommandKind,
    CommandRecord,
    Decision,
    DriveRecord,
    Fault,
    Probabilities,
    Reason,
    StageTimings,
)
from vision.frame import GroundTruth
from vision.imageio import decode_rgb


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def record_row(r: DriveRecord) -> tuple[object, ...]:
    """The `records` row of one tick, in `RECORD_COLUMNS` order."""
    d, c, a, t = r.decision, r.command, r.ack, r.timings
    p = d.probs
    return (
        r.seq, r.t_tick, r.frame_seq, r.t_capture, r.source,
        None if p is None else p.go, None if p is None else p.stop,
        d.label, d.label_name, d.reason.value, d.go_streak,
        ",".join(f.kind.value for f in r.faults),
        None if c is None else c.kind.value, None if c is None else c.speed,
        None if c is None else c.seq, None if c is None else c.t_written,
        None if c is None else c.wire_bytes,
        None if a is None else a.seq, None if a is None else a.state,
        None if a is None else a.motor_left, None if a is None else a.motor_right,
        None if a is None else ms(a.rtt_s),
        ms(t.capture), ms(t.preprocess), ms(t.inference), ms(t.policy), ms(t.send), ms(t.log),
        ms(t.latency),
    )  # fmt: skip


def finite(x: float) -> float | None:
    return None if np.isnan(x) else x


def without_image(r: DriveRecord) -> DriveRecord:
    """The record as kept when the writer's queue is full: no frame, no mask."""
    return DriveRecord(
        r.seq,
        r.t_tick,
        r.frame_seq,
        r.t_capture,
        r.source,
        None,
        r.decision,
        r.command,
        r.ack,
        r.faults,
        r.timings,
        None
        if r.truth is None
        else GroundTruth(r.truth.label, r.truth.distance_m, r.truth.lateral_m, None, r.truth.scene),
    )


def nan_if_none(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def seconds(ms_value: float | None) -> float:
    return 0.0 if ms_value is None else float(ms_value) / 1000.0


def meta_row(m: DriveMeta) -> tuple[object, ...]:
    """The `run` row (without its id) of the run's metadata."""
    return (
        m.schema_version,
        m.started_utc,
        m.source_kind,
        m.source_id,
        m.bundle_name,
        m.bundle_path,
        m.bundle_sha256,
        m.runtime,
        m.threshold,
        m.frame_format,
        m.config_json,
        json.dumps(dict(m.versions)),
    )


def read_meta(conn: sqlite3.Connection) -> DriveMeta:
    row = conn.execute("SELECT * FROM run WHERE id = 1").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("the run table is empty")
    files = tuple(
        BundleFile(f["role"], f["path"], f["sha256"], int(f["bytes"]))
        for f in conn.execute("SELECT * FROM bundle_files ORDER BY role")
    )
    versions = tuple((str(k), str(v)) for k, v in json.loads(row["versions_json"]).items())
    return DriveMeta(
        started_utc=row["started_utc"],
        source_kind=row["source_kind"],
        source_id=row["source_id"],
        bundle_name=row["bundle_name"],
        bundle_path=row["bundle_path"],
        bundle_sha256=row["bundle_sha256"],
        runtime=row["runtime"],
        threshold=float(row["threshold"]),
        frame_format=row["frame_format"],
        config_json=row["config_json"],
        versions=versions,
        bundle_files=files,
        schema_version=int(row["schema_version"]),
    )


def _command(row: sqlite3.Row) -> CommandRecord | None:
    if row["cmd_kind"] is None:
        return None
    return CommandRecord(
        CommandKind(row["cmd_kind"]),
        float(row["cmd_speed"]),
        None if row["cmd_seq"] is None else int(row["cmd_seq"]),
        None if row["t_command"] is None else float(row["t_command"]),
        int(row["cmd_bytes"] or 0),
    )


def _ack(row: sqlite3.Row) -> AckRecord | None:
    if row["ack_seq"] is None:
        return None
    return AckRecord(
        int(row["ack_seq"]),
        str(row["ack_state"]),
        float(row["ack_motor_left"]),
        float(row["ack_motor_right"]),
        None if row["ack_rtt_ms"] is None else float(row["ack_rtt_ms"]) / 1000.0,
    )


def _timings(row: sqlite3.Row) -> StageTimings:
    return StageTimings(
        capture=seconds(row["capture_ms"]),
        preprocess=seconds(row["preprocess_ms"]),
        inference=seconds(row["inference_ms"]),
        policy=seconds(row["policy_ms"]),
        send=seconds(row["send_ms"]),
        log=seconds(row["log_ms"]),
        latency=None if row["latency_ms"] is None else seconds(row["latency_ms"]),
    )


def _truth(row: sqlite3.Row, with_mask: bool) -> GroundTruth | None:
    if row["label"] is None:
        return None
    return GroundTruth(
        int(row["label"]),
        None if row["distance_m"] is None else float(row["distance_m"]),
        None if row["lateral_m"] is None else float(row["lateral_m"]),
        None if row["mask"] is None or not with_mask else decode_mask(row["mask"]),
        str(row["scene"]),
    )


def row_to_record(
    row: sqlite3.Row, faults: tuple[Fault, ...], *, images: bool = True, masks: bool = True
) -> DriveRecord:
    """A `records` row joined with its frame and truth (`SELECT_RECORDS`) back to a `DriveRecord`."""
    probs = None if row["p_go"] is None else Probabilities(float(row["p_go"]), float(row["p_stop"]))
    decision = Decision(int(row["decision"]), Reason(row["reason"]), probs, int(row["go_streak"]))
    rgb = decode_rgb(row["image"]) if images and row["image"] is not None else None
    return DriveRecord(
        seq=int(row["seq"]),
        t_tick=float(row["t_tick"]),
        frame_seq=None if row["frame_seq"] is None else int(row["frame_seq"]),
        t_capture=None if row["t_capture"] is None else float(row["t_capture"]),
        source=str(row["source"]),
        rgb=rgb,
        decision=decision,
        command=_command(row),
        ack=_ack(row),
        faults=faults,
        timings=_timings(row),
        truth=_truth(row, images and masks),
    )
