"""The drive log: one SQLite file per drive, written behind the control loop, readable by anyone.

Writing (`DriveLogWriter`): the loop hands each tick's `DriveRecord` to `submit`, which never blocks; a
writer thread encodes the frame (PNG, lossless, by default) and inserts it. The file is in WAL mode and the
thread commits at least every `commit_interval_s` (0.25 s by default), so a process killed with SIGKILL
leaves a file that opens and holds every tick up to its last commit. When the bounded queue is full (a slow
disk), the record is kept without its image in an overflow list; the dropped image is counted, stored as an
event and in the run summary, never silent. A write error is surfaced as `writer_error` (the loop then
stops the car: it never drives unrecorded).

Reading (`DriveLogReader`): plain tables, frames and masks as PNG BLOBs, so the `sqlite3` shell or pandas
read it without this project. The schema is `SCHEMA` below (documented in the README).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from car.errors import CarError
from car.timing import StageStat
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
from vision.imageio import decode_rgb, encode_jpeg, encode_png
from vision.labels import label_name

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


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class BundleFile:
    role: str
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True, slots=True)
class DriveMeta:
    """The run's metadata: which network drove (with every file's hash), on what, configured how."""

    started_utc: str
    source_kind: str
    source_id: str
    bundle_name: str
    bundle_path: str
    bundle_sha256: str
    runtime: str
    threshold: float
    frame_format: str
    config_json: str
    versions: tuple[tuple[str, str], ...]
    bundle_files: tuple[BundleFile, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def config(self) -> dict[str, object]:
        """The effective configuration as parsed JSON (for display and for re-running)."""
        parsed: dict[str, object] = json.loads(self.config_json)
        return parsed

    def file_sha256(self, role: str) -> str | None:
        return next((f.sha256 for f in self.bundle_files if f.role == role), None)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the loop reports when a drive ends; stored in `run_end` and `stage_summary`."""

    end_reason: str
    ticks: int
    frames: int
    stops: int
    drives: int
    overruns: int
    dropped_images: int
    dropped_records: int
    fault_counts: tuple[tuple[str, int], ...]
    stages: tuple[StageStat, ...]
    ended_utc: str = field(default_factory=utc_now)

    @property
    def faults(self) -> int:
        return sum(n for _, n in self.fault_counts)


