"""The drive log's SQLite schema (documented in the README): plain tables, frames and masks as BLOBs."""

from __future__ import annotations

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE run (              -- one row: what drove, how, with what
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    started_utc TEXT NOT NULL,      -- ISO 8601
    source_kind TEXT NOT NULL,      -- sim | camera | video | folder | replay
    source_id TEXT NOT NULL,        -- device, file, folder or log the frames came from
    bundle_name TEXT NOT NULL,
    bundle_path TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,    -- digest of the bundle's manifest (covers every file's sha256)
    runtime TEXT NOT NULL,          -- fp32 | int8
    threshold REAL NOT NULL,        -- P(STOP) above which the policy stops
    frame_format TEXT NOT NULL,     -- png (lossless) | jpeg
    config_json TEXT NOT NULL,      -- the full effective configuration
    versions_json TEXT NOT NULL     -- {"python": ..., "numpy": ..., "onnxruntime": ..., ...}
);
CREATE TABLE bundle_files (     -- the model bundle's files as the car loaded them
    role TEXT PRIMARY KEY,          -- onnx | onnx_int8 | weights | manifest
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE records (          -- one row per loop tick
    seq INTEGER PRIMARY KEY,        -- tick number from 0
    t_tick REAL NOT NULL,           -- monotonic s at the tick's start
    frame_seq INTEGER,              -- the source's sequence number (NULL: no frame)
    t_capture REAL,                 -- monotonic s the frame was captured
    source TEXT NOT NULL,
    p_go REAL, p_stop REAL,         -- network outputs (NULL: no inference)
    decision INTEGER NOT NULL,      -- 0 GO, 1 STOP
    decision_name TEXT NOT NULL,    -- GO | STOP
    reason TEXT NOT NULL,           -- stop_probability | go_confident | go_hold | awaiting_go | fault
    go_streak INTEGER NOT NULL,
    faults TEXT NOT NULL,           -- comma-separated fault kinds ('' when none); details in `faults`
    cmd_kind TEXT,                  -- DRIVE | STOP (NULL: nothing could be sent)
    cmd_speed REAL,
    cmd_seq INTEGER,
    t_command REAL,                 -- monotonic s the command's bytes were written
    cmd_bytes INTEGER,
    ack_seq INTEGER, ack_state TEXT, ack_motor_left REAL, ack_motor_right REAL, ack_rtt_ms REAL,
    capture_ms REAL, preprocess_ms REAL, inference_ms REAL, policy_ms REAL, send_ms REAL, log_ms REAL,
    latency_ms REAL                 -- capture -> command bytes written
);
CREATE TABLE frames (           -- the image the network saw (after centre-crop/resize)
    seq INTEGER PRIMARY KEY REFERENCES records(seq),
    format TEXT NOT NULL,           -- png | jpeg
    width INTEGER NOT NULL, height INTEGER NOT NULL,
    image BLOB NOT NULL             -- encoded RGB image (decode with any PNG/JPEG reader)
);
CREATE TABLE faults (
    seq INTEGER NOT NULL REFERENCES records(seq),
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE truth (            -- simulated world's ground truth, when the source has it
    seq INTEGER PRIMARY KEY REFERENCES records(seq),
    label INTEGER NOT NULL,
    distance_m REAL, lateral_m REAL,
    scene TEXT NOT NULL,
    mask BLOB                       -- the can's pixels, single-channel PNG (255 = can)
);
CREATE TABLE events (           -- things that are not ticks: dropped images, signals, link events
    t REAL NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TABLE stage_summary (    -- per-stage timing over the whole drive, written at the end
    stage TEXT PRIMARY KEY, count INTEGER, p50_ms REAL, p99_ms REAL, mean_ms REAL, max_ms REAL
);
CREATE TABLE run_end (          -- one row, written when the drive ends cleanly
    id INTEGER PRIMARY KEY CHECK (id = 1),
    ended_utc TEXT NOT NULL, end_reason TEXT NOT NULL,
    ticks INTEGER, frames INTEGER, stops INTEGER, drives INTEGER, overruns INTEGER,
    dropped_images INTEGER, dropped_records INTEGER,
    fault_counts_json TEXT NOT NULL
);
CREATE INDEX faults_seq ON faults(seq);
"""


RECORD_COLUMNS: tuple[str, ...] = (
    "seq", "t_tick", "frame_seq", "t_capture", "source", "p_go", "p_stop", "decision", "decision_name",
    "reason", "go_streak", "faults", "cmd_kind", "cmd_speed", "cmd_seq", "t_command", "cmd_bytes",
    "ack_seq", "ack_state", "ack_motor_left", "ack_motor_right", "ack_rtt_ms", "capture_ms",
    "preprocess_ms", "inference_ms", "policy_ms", "send_ms", "log_ms", "latency_ms",
)  # fmt: skip

SELECT_RECORDS = (
    "SELECT r.*, f.format, f.image, t.label, t.distance_m, t.lateral_m, t.scene, t.mask "
    "FROM records r LEFT JOIN frames f ON f.seq = r.seq LEFT JOIN truth t ON t.seq = r.seq"
)
