"""The drive log's writer: a thread behind a bounded queue, so the control loop never waits for the disk.

The loop hands each tick's `DriveRecord` to `submit`, which never blocks; the writer thread encodes the
frame (PNG, lossless, by default) and inserts it. The file is in WAL mode and the thread commits at least
every `commit_interval_s` (0.25 s by default), so a process killed with SIGKILL leaves a file that opens and
holds every tick up to its last commit. When the bounded queue is full (a slow disk), the record is kept
without its image in an overflow list; the dropped image is counted, stored as an event and in the run
summary, never silent. A write error is surfaced as `writer_error` (the loop then stops the car: it never
drives unrecorded).
"""

from __future__ import annotations

import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from car.drivelog.masks import encode_mask
from car.drivelog.meta import DriveMeta, RunSummary
from car.drivelog.rows import finite, meta_row, record_row, without_image
from car.drivelog.schema import RECORD_COLUMNS, SCHEMA
from car.errors import CarError
from car.types import DriveRecord
from vision.imageio import encode_jpeg, encode_png


@dataclass(frozen=True, slots=True)
class _Event:
    t: float
    kind: str
    detail: str


@dataclass(frozen=True, slots=True)
class _Finish:
    summary: RunSummary


_STOP_WRITER = object()


class _Transaction:
    """The writer thread's transaction: begun when there is something to write, committed at least every
    `interval_s` (the crash-safety promise), and at the end."""

    def __init__(self, conn: sqlite3.Connection, interval_s: float) -> None:
        self.conn = conn
        self.interval_s = interval_s
        self.active = False
        self.last_commit = time.monotonic()

    def begin(self) -> None:
        if not self.active:
            self.conn.execute("BEGIN")
            self.active = True

    def commit(self) -> None:
        if self.active:
            self.conn.execute("COMMIT")
            self.active = False

    def commit_if_due(self, now: float) -> None:
        if self.active and now - self.last_commit >= self.interval_s:
            self.commit()
            self.last_commit = now


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
                self._overflow.append(without_image(record))
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
        conn = self._connect()
        if conn is None:
            return
        txn = _Transaction(conn, self.commit_interval_s)
        try:
            self._write_until_stopped(txn)
            for record in self._take_overflow():
                self._write_record(conn, record)
            txn.commit()
        except BaseException as exc:  # surfaced to the loop, which stops the car
            self.writer_error = exc
            with contextlib.suppress(sqlite3.Error):
                txn.commit()
            self._drain_after_error()
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connect(self) -> sqlite3.Connection | None:
        """Create the file with its schema and the run's metadata; None (and `_open_error`) if it fails."""
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
            return None
        finally:
            self._ready.set()
        return conn

    def _write_until_stopped(self, txn: _Transaction) -> None:
        reported = (0, 0)
        while True:
            try:
                item: object = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is not None or self._overflow:
                txn.begin()
            if item is _STOP_WRITER:
                return
            if item is not None:
                self._write_item(txn.conn, item)
            reported = self._write_overflow(txn, reported)
            txn.commit_if_due(time.monotonic())

    def _take_overflow(self) -> list[DriveRecord]:
        with self._lock:
            spilled = list(self._overflow)
            self._overflow.clear()
        return spilled

    def _write_overflow(self, txn: _Transaction, reported: tuple[int, int]) -> tuple[int, int]:
        """Write the records kept without images, and a `dropped` event when the counts grew."""
        with self._lock:
            dropped_now = (self.dropped_images, self.dropped_records)
        for record in self._take_overflow():
            self._write_record(txn.conn, record)
        if dropped_now != reported:
            txn.begin()
            detail = f"images={dropped_now[0]} records={dropped_now[1]} (queue full: disk too slow)"
            self._write_event(txn.conn, _Event(time.monotonic(), "dropped", detail))
        return dropped_now

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
        conn.execute("INSERT INTO run VALUES (1,?,?,?,?,?,?,?,?,?,?,?,?)", meta_row(m))
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
        conn.execute(f"INSERT INTO records VALUES ({','.join('?' * len(RECORD_COLUMNS))})", record_row(r))
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
                    finite(x.p50_ms),
                    finite(x.p99_ms),
                    finite(x.mean_ms),
                    finite(x.max_ms),
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