def encode_mask(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 2-D array
        raise ValueError("could not PNG-encode mask")
    return buf.tobytes()


def decode_mask(data: bytes) -> np.ndarray:
    gray = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise CarError("drive log: a stored mask is not a decodable PNG; the log is damaged")
    return gray > 127


@dataclass(frozen=True, slots=True)
class _Event:
    t: float
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Finish:
    summary: RunSummary


_STOP_WRITER = object()


class DriveLogWriter:
    """Append-only writer of one drive's log; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: str | Path,
        meta: DriveMeta,
        *,
        queue_size: int = 256,
        overflow_size: int = 100_000,
        commit_interval_s: float = 0.25,
        jpeg_quality: int = 90,
    ) -> None:
        if meta.frame_format not in ("png", "jpeg"):
            raise CarError(f"log.frame_format={meta.frame_format!r}: use png (lossless) or jpeg")
        self.path = Path(path)
        self.meta = meta
        self.commit_interval_s = commit_interval_s
        self.jpeg_quality = jpeg_quality
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._overflow: deque[DriveRecord] = deque()
        self._overflow_size = overflow_size
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self.writer_error: BaseException | None = None
        self.dropped_images = 0
        self.dropped_records = 0
        self.written = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def open(self) -> DriveLogWriter:
        if self.path.exists():
            raise CarError(f"{self.path}: a drive log already exists there; choose another --log path")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CarError(f"{self.path.parent}: cannot create the log folder ({exc}); check --log") from exc
        self._thread = threading.Thread(target=self._run, name="drive-log-writer", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._open_error is not None:
            self._thread.join()
            raise CarError(f"{self.path}: cannot create the drive log ({self._open_error}); check --log")
        return self

    def close(self, summary: RunSummary | None = None, timeout: float = 30.0) -> None:
        """Write the summary (if any), flush everything queued, commit, and stop the thread."""
        if self._thread is None:
            return
        if summary is not None:
            self._put_blocking(_Finish(summary), timeout)
        self._put_blocking(_STOP_WRITER, timeout)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> DriveLogWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- the loop's side (never blocks) ----------------------------------------------------------------
    def submit(self, record: DriveRecord) -> bool:
        """Queue one tick. Returns False when the queue was full and the image had to be dropped."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            pass
        with self._lock:
            if len(self._overflow) < self._overflow_size:
                if record.rgb is not None:
                    self.dropped_images += 1
                self._overflow.append(_without_image(record))
            else:
                self.dropped_records += 1
        return False

    def event(self, kind: str, detail: str, t: float | None = None) -> None:
        """Record something that is not a tick (signal, link reconnect). Blocks at most briefly."""
        item = _Event(time.monotonic() if t is None else t, kind, detail)
        with contextlib.suppress(queue.Full):
            self._queue.put(item, timeout=0.05)

    @property
    def healthy(self) -> bool:
        return self.writer_error is None and self._open_error is None

    def _put_blocking(self, item: object, timeout: float) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put(item, timeout=timeout)

    # -- the writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            self._write_meta(conn)
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        last_commit = time.monotonic()
        in_txn = False
        dropped_reported = (0, 0)
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if not in_txn and (item is not None or self._overflow):
                    conn.execute("BEGIN")
                    in_txn = True
                if item is _STOP_WRITER:
                    break
                if item is not None:
                    self._write_item(conn, item)
                with self._lock:
                    spilled = list(self._overflow)
                    self._overflow.clear()
                    dropped_now = (self.dropped_images, self.dropped_records)
                for record in spilled:
                    self._write_record(conn, record)
                if dropped_now != dropped_reported:
                    if not in_txn:
                        conn.execute("BEGIN")
                        in_txn = True
                    self._write_event(
                        conn,
                        _Event(
                            time.monotonic(),
                            "dropped",
                            f"images={dropped_now[0]} records={dropped_now[1]} (queue full: disk too slow)",
                        ),
                    )
                    dropped_reported = dropped_now
                now = time.monotonic()
                if in_txn and now - last_commit >= self.commit_interval_s:
                    conn.execute("COMMIT")
                    in_txn = False
                    last_commit = now
            with self._lock:
                spilled = list(self._overflow)
                self._overflow.clear()
            for record in spilled:
                self._write_record(conn, record)
            if in_txn:
                conn.execute("COMMIT")
        except BaseException as exc:  # surfaced to the loop, which stops the car
            self.writer_error = exc
            with contextlib.suppress(sqlite3.Error):
                if in_txn:
                    conn.execute("COMMIT")
            self._drain_after_error()
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _drain_after_error(self) -> None:
        """Keep `submit`/`close` from blocking forever once writing is impossible."""
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _STOP_WRITER:
                return
            if isinstance(item, DriveRecord):
                self.dropped_records += 1

    def _write_item(self, conn: sqlite3.Connection, item: object) -> None:
        if isinstance(item, DriveRecord):
            self._write_record(conn, item)
        elif isinstance(item, _Event):
            self._write_event(conn, item)
        elif isinstance(item, _Finish):
            self._write_summary(conn, item.summary)

    def _write_meta(self, conn: sqlite3.Connection) -> None:
        m = self.meta
        conn.execute(
            "INSERT INTO run VALUES (1,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
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
            ),
        )
        conn.executemany(
            "INSERT INTO bundle_files VALUES (?,?,?,?)",
            [(f.role, f.path, f.sha256, f.bytes) for f in m.bundle_files],
        )

    def _encode(self, rgb: np.ndarray) -> bytes:
        if self.meta.frame_format == "jpeg":
            return encode_jpeg(rgb, self.jpeg_quality)
        return encode_png(rgb)

    def _write_record(self, conn: sqlite3.Connection, r: DriveRecord) -> None:
        try:
            self._insert_record(conn, r)
        except (
            sqlite3.IntegrityError
        ) as exc:  # a record the log cannot take (e.g. a repeated seq): keep going
            self.dropped_records += 1
            self._write_event(conn, _Event(time.monotonic(), "record_rejected", f"seq {r.seq}: {exc}"))

    def _insert_record(self, conn: sqlite3.Connection, r: DriveRecord) -> None:
        conn.execute(f"INSERT INTO records VALUES ({','.join('?' * len(RECORD_COLUMNS))})", _record_row(r))
        if r.rgb is not None:
            h, w = r.rgb.shape[:2]
            conn.execute(
                "INSERT INTO frames VALUES (?,?,?,?,?)",
                (r.seq, self.meta.frame_format, w, h, self._encode(r.rgb)),
            )
        if r.faults:
            conn.executemany(
                "INSERT INTO faults VALUES (?,?,?)", [(r.seq, f.kind.value, f.detail) for f in r.faults]
            )
        if r.truth is not None:
            g = r.truth
            conn.execute(
                "INSERT INTO truth VALUES (?,?,?,?,?,?)",
                (
                    r.seq,
                    g.label,
                    g.distance_m,
                    g.lateral_m,
                    g.scene,
                    None if g.mask is None else encode_mask(g.mask),
                ),
            )
        self.written += 1

    def _write_event(self, conn: sqlite3.Connection, e: _Event) -> None:
        conn.execute("INSERT INTO events VALUES (?,?,?)", (e.t, e.kind, e.detail))

    def _write_summary(self, conn: sqlite3.Connection, s: RunSummary) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO stage_summary VALUES (?,?,?,?,?,?)",
            [
                (
                    x.stage,
                    x.count,
                    _finite(x.p50_ms),
                    _finite(x.p99_ms),
                    _finite(x.mean_ms),
                    _finite(x.max_ms),
                )
                for x in s.stages
            ],
        )
        conn.execute(
            "INSERT OR REPLACE INTO run_end VALUES (1,?,?,?,?,?,?,?,?,?,?)",
            (
                s.ended_utc,
                s.end_reason,
                s.ticks,
                s.frames,
                s.stops,
                s.drives,
                s.overruns,
                max(s.dropped_images, self.dropped_images),
                max(s.dropped_records, self.dropped_records),
                json.dumps(dict(s.fault_counts)),
            ),
        )


