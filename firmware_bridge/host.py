"""The host's side of the protocol without I/O: commands, acks, faults, and the session that matches them.

`HostSession` numbers outgoing frames, parses incoming bytes, matches ACKs to the commands they answer
(with round-trip time), times out missing ACKs, and turns everything the firmware says into `LinkFault`s.
It reads no clock and touches no port: `SerialLink` (threads, pyserial) and `LoopbackLink` (in-process
`McuCore`, simulated clock) both wrap it, so they behave identically. Not thread-safe: callers lock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from firmware_bridge.errors import LinkError
from firmware_bridge.protocol import (
    MCU_TO_HOST,
    PROTOCOL_VERSION,
    SEQ_MODULO,
    SPEED_FULL_SCALE,
    Ack,
    AckResult,
    Drive,
    FaultCode,
    FaultReport,
    FirmwareState,
    FrameParser,
    Message,
    MsgType,
    ParserCounters,
    Rejected,
    Status,
    Stop,
    Version,
    WireFrame,
    encode,
)

# Types the firmware answers with ACK; HELLO and STATUS_REQUEST get VERSION / STATUS instead.
ACKED_TYPES = frozenset({MsgType.ARM, MsgType.DISARM, MsgType.DRIVE, MsgType.STOP, MsgType.HEARTBEAT})
MAX_QUEUED_EVENTS = 256


class CommandKind(StrEnum):
    """What the motors are told: the one enum for it, used by the control loop and its drive log too
    (`car.types` re-exports it; the values are what the log's `cmd_kind` column holds)."""

    DRIVE = "DRIVE"
    STOP = "STOP"


@dataclass(frozen=True, slots=True)
class Command:
    """What the control loop wants the motors to do. `speed` is a fraction of full throttle, -1..1."""

    kind: CommandKind
    speed: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.speed) or not -1.0 <= self.speed <= 1.0:
            raise ValueError(f"command speed {self.speed!r} must be a finite fraction in -1..1")
        if self.kind is CommandKind.STOP and self.speed != 0.0:
            raise ValueError("a STOP command has no speed")

    @classmethod
    def drive(cls, speed: float) -> Command:
        return cls(CommandKind.DRIVE, float(speed))

    @classmethod
    def stop(cls) -> Command:
        return cls(CommandKind.STOP)

    def to_message(self) -> Message:
        if self.kind is CommandKind.STOP:
            return Stop()
        return Drive(round(self.speed * SPEED_FULL_SCALE))


@dataclass(frozen=True, slots=True)
class SentCommand:
    """What actually went out (or did not): the loop logs this, not what it intended."""

    seq: int
    message_type: MsgType
    speed_permille: int  # 0 for everything but DRIVE
    frame: bytes
    sent_at: float
    written: bool
    error: str = ""

    @property
    def frame_size(self) -> int:
        return len(self.frame)


@dataclass(frozen=True, slots=True)
class AckInfo:
    """An ACK as the host saw it, matched to the command it answers (rtt_s None when unmatched/late)."""

    acked_seq: int
    acked_type: MsgType
    result: AckResult
    state: FirmwareState
    motor_left: int  # permille
    motor_right: int
    discarded: int
    watchdog_trips: int
    received_at: float
    sent_at: float | None  # when the matched command was sent; None when unmatched

    @property
    def rtt_s(self) -> float | None:
        """Command-to-ACK round trip in seconds, None when the ACK matched no pending command."""
        return None if self.sent_at is None else self.received_at - self.sent_at

    @property
    def motor_fraction(self) -> float:
        """Mean motor output as a fraction of full throttle (what moves a simulated car)."""
        return (self.motor_left + self.motor_right) / (2.0 * SPEED_FULL_SCALE)


@dataclass(frozen=True, slots=True)
class FirmwareInfo:
    protocol_version: int
    firmware_version: str
    watchdog_ms: int
    speed_min: int  # permille
    speed_max: int

    @classmethod
    def from_version(cls, v: Version) -> FirmwareInfo:
        return cls(
            protocol_version=v.protocol_version,
            firmware_version=f"{v.firmware_major}.{v.firmware_minor}.{v.firmware_patch}",
            watchdog_ms=v.watchdog_ms,
            speed_min=v.speed_min,
            speed_max=v.speed_max,
        )


