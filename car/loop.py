"""The control loop: frame → checks → preprocess → detector → policy → command → log, at a fixed rate.

One tick does, in order, timing each stage: read a frame (capture), check it and bring it to the network's
input (preprocess), run the detector (inference), gather link faults and decide (policy), write the
command (send) and queue the record for the drive log (log). Every fault found anywhere in the tick makes
the policy say STOP, and the STOP is sent in the same tick. The frame-to-command latency runs from the
frame's capture time to the moment the command's bytes were written.

The loop reads time only through a `Clock`, so `car drive` runs it in real time and `car sim eval` runs
the very same code on a simulated clock as fast as the machine allows.
"""

from __future__ import annotations

import dataclasses
import threading
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from car.config import LoopConfig
from car.drivelog import RunSummary
from car.links import MotorLink
from car.operator import OperatorCommand, OperatorInbox, manual_decision
from car.policy import Policy, probabilities_fault
from car.timing import Clock, TimingRecorder
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
from vision.detector import Detector, NonFiniteOutputError
from vision.frame import Frame
from vision.labels import STOP
from vision.ood import ood_reading
from vision.preprocess import Preprocessing, fit_to_input, to_network_input
from vision.sources import EndOfStream, FrameSource, SourceTimeout

NO_FRAME_BACKOFF_S = 0.01


class RecordSink(Protocol):
    """Where records go: the drive log's writer, or nowhere (`NullSink`) in the closed-loop evaluation."""

    def submit(self, record: DriveRecord) -> bool: ...

    @property
    def healthy(self) -> bool: ...


class NullSink:
    healthy = True

    def submit(self, record: DriveRecord) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class FrameRules:
    """What makes a frame unusable (DESIGN.md §8), from the `loop` config."""

    max_age_s: float
    blank_low: int
    blank_high: int

    @classmethod
    def from_config(cls, config: LoopConfig) -> FrameRules:
        return cls(config.max_frame_age_s, config.blank_low, config.blank_high)