RECORD_COLUMNS: tuple[str, ...] = (
    "seq", "t_tick", "frame_seq", "t_capture", "source", "p_go", "p_stop", "decision", "decision_name",
    "reason", "go_streak", "faults", "cmd_kind", "cmd_speed", "cmd_seq", "t_command", "cmd_bytes",
    "ack_seq", "ack_state", "ack_motor_left", "ack_motor_right", "ack_rtt_ms", "capture_ms",
    "preprocess_ms", "inference_ms", "policy_ms", "send_ms", "log_ms", "latency_ms",
)  # fmt: skip


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _record_row(r: DriveRecord) -> tuple[object, ...]:
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
        None if a is None else _ms(a.rtt_s),
        _ms(t.capture), _ms(t.preprocess), _ms(t.inference), _ms(t.policy), _ms(t.send), _ms(t.log),
        _ms(t.latency),
    )  # fmt: skip


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else x


def _without_image(r: DriveRecord) -> DriveRecord:
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


# -- reading ----------------------------------------------------------------------------------------------

_SELECT_RECORDS = (
    "SELECT r.*, f.format, f.image, t.label, t.distance_m, t.lateral_m, t.scene, t.mask "
    "FROM records r LEFT JOIN frames f ON f.seq = r.seq LEFT JOIN truth t ON t.seq = r.seq"
)