@dataclass(frozen=True, slots=True)
class FirmwareRequirements:
    """What the host accepts from a firmware at handshake (PROTOCOL.md §7)."""

    protocol_version: int = PROTOCOL_VERSION
    max_watchdog_ms: int = 1000
    allow_watchdog_off: bool = False

    def check(self, info: FirmwareInfo, port: str) -> None:
        """Raise LinkError naming the port and the fix when the firmware is not acceptable."""
        if info.protocol_version != self.protocol_version:
            raise LinkError(
                f"{port}: firmware {info.firmware_version} speaks protocol v{info.protocol_version}, "
                f"this host needs v{self.protocol_version}; flash the firmware of this version"
            )
        if info.watchdog_ms == 0 and not self.allow_watchdog_off:
            raise LinkError(
                f"{port}: firmware {info.firmware_version} has its watchdog switched off; flash a build with "
                "the watchdog on (e.g. 250 ms)"
            )
        if info.watchdog_ms > self.max_watchdog_ms:
            raise LinkError(
                f"{port}: firmware watchdog {info.watchdog_ms} ms exceeds {self.max_watchdog_ms} ms; "
                "flash a build with a shorter watchdog"
            )
        if info.speed_max <= 0:
            raise LinkError(
                f"{port}: firmware allows no forward speed (speed_max {info.speed_max}); check its limits"
            )


class LinkFaultKind(StrEnum):
    PORT_LOST = "port_lost"  # the port is gone (unplugged adapter, closed pty); reopening with back-off
    WRITE_FAILED = "write_failed"  # a frame could not be written
    ACK_MISSING = "ack_missing"  # a command got no ACK within the ack timeout
    WATCHDOG_STOP = "watchdog_stop"  # the firmware's watchdog stopped the motors (state WATCHDOG)
    FIRMWARE_RESET = "firmware_reset"  # the firmware is DISARMED although the host armed it
    NOT_ARMED = "not_armed"  # the firmware refused a DRIVE because it is not armed
    FIRMWARE_DISCARDS = "firmware_discards"  # the firmware discarded corrupt frames from the host
    HOST_DISCARDS = "host_discards"  # the host discarded corrupt frames from the firmware
    READER_FAILED = "reader_failed"  # the reader thread died on an unexpected exception


@dataclass(frozen=True, slots=True)
class LinkFault:
    kind: LinkFaultKind
    detail: str


@dataclass(frozen=True, slots=True)
class LinkHealth:
    """What the control loop checks every period. `faults` holds the standing conditions (port lost,
    watchdog state, dead reader) and the events since the previous `health()` call."""

    connected: bool
    firmware_state: FirmwareState | None
    faults: tuple[LinkFault, ...]
    last_ack: AckInfo | None
    pending_acks: int
    acks_missing: int
    reconnects: int

    @property
    def ok(self) -> bool:
        return not self.faults

    def has(self, kind: LinkFaultKind) -> bool:
        return any(f.kind is kind for f in self.faults)


@dataclass(frozen=True, slots=True)
class _Pending:
    seq: int
    message_type: MsgType
    sent_at: float


