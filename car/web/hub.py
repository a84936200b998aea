"""The live state feed: what the loop did each tick, handed to any number of viewers without slowing it.

The loop thread calls `publish(record)` once per tick (as the drive's `on_record` hook). That does O(1)
work: it swaps a reference to the newest record (a newest-only mailbox) and appends four numbers to the
P(STOP) history. Everything else happens on the hub's own thread, and only while a viewer is connected:
at most `fps` times a second it JPEG-encodes the newest frame and builds one JSON snapshot, which every
viewer's connection then sends as it can. A slow viewer simply skips to the newest frame; nothing queues.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from car.operator import OperatorInbox
from car.types import DriveRecord
from vision.imageio import encode_jpeg

HISTORY_TICKS = 300  # P(STOP) points kept for the strip chart


class LiveHub:
    def __init__(
        self,
        *,
        threshold: float,
        fps: float = 10.0,
        operator: OperatorInbox | None = None,
        jpeg_quality: int = 80,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.threshold = threshold
        self.period = 1.0 / fps
        self.operator = operator
        self.jpeg_quality = jpeg_quality
        self.info: dict[str, Any] = dict(info or {})
        self._latest: DriveRecord | None = None
        self._history: deque[tuple[int, float | None, int, float]] = deque(maxlen=HISTORY_TICKS)
        self._ticks = 0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._viewers = 0
        self._viewers_lock = threading.Lock()
        self._frame: tuple[int, bytes] | None = None  # (record seq, JPEG)
        self._snapshot: tuple[int, str] = (-1, "{}")  # (version, JSON)
        self._thread: threading.Thread | None = None
        self.encoded_frames = 0

    # -- the loop thread -----------------------------------------------------------------------------------
    def publish(self, record: DriveRecord) -> None:
        """Called by the loop once per tick: newest-only, no encoding, no locks, never blocks."""
        self._latest = record
        probs = record.decision.probs
        self._history.append(
            (record.seq, None if probs is None else probs.stop, int(record.decision.is_stop), record.t_tick)
        )
        self._ticks += 1
        if self._viewers:
            self._wake.set()

    # -- viewers -------------------------------------------------------------------------------------------
    def viewer_joined(self) -> None:
        with self._viewers_lock:
            self._viewers += 1
        self._wake.set()

    def viewer_left(self) -> None:
        with self._viewers_lock:
            self._viewers = max(0, self._viewers - 1)

    @property
    def viewers(self) -> int:
        return self._viewers

    def newest_frame(self) -> tuple[int, bytes] | None:
        return self._frame

    def newest_snapshot(self) -> tuple[int, str]:
        return self._snapshot

    # -- the hub's thread ----------------------------------------------------------------------------------
    def start(self) -> LiveHub:
        self._thread = threading.Thread(target=self._run, name="web-hub", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        version = 0
        while not self._closed.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            if self._closed.is_set():
                break
            if not self._viewers:
                continue
            started = time.monotonic()
            self.refresh(version)
            version += 1
            rest = self.period - (time.monotonic() - started)
            if rest > 0:
                self._closed.wait(rest)

    def refresh(self, version: int = 0) -> None:
        """Encode the newest frame and build the snapshot (the hub thread; tests may call it directly)."""
        record = self._latest
        if record is not None and record.rgb is not None:
            frame = self._frame
            if frame is None or frame[0] != record.seq:
                self._frame = (record.seq, encode_jpeg(record.rgb, self.jpeg_quality))
                self.encoded_frames += 1
        self._snapshot = (version, json.dumps(self.state(record), allow_nan=False))

    def state(self, record: DriveRecord | None = None) -> dict[str, Any]:
        """The console's view of the newest tick (JSON-ready)."""
        record = self._latest if record is None else record
        doc: dict[str, Any] = {
            "threshold": self.threshold,
            "ticks": self._ticks,
            "info": self.info,
            "history": [[s, _num(p), d] for s, p, d, _ in list(self._history)],
            "operator": None if self.operator is None else asdict(self.operator.state()),
            "frame_seq": None if self._frame is None else self._frame[0],
        }
        if record is not None:
            doc["record"] = record_view(record)
        return doc


def _num(x: float | None, scale: float = 1.0, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(x * scale, digits)


def record_view(r: DriveRecord) -> dict[str, Any]:
    """One tick as the page shows it."""
    probs = r.decision.probs
    t = r.timings
    ms: Callable[[float | None], float | None] = lambda s: _num(s, 1000.0, 2)  # noqa: E731
    return {
        "seq": r.seq,
        "p_stop": None if probs is None else _num(probs.stop),
        "decision": r.decision.label_name,
        "reason": r.decision.reason.value,
        "go_streak": r.decision.go_streak,
        "faults": [[f.kind.value, f.detail] for f in r.faults],
        "command": None if r.command is None else {"kind": r.command.kind.value, "speed": r.command.speed},
        "ack": None
        if r.ack is None
        else {
            "state": r.ack.state,
            "motor": _num((r.ack.motor_left + r.ack.motor_right) / 2.0),
            "rtt_ms": ms(r.ack.rtt_s),
        },
        "stages_ms": {
            "capture": ms(t.capture),
            "preprocess": ms(t.preprocess),
            "inference": ms(t.inference),
            "policy": ms(t.policy),
            "send": ms(t.send),
            "log": ms(t.log),
            "latency": ms(t.latency),
        },
    }
