"""The small typed records the control loop produces and the drive log stores.

One writer each: the policy makes `Decision`s, the loop makes `CommandRecord`, `AckRecord`,
`StageTimings` and `DriveRecord`s. Faults are a closed set (`FaultKind`), so a typo is an error.
These types import nothing heavy (no torch; from firmware_bridge only the `CommandKind` enum): the drive
log's reader uses them on a desktop.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from firmware_bridge.host import CommandKind  # one enum for the concept; the log stores its values
from vision.frame import GroundTruth
from vision.labels import GO, STOP, label_name


class FaultKind(StrEnum):
    """Everything that forces a STOP (DESIGN.md §8). The value is what the log stores."""

    NO_FRAME = "no_frame"  # the source gave nothing within the read timeout
    SOURCE_ERROR = "source_error"  # the source raised (camera unplugged, decode error, ...)
    END_OF_STREAM = "end_of_stream"  # a finite source (video, folder, replay) ran out
    STALE_FRAME = "stale_frame"  # captured longer ago than the configured age
    REPEATED_SEQ = "repeated_seq"  # same (or older) sequence number as the previous frame
    BAD_SHAPE = "bad_shape"  # not an RGB uint8 H×W×3 image
    BLANK_FRAME = "blank_frame"  # all black or all white (lens cap, blown exposure)
    INFERENCE_ERROR = "inference_error"  # the detector raised
    INFERENCE_NAN = "inference_nan"  # non-finite or out-of-range probabilities
    LINK_LOST = "link_lost"  # the serial port is gone or a write failed
    ACK_MISSING = "ack_missing"  # the firmware stopped acknowledging commands
    LINK_NOISE = "link_noise"  # corrupt frames were discarded on the serial line (either side)
    FIRMWARE_FAULT = "firmware_fault"  # the firmware reports a watchdog stop or errors
    LOG_FAILED = "log_failed"  # the drive log cannot be written: never drive unrecorded
    EXCEPTION = "exception"  # anything unexpected inside the loop
    SIGNAL = "signal"  # SIGINT / SIGTERM: stop and shut down
    OPERATOR_STOP = "operator_stop"  # the operator's e-stop (web console STOP): latched until Resume
    OUT_OF_DISTRIBUTION = "out_of_distribution"  # the frame is unlike anything the network was trained on


class Reason(StrEnum):
    """Why the policy decided what it did when no fault forced it."""

    STOP_PROBABILITY = "stop_probability"  # P(STOP) above the threshold
    GO_CONFIDENT = "go_confident"  # enough consecutive confident GO frames
    GO_HOLD = "go_hold"  # already driving; P(STOP) below threshold but not confidently low
    AWAITING_GO = "awaiting_go"  # stopped; counting confident GO frames (hysteresis)
    STOP_MEMORY = "stop_memory"  # stopped; GO frames counted, too few quiet ones since the last STOP
    HELD_UNFAMILIAR = "held_unfamiliar"  # stopped on out_of_distribution; waiting for familiar frames
    FAULT = "fault"  # see the record's faults
    SHUTDOWN = "shutdown"  # the drive ended (duration, end of stream, signal): the final STOP
    MANUAL = "manual"  # teleop: the operator's GO/STOP (the network ran in shadow)


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Probabilities:
    """The network's two independent sigmoid outputs."""

    go: float
    stop: float


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy concluded for one loop tick. `probs` is None when there was no usable inference."""

    label: int  # vision.labels.GO or STOP
    reason: Reason
    probs: Probabilities | None = None
    go_streak: int = 0  # consecutive confident GO frames counted so far
    speed_scale: float = 1.0  # a GO drives at this fraction of the drive speed (slow when unsure)

    @property
    def is_stop(self) -> bool:
        return self.label == STOP

    @property
    def label_name(self) -> str:
        return label_name(self.label)


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """The command the loop sent: kind, speed fraction (0 for STOP), link sequence number, when written.

    `t_written` is the monotonic time the command's bytes were handed to the port (None: not sent).
    """

    kind: CommandKind
    speed: float
    seq: int | None
    t_written: float | None
    wire_bytes: int = 0


@dataclass(frozen=True, slots=True)
class AckRecord:
    """The newest acknowledgement the firmware had sent when the tick ended."""

    seq: int
    state: str
    motor_left: float
    motor_right: float
    rtt_s: float | None = None


STAGES: tuple[str, ...] = ("capture", "preprocess", "inference", "policy", "send", "log")


@dataclass(frozen=True, slots=True)
class StageTimings:
    """Seconds spent in each stage of one tick; `latency` is capture time → command bytes written."""

    capture: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    policy: float = 0.0
    send: float = 0.0
    log: float = 0.0
    latency: float | None = None

    def stage_values(self) -> tuple[float, ...]:
        return (self.capture, self.preprocess, self.inference, self.policy, self.send, self.log)


@dataclass(frozen=True, slots=True)
class DriveRecord:
    """One loop tick: what the car saw, thought, did and heard back.

    `seq` numbers the ticks of a drive from 0 (the drive log's key); `frame_seq` is the source's own
    sequence number (None when no frame arrived). `rgb` is None when there was no frame.
    """

    seq: int
    t_tick: float
    frame_seq: int | None
    t_capture: float | None
    source: str
    rgb: np.ndarray | None
    decision: Decision
    command: CommandRecord | None
    ack: AckRecord | None
    faults: tuple[Fault, ...]
    timings: StageTimings
    truth: GroundTruth | None = None

    @property
    def probs(self) -> Probabilities | None:
        return self.decision.probs


__all__ = [
    "GO",
    "STAGES",
    "STOP",
    "AckRecord",
    "CommandKind",
    "CommandRecord",
    "Decision",
    "DriveRecord",
    "Fault",
    "FaultKind",
    "Probabilities",
    "Reason",
    "StageTimings",
]