class HostSession:
    """Sequence numbers, ACK matching, fault bookkeeping. Pure: the caller supplies bytes and times."""

    def __init__(self, ack_timeout_s: float = 0.1) -> None:
        if ack_timeout_s <= 0:
            raise ValueError(f"ack_timeout_s {ack_timeout_s} must be > 0")
        self.ack_timeout_s = ack_timeout_s
        self._parser = FrameParser(MCU_TO_HOST)
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._events: deque[LinkFault] = deque(maxlen=MAX_QUEUED_EVENTS)
        self._last_ack: AckInfo | None = None
        self._recent_acks: deque[AckInfo] = deque(maxlen=32)
        self._state: FirmwareState | None = None
        self._version: Version | None = None
        self._version_count = 0
        self._status: Status | None = None
        self._status_count = 0
        self._fault_count = 0
        self._last_discarded = 0
        self._acks_missing = 0
        self._expect_armed = False

    # ------------------------------------------------------------------ outgoing
    def frame_for(self, message: Message, now: float) -> tuple[int, bytes]:
        """Number and encode a message; ACKed types are remembered until their ACK or timeout."""
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_MODULO
        if message.TYPE in ACKED_TYPES:
            self._pending[seq] = _Pending(seq, message.TYPE, now)
        return seq, encode(message, seq)

    def unsent(self, seq: int) -> None:
        """The frame numbered `seq` never left: expect no ACK for it."""
        self._pending.pop(seq, None)

    def set_expect_armed(self, armed: bool) -> None:
        self._expect_armed = armed

    def report(self, kind: LinkFaultKind, detail: str) -> None:
        self._events.append(LinkFault(kind, detail))

    # ------------------------------------------------------------------ incoming
    def receive(self, data: bytes, now: float) -> list[WireFrame]:
        frames: list[WireFrame] = []
        for event in self._parser.feed(data, now):  # `now` lets a truncated reply expire at the gap
            if isinstance(event, Rejected):
                self.report(
                    LinkFaultKind.HOST_DISCARDS, f"discarded a frame from the firmware: {event.detail}"
                )
                continue
            frames.append(event)
            self._on_frame(event, now)
        return frames

    def _on_frame(self, frame: WireFrame, now: float) -> None:
        match frame.message:
            case Ack() as ack:
                self._on_ack(ack, now)
            case Version() as version:
                self._version = version
                self._version_count += 1
                self._state = FirmwareState.DISARMED
            case Status() as status:
                self._status = status
                self._status_count += 1
                self._state = status.state
            case FaultReport() as fault:
                self._fault_count += 1
                self._state = fault.state
                if fault.code is FaultCode.WATCHDOG:
                    self.report(
                        LinkFaultKind.WATCHDOG_STOP, f"firmware watchdog fired ({fault.count} so far)"
                    )
                else:
                    self.report(
                        LinkFaultKind.FIRMWARE_DISCARDS,
                        f"firmware discarded a frame: {fault.code.name.lower()} (count {fault.count})",
                    )

    def _on_ack(self, ack: Ack, now: float) -> None:
        pending = self._pending.pop(ack.acked_seq, None)
        matched = pending is not None and pending.message_type == ack.acked_type
        info = AckInfo(
            acked_seq=ack.acked_seq,
            acked_type=ack.acked_type,
            result=ack.result,
            state=ack.state,
            motor_left=ack.motor_left,
            motor_right=ack.motor_right,
            discarded=ack.discarded,
            watchdog_trips=ack.watchdog_trips,
            received_at=now,
            sent_at=pending.sent_at if matched and pending is not None else None,
        )
        self._last_ack = info
        self._recent_acks.append(info)
        self._state = ack.state
        if ack.result is AckResult.NOT_ARMED:
            self.report(LinkFaultKind.NOT_ARMED, f"firmware refused DRIVE seq {ack.acked_seq}: not armed")
        if ack.discarded > self._last_discarded:
            self.report(
                LinkFaultKind.FIRMWARE_DISCARDS,
                f"firmware discarded {ack.discarded - self._last_discarded} frame(s) (total {ack.discarded})",
            )
        self._last_discarded = ack.discarded
        if self._expect_armed and ack.state is FirmwareState.DISARMED:
            self._expect_armed = False
            self.report(LinkFaultKind.FIRMWARE_RESET, "firmware is DISARMED although it was armed (reset?)")

    # ------------------------------------------------------------------ time
    def expire(self, now: float) -> None:
        """Turn commands whose ACK is overdue into ACK_MISSING faults."""
        for seq, pending in list(self._pending.items()):
            if now - pending.sent_at > self.ack_timeout_s:
                del self._pending[seq]
                self._acks_missing += 1
                self.report(
                    LinkFaultKind.ACK_MISSING,
                    f"no ACK for {pending.message_type.name} seq {seq} "
                    f"within {self.ack_timeout_s * 1000:.0f} ms",
                )

    def forget_pending(self) -> None:
        """After a reconnect nothing sent before can be acknowledged any more."""
        self._pending.clear()
        self._expect_armed = False
        self._state = None
        self._last_ack = None  # it described a connection that no longer exists

    # ------------------------------------------------------------------ views
    def health(
        self, now: float, connected: bool, standing: tuple[LinkFault, ...], reconnects: int
    ) -> LinkHealth:
        self.expire(now)
        faults = list(standing)
        if self._state is FirmwareState.WATCHDOG:
            faults.append(LinkFault(LinkFaultKind.WATCHDOG_STOP, "firmware is in WATCHDOG state; ARM again"))
        faults.extend(self._events)
        self._events.clear()
        return LinkHealth(
            connected=connected,
            firmware_state=self._state,
            faults=tuple(faults),
            last_ack=self._last_ack,
            pending_acks=len(self._pending),
            acks_missing=self._acks_missing,
            reconnects=reconnects,
        )

    def ack_for(self, seq: int, sent_at: float) -> AckInfo | None:
        """The matched ACK of the frame numbered `seq` sent at `sent_at`, if it arrived."""
        for info in reversed(self._recent_acks):
            if info.acked_seq == seq and info.sent_at == sent_at:
                return info
        return None

    def is_pending(self, seq: int) -> bool:
        return seq in self._pending

    @property
    def last_ack(self) -> AckInfo | None:
        return self._last_ack

    @property
    def firmware_state(self) -> FirmwareState | None:
        return self._state

    @property
    def version(self) -> tuple[int, Version | None]:
        return self._version_count, self._version

    @property
    def status(self) -> tuple[int, Status | None]:
        return self._status_count, self._status

    @property
    def parser_counters(self) -> ParserCounters:
        return self._parser.counters