def frame_faults(frame: Frame, now: float, last_seq: int | None, rules: FrameRules) -> list[Fault]:
    """Everything wrong with a frame; an empty list means it may be used."""
    faults: list[Fault] = []
    rgb = frame.rgb
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        faults.append(Fault(FaultKind.BAD_SHAPE, f"expected RGB uint8 H×W×3, got {dtype} {shape}"))
    elif min(rgb.shape[:2]) < 8:
        faults.append(Fault(FaultKind.BAD_SHAPE, f"frame of {rgb.shape[1]}×{rgb.shape[0]} is too small"))
    else:
        # An all-black (lens cap) or all-white (blown exposure) frame, judged on a sub-sample with 1 %
        # tolerance so that a few hot or dead pixels do not hide it.
        sample = rgb[::4, ::4].reshape(-1)
        lo, hi = (
            int(v)
            for v in np.partition(sample, (sample.size // 100, -(sample.size // 100) - 1))[
                [sample.size // 100, -(sample.size // 100) - 1]
            ]
        )
        if hi <= rules.blank_low:
            faults.append(Fault(FaultKind.BLANK_FRAME, f"all black (99th percentile value {hi})"))
        elif lo >= rules.blank_high:
            faults.append(Fault(FaultKind.BLANK_FRAME, f"all white (1st percentile value {lo})"))
    if last_seq is not None and frame.seq <= last_seq:
        faults.append(Fault(FaultKind.REPEATED_SEQ, f"frame seq {frame.seq} after {last_seq}"))
    age = now - frame.t_capture
    if age > rules.max_age_s:
        faults.append(Fault(FaultKind.STALE_FRAME, f"frame is {age * 1000:.0f} ms old"))
    return faults


@dataclass(slots=True)
class LoopStats:
    """Running counts over a drive."""

    ticks: int = 0
    frames: int = 0
    stops: int = 0
    drives: int = 0
    overruns: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    timing: TimingRecorder = field(default_factory=TimingRecorder)
    last_record: DriveRecord | None = None


class ControlLoop:
    """See the module docstring. Build it, then `run()` (or `tick()` one at a time in tests)."""

    def __init__(
        self,
        *,
        source: FrameSource,
        detector: Detector,
        preprocessing: Preprocessing,
        policy: Policy,
        link: MotorLink,
        sink: RecordSink,
        clock: Clock,
        config: LoopConfig,
        drive_speed: float,
        on_record: Callable[[DriveRecord], None] | None = None,
        operator: OperatorInbox | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.prep = preprocessing
        self.policy = policy
        self.link = link
        self.sink = sink
        self.clock = clock
        self.config = config
        self.drive_speed = drive_speed
        self.rules = FrameRules.from_config(config)
        self.on_record = on_record
        self.operator = operator  # e-stop latch and teleop, polled once per tick (car.operator)
        self.period = 1.0 / config.rate_hz if config.rate_hz > 0 else 0.0
        self.read_timeout = config.frame_timeout_s
        self.stats = LoopStats()
        self.stop_reason: str | None = None
        self._stop_requested = threading.Event()
        self._stop_request_reason = ""
        self._last_seq: int | None = None
        self._prev_log_s = 0.0
        self._ended = False
        self._next_seq = 0

    # -- control from outside (signal handlers, other threads) ---------------------------------------------
    def request_stop(self, reason: str) -> None:
        """Ask the loop to send STOP and end (safe from a signal handler or another thread)."""
        self._stop_request_reason = reason
        self._stop_requested.set()

    # -- one tick --------------------------------------------------------------------------------------------
    def tick(self) -> DriveRecord:
        """One pass of capture → preprocess → inference → policy → send → log, each stage timed."""
        clock = self.clock
        t_tick = clock.now()
        faults: list[Fault] = []
        frame = self._capture(faults)
        t_captured = clock.now()
        rgb, batch = self._preprocess(frame, t_captured, faults)
        t_prepped = clock.now()
        probs = self._infer(
            batch, faults
        )  # also on a faulty frame: the log shows what the network made of it
        t_inferred = clock.now()
        decision, speed, ack = self._decide(probs, t_inferred, faults)
        t_decided = clock.now()
        command, decision = self._send(decision, faults, probs, speed)
        t_sent = clock.now()
        latency = None
        if frame is not None and command is not None and command.t_written is not None:
            latency = command.t_written - frame.t_capture
        timings = StageTimings(
            capture=t_captured - t_tick,
            preprocess=t_prepped - t_captured,
            inference=t_inferred - t_prepped,
            policy=t_decided - t_inferred,
            send=t_sent - t_decided,
            log=self._prev_log_s,
            latency=latency,
        )
        record = DriveRecord(
            seq=self._take_seq(),
            t_tick=t_tick,
            frame_seq=None if frame is None else frame.seq,
            t_capture=None if frame is None else frame.t_capture,
            source=frame.source if frame is not None else getattr(self.source, "name", "source"),
            rgb=rgb,
            decision=decision,
            command=command,
            ack=ack,
            faults=tuple(faults),
            timings=timings,
            truth=None if frame is None else frame.truth,
        )
        self._log(record, timings, t_sent)
        return record

    def _capture(self, faults: list[Fault]) -> Frame | None:
        """The next frame, or None with the fault that says why."""
        try:
            return self.source.read(self.read_timeout)
        except SourceTimeout as exc:
            faults.append(Fault(FaultKind.NO_FRAME, str(exc)))
        except EndOfStream as exc:
            faults.append(Fault(FaultKind.END_OF_STREAM, str(exc)))
            self._ended = True
        except Exception as exc:  # a camera that fails, a file that cannot be decoded
            faults.append(Fault(FaultKind.SOURCE_ERROR, _one_line(exc)))
        return None

    def _preprocess(
        self, frame: Frame | None, t_captured: float, faults: list[Fault]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the 224×224 image the network sees, its input batch), after the frame checks."""
        if frame is None:
            return None, None
        problems = frame_faults(frame, t_captured, self._last_seq, self.rules)
        faults.extend(problems)
        self._last_seq = frame.seq if self._last_seq is None else max(self._last_seq, frame.seq)
        if any(p.kind is FaultKind.BAD_SHAPE for p in problems):
            return None, None
        try:
            rgb = fit_to_input(frame.rgb, self.prep.input_size)
            return rgb, to_network_input(rgb, self.prep)
        except Exception as exc:
            faults.append(Fault(FaultKind.BAD_SHAPE, _one_line(exc)))
            return None, None

    def _infer(self, batch: np.ndarray | None, faults: list[Fault]) -> Probabilities | None:
        if batch is None:
            return None
        try:
            out = self.detector.predict(batch)
            probs = Probabilities(float(out[0, 0]), float(out[0, 1]))
        except NonFiniteOutputError as exc:
            faults.append(Fault(FaultKind.INFERENCE_NAN, _one_line(exc)))
            return None
        except Exception as exc:
            faults.append(Fault(FaultKind.INFERENCE_ERROR, _one_line(exc)))
            return None
        bad = probabilities_fault(probs)
        if bad is not None:
            faults.append(Fault(FaultKind.INFERENCE_NAN, bad))
        return probs

    def _decide(
        self, probs: Probabilities | None, now: float, faults: list[Fault]
    ) -> tuple[Decision, float, AckRecord | None]:
        """(the decision, the DRIVE speed, the firmware's ack) with everything the link, log and operator
        report added to `faults` first."""
        link_faults, ack = self._poll_link(now, faults)
        faults.extend(link_faults)
        if not self.sink.healthy:
            faults.append(Fault(FaultKind.LOG_FAILED, "the drive log cannot be written"))
        if self._stop_requested.is_set():
            faults.append(Fault(FaultKind.SIGNAL, self._stop_request_reason or "stop requested"))
        order = self._poll_operator(now, faults)
        decision = self.policy.decide(probs, faults, self._unfamiliarity(probs, faults))
        speed = self.drive_speed
        if order is not None and order.manual:  # teleop: the network ran in shadow
            decision, speed = manual_decision(decision, order, bool(faults)), order.speed
        return decision, speed, ack

    def _log(self, record: DriveRecord, timings: StageTimings, t_sent: float) -> None:
        self.sink.submit(record)
        if self.on_record is not None:
            self.on_record(record)
        self._prev_log_s = self.clock.now() - t_sent
        self._count(record, dataclasses.replace(timings, log=self._prev_log_s))

    def _unfamiliarity(self, probs: Probabilities | None, faults: list[Fault]) -> float:
        """How unfamiliar this tick's frame looked (0..1, `vision.ood`: the network's features and the image's
        statistics); past a signal's limit it is a fault (STOP). 0 without an inference this tick or without
        a calibration."""
        reading = ood_reading(self.detector) if probs is not None else None
        if reading is None:
            return 0.0
        if reading.out_of_distribution:
            faults.append(Fault(FaultKind.OUT_OF_DISTRIBUTION, reading.detail()))
        return reading.unfamiliarity

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def _poll_link(self, now: float, faults: list[Fault]) -> tuple[list[Fault], AckRecord | None]:
        try:
            link_faults, ack = self.link.poll(now)
        except Exception as exc:
            return [Fault(FaultKind.LINK_LOST, _one_line(exc))], None
        return list(link_faults), ack

    def _poll_operator(self, now: float, faults: list[Fault]) -> OperatorCommand | None:
        """The operator's command for this tick (None without an operator); a latched e-stop is a fault."""
        if self.operator is None:
            return None
        order = self.operator.poll(now)
        if order.estop is not None:
            faults.append(order.estop)
        return order

    def _send(
        self, decision: Decision, faults: list[Fault], probs: Probabilities | None, drive_speed: float
    ) -> tuple[CommandRecord | None, Decision]:
        kind = CommandKind.STOP if decision.is_stop else CommandKind.DRIVE
        speed = 0.0 if decision.is_stop else drive_speed * decision.speed_scale
        try:
            return self.link.send(kind, speed), decision
        except Exception as exc:
            faults.append(Fault(FaultKind.LINK_LOST, f"could not send {kind.value}: {_one_line(exc)}"))
            decision = self.policy.decide(probs, faults)  # now a STOP with the fault as its reason
            try:  # a STOP still deserves one more try (e.g. a DRIVE too long for a half-open port)
                if kind is CommandKind.DRIVE:
                    return self.link.send(CommandKind.STOP, 0.0), decision
            except Exception:
                pass
            return None, decision

    def _count(self, record: DriveRecord, timings: StageTimings) -> None:
        s = self.stats
        s.ticks += 1
        s.frames += record.frame_seq is not None
        if record.decision.is_stop:
            s.stops += 1
        else:
            s.drives += 1
        s.faults.update(f.kind.value for f in record.faults)
        s.timing.add(timings, self.clock.now() - record.t_tick)
        s.last_record = record

    # -- the whole drive -----------------------------------------------------------------------------------
    def run(
        self, duration_s: float | None = None, until: Callable[[DriveRecord], str | None] | None = None
    ) -> RunSummary:
        """Tick until the duration passes, a finite source ends, a stop is requested, `until(record)` gives
        a reason to end, or something breaks.

        Whatever ends the drive, the last thing sent is a STOP (recorded in the log).
        """
        duration = self.config.duration_s if duration_s is None else duration_s
        start = self.clock.now()
        deadline = start + self.period
        end_reason = "duration"
        try:
            while True:
                if duration > 0 and self.clock.now() - start >= duration:
                    end_reason = "duration"
                    break
                record = self.tick()
                reason = until(record) if until is not None else None
                if reason is not None:
                    end_reason = reason
                    break
                if self._stop_requested.is_set():
                    end_reason = self._stop_request_reason or "stop requested"
                    break
                if self._ended:
                    end_reason = "end of stream"
                    break
                self.link.rearm_if_needed(self.clock.now())
                if self.period > 0:
                    now = self.clock.now()
                    if now > deadline:
                        self.stats.overruns += 1
                        deadline = now + self.period
                    else:
                        self.clock.sleep_until(deadline)
                        deadline += self.period
                elif record.frame_seq is None:
                    # As fast as frames arrive, but a broken source must not turn into a busy loop
                    # writing thousands of STOP records a second.
                    self.clock.sleep_until(self.clock.now() + NO_FRAME_BACKOFF_S)
        except BaseException as exc:  # KeyboardInterrupt included: stop the car, record why, re-raise
            self.stop_reason = f"exception: {_one_line(exc)}"
            self._final_stop(Fault(FaultKind.EXCEPTION, f"{_one_line(exc)} at {_where(exc)}"))
            raise
        self.stop_reason = end_reason
        signalled = self._stop_requested.is_set()
        self._final_stop(Fault(FaultKind.SIGNAL, end_reason) if signalled else None)
        return self.summary(end_reason)

    def _final_stop(self, fault: Fault | None) -> None:
        """Send STOP and record it as a tick with no frame (reason `shutdown`, or the fault that ended it)."""
        t = self.clock.now()
        self.policy.reset()
        decision = Decision(STOP, Reason.FAULT if fault is not None else Reason.SHUTDOWN)
        command: CommandRecord | None
        try:
            command = self.link.send(CommandKind.STOP, 0.0)
        except Exception:
            command = None
        record = DriveRecord(
            seq=self._take_seq(),
            t_tick=t,
            frame_seq=None,
            t_capture=None,
            source=getattr(self.source, "name", "source"),
            rgb=None,
            decision=decision,
            command=command,
            ack=None,
            faults=() if fault is None else (fault,),
            timings=StageTimings(send=self.clock.now() - t),
        )
        try:
            self.sink.submit(record)
        finally:
            self.stats.ticks += 1
            self.stats.stops += 1
            if fault is not None:
                self.stats.faults.update([fault.kind.value])
            self.stats.last_record = record

    def summary(self, end_reason: str, dropped_images: int = 0, dropped_records: int = 0) -> RunSummary:
        s = self.stats
        return RunSummary(
            end_reason=end_reason,
            ticks=s.ticks,
            frames=s.frames,
            stops=s.stops,
            drives=s.drives,
            overruns=s.overruns,
            dropped_images=dropped_images,
            dropped_records=dropped_records,
            fault_counts=tuple(sorted(s.faults.items())),
            stages=s.timing.stats(),
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"
