"""The firmware's behaviour (PROTOCOL.md §6) as a pure, clock-injected state machine: the reference firmware.

`McuCore` does no I/O and reads no clock: the caller passes `now` (seconds, any monotonic origin) to
`feed(data, now)` and `tick(now)` and sends the returned bytes to the host. The pty-backed `VirtualMcu`
drives it in real time on a thread; a closed-loop simulation drives it on a simulated clock as fast as
the machine allows (see `firmware_bridge.loopback`).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.protocol import (
    HOST_TO_MCU,
    PROTOCOL_VERSION,
    SEQ_MODULO,
    SPEED_FULL_SCALE,
    U16_MAX,
    Ack,
    AckResult,
    Arm,
    Disarm,
    Drive,
    FaultCode,
    FaultReport,
    FirmwareState,
    FrameParser,
    Heartbeat,
    Hello,
    Message,
    Rejected,
    RejectReason,
    Status,
    StatusRequest,
    Stop,
    Version,
    WireFrame,
    encode,
)

ARMED_STATES = frozenset({FirmwareState.ARMED, FirmwareState.DRIVING})


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    """The constants a firmware build reports in VERSION (PROTOCOL.md §6)."""

    watchdog_ms: int = 250
    speed_min: int = -500
    speed_max: int = 1000
    firmware_version: tuple[int, int, int] = (1, 0, 0)
    discard_fault_interval_ms: int = 50

    def __post_init__(self) -> None:
        if not -SPEED_FULL_SCALE <= self.speed_min <= 0 <= self.speed_max <= SPEED_FULL_SCALE:
            raise ValueError(
                f"speed limits {self.speed_min}..{self.speed_max}: need -1000 <= min <= 0 <= max <= 1000"
            )
        if not 0 <= self.watchdog_ms <= U16_MAX:
            raise ValueError(f"watchdog_ms {self.watchdog_ms} outside 0..65535 (0 disables it)")

    def version_message(self) -> Version:
        major, minor, patch = self.firmware_version
        return Version(
            PROTOCOL_VERSION, major, minor, patch, self.watchdog_ms, self.speed_min, self.speed_max
        )


@dataclass(frozen=True, slots=True)
class McuCounters:
    garbage_bytes: int
    crc_errors: int
    oversized: int
    truncated: int
    unknown_type: int
    bad_length: int
    clamped: int
    watchdog_trips: int
    not_armed: int

    @property
    def discarded(self) -> int:
        return min(
            U16_MAX, self.crc_errors + self.oversized + self.truncated + self.unknown_type + self.bad_length
        )


def _sat(value: int) -> int:
    return min(value, U16_MAX)


_FAULT_OF_REJECT = {
    RejectReason.CRC_ERROR: FaultCode.CRC_ERROR,
    RejectReason.OVERSIZED: FaultCode.OVERSIZED,
    RejectReason.TRUNCATED: FaultCode.TRUNCATED,
    RejectReason.UNKNOWN_TYPE: FaultCode.UNKNOWN_TYPE,
    RejectReason.BAD_LENGTH: FaultCode.BAD_LENGTH,
}


def _fault_detail(rejected: Rejected) -> int:
    if rejected.reason is RejectReason.OVERSIZED:
        return rejected.raw[1]
    if rejected.reason is RejectReason.TRUNCATED:
        return min(len(rejected.raw), 255)
    if rejected.reason in (RejectReason.UNKNOWN_TYPE, RejectReason.BAD_LENGTH):
        return rejected.raw[2]
    return 0


class McuCore:
    """One microcontroller: receiver, state machine, watchdog, counters. Not thread-safe (one driver)."""

    def __init__(self, config: FirmwareConfig | None = None, boot_time: float = 0.0) -> None:
        self.config = config or FirmwareConfig()
        self._boot_time = boot_time
        self._parser = FrameParser(HOST_TO_MCU)
        self._state = FirmwareState.DISARMED
        self._motor = 0
        self._tx_seq = 0
        self._last_valid = boot_time
        self._last_discard_fault: float | None = None
        self._clamped = 0
        self._watchdog_trips = 0
        self._watchdog_fired_at: float | None = None
        self._watchdog_silence: float | None = None
        self._not_armed = 0
        self._discards: dict[FaultCode, int] = {}
        self._out: list[bytes] = []

    # ------------------------------------------------------------------ observable state
    @property
    def state(self) -> FirmwareState:
        return self._state

    @property
    def last_valid_at(self) -> float:
        """When (this core's clock) the last valid frame arrived: the watchdog counts from here."""
        return self._last_valid

    @property
    def watchdog_fired_at(self) -> float | None:
        """When (this core's clock) the command watchdog last stopped the motors; None if it never did."""
        return self._watchdog_fired_at

    @property
    def watchdog_silence(self) -> float | None:
        """How long (this core's clock) the host had been silent when the watchdog last fired."""
        return self._watchdog_silence

    @property
    def motor_left(self) -> int:
        """Permille of full throttle given to the left motor driver."""
        return self._motor

    @property
    def motor_right(self) -> int:
        return self._motor

    @property
    def counters(self) -> McuCounters:
        c = self._parser.counters
        return McuCounters(
            garbage_bytes=_sat(c.garbage_bytes),
            crc_errors=_sat(c.crc_errors),
            oversized=_sat(c.oversized),
            truncated=_sat(c.truncated),
            unknown_type=_sat(c.unknown_type),
            bad_length=_sat(c.bad_length),
            clamped=_sat(self._clamped),
            watchdog_trips=_sat(self._watchdog_trips),
            not_armed=_sat(self._not_armed),
        )

    def watchdog_deadline(self) -> float | None:
        """When the watchdog fires if nothing valid arrives; None when it is not running."""
        if self.config.watchdog_ms == 0 or self._state not in ARMED_STATES:
            return None
        return self._last_valid + self.config.watchdog_ms / 1000.0

    def next_deadline(self) -> float | None:
        """The earliest time `tick()` has something to do (watchdog or gap timeout); None = nothing."""
        times = [t for t in (self.watchdog_deadline(), self._parser.expiry()) if t is not None]
        return min(times) if times else None

    # ------------------------------------------------------------------ inputs
    def feed(self, data: bytes, now: float) -> bytes:
        """Bytes received from the host at time `now`; returns the bytes to send back."""
        self._check_watchdog(now)
        for event in self._parser.feed(data, now):
            self._handle(event, now)
        return self._flush()

    def tick(self, now: float) -> bytes:
        """Let time pass with no input: watchdog and gap timeout. Call it at least every 5 ms."""
        self._check_watchdog(now)
        for event in self._parser.expire(now):
            self._handle(event, now)
        return self._flush()

    # ------------------------------------------------------------------ internals
    def _flush(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _send(self, message: Message) -> None:
        self._out.append(encode(message, self._tx_seq))
        self._tx_seq = (self._tx_seq + 1) % SEQ_MODULO

    def _check_watchdog(self, now: float) -> None:
        deadline = self.watchdog_deadline()
        if deadline is None or now < deadline:
            return
        self._motor = 0
        self._state = FirmwareState.WATCHDOG
        self._watchdog_trips += 1
        self._watchdog_fired_at = now
        self._watchdog_silence = now - self._last_valid
        self._send(FaultReport(FaultCode.WATCHDOG, 0, self._state, _sat(self._watchdog_trips)))

    def _handle(self, event: WireFrame | Rejected, now: float) -> None:
        if isinstance(event, Rejected):
            self._report_discard(event, now)
            return
        self._last_valid = now
        self._act(event, now)

    def _report_discard(self, rejected: Rejected, now: float) -> None:
        code = _FAULT_OF_REJECT[rejected.reason]
        self._discards[code] = self._discards.get(code, 0) + 1  # the count *after* this event
        interval = self.config.discard_fault_interval_ms / 1000.0
        if self._last_discard_fault is not None and now - self._last_discard_fault < interval:
            return
        self._last_discard_fault = now
        self._send(FaultReport(code, _fault_detail(rejected), self._state, _sat(self._discards[code])))

    def _act(self, frame: WireFrame, now: float) -> None:
        message = frame.message
        result = AckResult.OK
        match message:
            case Hello():
                self._motor = 0
                self._state = FirmwareState.DISARMED
                self._send(self.config.version_message())
                return
            case StatusRequest():
                self._send(self._status(now))
                return
            case Stop():
                self._motor = 0  # STOP always wins, whatever the state
                if self._state is FirmwareState.DRIVING:
                    self._state = FirmwareState.ARMED
            case Arm():
                if self._state not in ARMED_STATES:
                    self._state = FirmwareState.ARMED
                    self._motor = 0
            case Disarm():
                self._motor = 0
                self._state = FirmwareState.DISARMED
            case Drive(speed=speed):
                result = self._drive(speed)
            case Heartbeat():
                pass
            case _:  # pragma: no cover - HOST_TO_MCU holds only the types above
                raise AssertionError(f"unhandled message {message!r}")
        self._send(
            Ack(
                frame.seq,
                message.TYPE,
                result,
                self._state,
                self._motor,
                self._motor,
                self.counters.discarded,
                _sat(self._watchdog_trips),
            )
        )

    def _drive(self, speed: int) -> AckResult:
        if self._state not in ARMED_STATES:
            self._not_armed += 1
            return AckResult.NOT_ARMED
        clamped = max(self.config.speed_min, min(self.config.speed_max, speed))
        self._motor = clamped
        self._state = FirmwareState.DRIVING if clamped != 0 else FirmwareState.ARMED
        if clamped != speed:
            self._clamped += 1
            return AckResult.CLAMPED
        return AckResult.OK

    def _status(self, now: float) -> Status:
        c = self.counters
        uptime_ms = round((now - self._boot_time) * 1000.0) % (1 << 32)
        return Status(
            self._state,
            self._motor,
            self._motor,
            c.garbage_bytes,
            c.crc_errors,
            c.oversized,
            c.truncated,
            c.unknown_type,
            c.bad_length,
            c.clamped,
            c.watchdog_trips,
            uptime_ms,
        )