class DriveLogReader:
    """Typed, read-only access to one drive log.

    `with DriveLogReader(path) as log:` then `log.meta`, `log.summary` (None if the drive did not end
    cleanly, e.g. killed), `len(log)`, `log.records()` (in tick order), `log[seq]`, `log.seqs()`,
    `log.events()`. A log whose writer was killed opens fine and holds everything up to its last commit.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._meta: DriveMeta | None = None

    def open(self) -> DriveLogReader:
        if not self.path.is_file():
            raise CarError(f"{self.path}: no such drive log; give the .sqlite file `car drive` wrote")
        try:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
            conn.row_factory = sqlite3.Row
            self._meta = _read_meta(conn)
        except sqlite3.DatabaseError as exc:
            # A killed writer can leave a WAL that a read-only connection cannot recover; a normal
            # connection recovers it (it never rewrites committed data) and then reads normally.
            try:
                conn = sqlite3.connect(self.path)
                conn.row_factory = sqlite3.Row
                self._meta = _read_meta(conn)
            except sqlite3.DatabaseError:
                raise CarError(
                    f"{self.path}: not a drive log ({exc}); give the .sqlite file `car drive` wrote"
                ) from exc
        self._conn = conn
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> DriveLogReader:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("DriveLogReader is not open; use `with DriveLogReader(path) as log:`")
        return self._conn

    @property
    def meta(self) -> DriveMeta:
        if self._meta is None:
            raise RuntimeError("DriveLogReader is not open; use `with DriveLogReader(path) as log:`")
        return self._meta

    @property
    def summary(self) -> RunSummary | None:
        row = self.conn.execute("SELECT * FROM run_end WHERE id = 1").fetchone()
        if row is None:
            return None
        stages = tuple(
            StageStat(
                s["stage"], s["count"], *(_nan(s[k]) for k in ("p50_ms", "p99_ms", "mean_ms", "max_ms"))
            )
            for s in self.conn.execute("SELECT * FROM stage_summary ORDER BY rowid")
        )
        counts = json.loads(row["fault_counts_json"])
        return RunSummary(
            end_reason=row["end_reason"],
            ticks=row["ticks"],
            frames=row["frames"],
            stops=row["stops"],
            drives=row["drives"],
            overruns=row["overruns"],
            dropped_images=row["dropped_images"],
            dropped_records=row["dropped_records"],
            fault_counts=tuple((str(k), int(v)) for k, v in counts.items()),
            stages=stages,
            ended_utc=row["ended_utc"],
        )

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def seqs(self) -> list[int]:
        return [int(r[0]) for r in self.conn.execute("SELECT seq FROM records ORDER BY seq")]

    def __getitem__(self, seq: int) -> DriveRecord:
        row = self.conn.execute(_SELECT_RECORDS + " WHERE r.seq = ?", (seq,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no record with seq {seq} (the log has {len(self)} records)")
        faults = self._faults_where("seq = ?", (seq,)).get(seq, ())
        return _row_to_record(row, faults)

    def records(
        self, *, images: bool = True, masks: bool = True, start: int = 0, stop: int | None = None
    ) -> Iterator[DriveRecord]:
        """Every record with `start <= seq < stop`, in tick order.

        `images=False` skips decoding frames and masks; `masks=False` decodes the frames but not the
        ground-truth masks (for readers that only need what the network saw).
        """
        hi = stop if stop is not None else 2**62
        faults = self._faults_where("seq >= ? AND seq < ?", (start, hi))
        cursor = self.conn.execute(
            _SELECT_RECORDS + " WHERE r.seq >= ? AND r.seq < ? ORDER BY r.seq", (start, hi)
        )
        for row in cursor:
            yield _row_to_record(row, faults.get(int(row["seq"]), ()), images=images, masks=masks)

    def events(self) -> list[tuple[float, str, str]]:
        return [
            (float(t), str(k), str(d)) for t, k, d in self.conn.execute("SELECT * FROM events ORDER BY rowid")
        ]

    def _faults_where(self, where: str, params: tuple[object, ...]) -> dict[int, tuple[Fault, ...]]:
        out: dict[int, list[Fault]] = {}
        for seq, kind, detail in self.conn.execute(
            f"SELECT seq, kind, detail FROM faults WHERE {where} ORDER BY rowid", params
        ):
            out.setdefault(int(seq), []).append(Fault(FaultKind(kind), str(detail)))
        return {k: tuple(v) for k, v in out.items()}


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _seconds(ms: float | None) -> float:
    return 0.0 if ms is None else float(ms) / 1000.0


def _read_meta(conn: sqlite3.Connection) -> DriveMeta:
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


def _row_to_record(
    row: sqlite3.Row, faults: tuple[Fault, ...], *, images: bool = True, masks: bool = True
) -> DriveRecord:
    probs = None if row["p_go"] is None else Probabilities(float(row["p_go"]), float(row["p_stop"]))
    decision = Decision(int(row["decision"]), Reason(row["reason"]), probs, int(row["go_streak"]))
    command = None
    if row["cmd_kind"] is not None:
        command = CommandRecord(
            CommandKind(row["cmd_kind"]),
            float(row["cmd_speed"]),
            None if row["cmd_seq"] is None else int(row["cmd_seq"]),
            None if row["t_command"] is None else float(row["t_command"]),
            int(row["cmd_bytes"] or 0),
        )
    ack = None
    if row["ack_seq"] is not None:
        ack = AckRecord(
            int(row["ack_seq"]),
            str(row["ack_state"]),
            float(row["ack_motor_left"]),
            float(row["ack_motor_right"]),
            None if row["ack_rtt_ms"] is None else float(row["ack_rtt_ms"]) / 1000.0,
        )
    timings = StageTimings(
        capture=_seconds(row["capture_ms"]),
        preprocess=_seconds(row["preprocess_ms"]),
        inference=_seconds(row["inference_ms"]),
        policy=_seconds(row["policy_ms"]),
        send=_seconds(row["send_ms"]),
        log=_seconds(row["log_ms"]),
        latency=None if row["latency_ms"] is None else _seconds(row["latency_ms"]),
    )
    truth = None
    if row["label"] is not None:
        truth = GroundTruth(
            int(row["label"]),
            None if row["distance_m"] is None else float(row["distance_m"]),
            None if row["lateral_m"] is None else float(row["lateral_m"]),
            None if row["mask"] is None or not (images and masks) else decode_mask(row["mask"]),
            str(row["scene"]),
        )
    rgb = decode_rgb(row["image"]) if images and row["image"] is not None else None
    return DriveRecord(
        seq=int(row["seq"]),
        t_tick=float(row["t_tick"]),
        frame_seq=None if row["frame_seq"] is None else int(row["frame_seq"]),
        t_capture=None if row["t_capture"] is None else float(row["t_capture"]),
        source=str(row["source"]),
        rgb=rgb,
        decision=decision,
        command=command,
        ack=ack,
        faults=faults,
        timings=timings,
        truth=truth,
    )


def has_image(reader: DriveLogReader, seq: int) -> bool:
    return reader.conn.execute("SELECT 1 FROM frames WHERE seq = ?", (seq,)).fetchone() is not None


def label_of(record: DriveRecord) -> int:
    """The label a record exports as: ground truth when the world knew it, else the car's decision."""
    return record.truth.label if record.truth is not None else record.decision.label


__all__ = [
    "SCHEMA",
    "BundleFile",
    "DriveLogReader",
    "DriveLogWriter",
    "DriveMeta",
    "RunSummary",
    "label_name",
    "label_of",
    "utc_now",
]
