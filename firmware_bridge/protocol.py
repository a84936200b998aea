"""The wire protocol between the host and the car's microcontroller: a pure codec, no I/O.

`firmware_bridge/PROTOCOL.md` is the specification; this module is its Python implementation and
`firmware_bridge/test_vectors.json` is the shared proof that both agree.

Frame (all multi-byte integers little-endian):

    SOF(0xA5) | LEN | TYPE | SEQ | PAYLOAD (LEN bytes) | CRC16 (lo, hi)

CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0) over LEN..PAYLOAD.
Resynchronisation needs no escaping: a receiver that sees a bad candidate frame drops only its SOF byte
and scans again from the next byte, so a real frame hidden inside garbage is still found.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar, Self, TypeVar

SOF = 0xA5
PROTOCOL_VERSION = 1
HEADER_SIZE = 4  # SOF, LEN, TYPE, SEQ
CRC_SIZE = 2
MAX_FRAME_SIZE = 32
MAX_PAYLOAD = MAX_FRAME_SIZE - HEADER_SIZE - CRC_SIZE  # 26
GAP_TIMEOUT_S = 0.020  # a started frame with no byte for this long is discarded as truncated
SEQ_MODULO = 256
SPEED_FULL_SCALE = 1000  # speeds and motor outputs are signed permille of full throttle
U16_MAX = 0xFFFF


def crc16_ccitt_false(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0; check("123456789") = 0x29B1."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


class MsgType(IntEnum):
    """Message types. 0x01-0x7F travel host -> MCU, 0x81-0xFF travel MCU -> host."""

    HELLO = 0x01
    ARM = 0x02
    DISARM = 0x03
    DRIVE = 0x04
    STOP = 0x05
    HEARTBEAT = 0x06
    STATUS_REQUEST = 0x07
    VERSION = 0x81
    ACK = 0x82
    FAULT = 0x83
    STATUS = 0x84


class FirmwareState(IntEnum):
    DISARMED = 0  # boot state, after HELLO or DISARM: motors off, DRIVE refused
    ARMED = 1  # armed, motors off (after ARM or STOP or DRIVE 0)
    DRIVING = 2  # armed, motors running
    WATCHDOG = 3  # the watchdog fired: motors off, disarmed until the next ARM


class AckResult(IntEnum):
    OK = 0
    CLAMPED = 1  # DRIVE speed was outside the firmware's limits; the motors got the clamped value
    NOT_ARMED = 2  # DRIVE refused because the firmware is not armed; motors stay off


class FaultCode(IntEnum):
    """What an unsolicited FAULT report is about; `detail` is explained per code in PROTOCOL.md."""

    WATCHDOG = 1  # no valid frame within the watchdog timeout: motors off, state WATCHDOG
    CRC_ERROR = 2
    OVERSIZED = 3
    TRUNCATED = 4
    UNKNOWN_TYPE = 5  # detail = the type byte
    BAD_LENGTH = 6  # detail = the type byte


class RejectReason(IntEnum):
    """Why a receiver discarded a candidate frame. Values match the FaultCode of the same name."""

    CRC_ERROR = 2
    OVERSIZED = 3
    TRUNCATED = 4
    UNKNOWN_TYPE = 5
    BAD_LENGTH = 6
    BAD_VALUE = 7  # host only: a field holds a value the protocol does not define (e.g. state 9)


class Direction(IntEnum):
    HOST_TO_MCU = 0
    MCU_TO_HOST = 1


class DecodeError(ValueError):
    """A single frame could not be decoded; `reason` says why."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.name.lower()}: {detail}")
        self.reason = reason


# --------------------------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Message:
    """Base of all messages. Subclasses set TYPE and LAYOUT; fields are packed in declaration order."""

    TYPE: ClassVar[MsgType]
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<")

    def pack_payload(self) -> bytes:
        values = [int(getattr(self, f.name)) for f in fields(self)]
        try:
            return self.LAYOUT.pack(*values)
        except struct.error as exc:
            raise ValueError(
                f"{type(self).__name__}{tuple(values)} does not fit the wire format: {exc}"
            ) from exc

    @classmethod
    def unpack_payload(cls, payload: bytes) -> Self:
        return cls(*cls.LAYOUT.unpack(payload))


MESSAGE_TYPES: dict[int, type[Message]] = {}
_M = TypeVar("_M", bound=type[Message])


def register(cls: _M) -> _M:
    """Add a message class to the registry the decoder looks types up in."""
    if int(cls.TYPE) in MESSAGE_TYPES:
        raise ValueError(f"message type 0x{cls.TYPE:02X} registered twice")
    if cls.LAYOUT.size > MAX_PAYLOAD:
        raise ValueError(f"{cls.__name__} payload {cls.LAYOUT.size} B exceeds {MAX_PAYLOAD} B")
    MESSAGE_TYPES[int(cls.TYPE)] = cls
    return cls


@register
@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Start a session: the firmware turns the motors off, disarms, and answers VERSION."""

    TYPE: ClassVar[MsgType] = MsgType.HELLO
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<B")
    protocol_version: int = PROTOCOL_VERSION


@register
@dataclass(frozen=True, slots=True)
class Arm(Message):
    TYPE: ClassVar[MsgType] = MsgType.ARM


@register
@dataclass(frozen=True, slots=True)
class Disarm(Message):
    TYPE: ClassVar[MsgType] = MsgType.DISARM


@register
@dataclass(frozen=True, slots=True)
class Drive(Message):
    """Run both motors at `speed` permille of full throttle (negative = reverse). Clamped by the firmware."""

    TYPE: ClassVar[MsgType] = MsgType.DRIVE
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<h")
    speed: int


@register
@dataclass(frozen=True, slots=True)
class Stop(Message):
    TYPE: ClassVar[MsgType] = MsgType.STOP


@register
@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT


@register
@dataclass(frozen=True, slots=True)
class StatusRequest(Message):
    TYPE: ClassVar[MsgType] = MsgType.STATUS_REQUEST


@register
@dataclass(frozen=True, slots=True)
class Version(Message):
    """Answer to HELLO: what the firmware is and the limits it enforces."""

    TYPE: ClassVar[MsgType] = MsgType.VERSION
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBBBHhh")
    protocol_version: int
    firmware_major: int
    firmware_minor: int
    firmware_patch: int
    watchdog_ms: int  # 0 = watchdog disabled (bench builds only; the host refuses it by default)
    speed_min: int  # permille, <= 0
    speed_max: int  # permille, >= 0


@register
@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Answer to every valid ARM, DISARM, DRIVE, STOP and HEARTBEAT."""

    TYPE: ClassVar[MsgType] = MsgType.ACK
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBBBhhHH")
    acked_seq: int
    acked_type: MsgType
    result: AckResult
    state: FirmwareState
    motor_left: int  # permille
    motor_right: int  # permille
    discarded: int  # frames discarded since boot (all reasons), saturating at 65535
    watchdog_trips: int  # since boot, saturating

    @classmethod
    def unpack_payload(cls, payload: bytes) -> Self:
        seq, typ, result, state, left, right, discarded, trips = cls.LAYOUT.unpack(payload)
        return cls(seq, MsgType(typ), AckResult(result), FirmwareState(state), left, right, discarded, trips)


@register
@dataclass(frozen=True, slots=True)
class FaultReport(Message):
    """Unsolicited: something went wrong on the firmware side."""

    TYPE: ClassVar[MsgType] = MsgType.FAULT
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BBBH")
    code: FaultCode
    detail: int
    state: FirmwareState
    count: int  # how many faults of this code since boot, saturating

    @classmethod
    def unpack_payload(cls, payload: bytes) -> Self:
        code, detail, state, count = cls.LAYOUT.unpack(payload)
        return cls(FaultCode(code), detail, FirmwareState(state), count)


@register
@dataclass(frozen=True, slots=True)
class Status(Message):
    """Answer to STATUS_REQUEST: state, motors, and every counter of PROTOCOL.md §6."""

    TYPE: ClassVar[MsgType] = MsgType.STATUS
    LAYOUT: ClassVar[struct.Struct] = struct.Struct("<BhhHHHHHHHHI")
    state: FirmwareState
    motor_left: int
    motor_right: int
    garbage_bytes: int
    crc_errors: int
    oversized: int
    truncated: int
    unknown_type: int
    bad_length: int
    clamped: int
    watchdog_trips: int
    uptime_ms: int

    @classmethod
    def unpack_payload(cls, payload: bytes) -> Self:
        state, *rest = cls.LAYOUT.unpack(payload)
        return cls(FirmwareState(state), *rest)


HOST_TO_MCU: Mapping[int, type[Message]] = {t: c for t, c in MESSAGE_TYPES.items() if t < 0x80}
MCU_TO_HOST: Mapping[int, type[Message]] = {t: c for t, c in MESSAGE_TYPES.items() if t >= 0x80}


def types_received_by(direction: Direction) -> Mapping[int, type[Message]]:
    """The message types a receiver at the far end of `direction` accepts; all others are unknown."""
    return HOST_TO_MCU if direction is Direction.HOST_TO_MCU else MCU_TO_HOST


# ------------------------------------------------------------------------------------------ frame codec


@dataclass(frozen=True, slots=True)
class WireFrame:
    """One decoded frame: its sequence number, its message, and the exact bytes it came from."""

    seq: int
    message: Message
    raw: bytes


def encode(message: Message, seq: int) -> bytes:
    """The complete frame for `message` with sequence number `seq` (0..255)."""
    if not 0 <= seq < SEQ_MODULO:
        raise ValueError(f"sequence number {seq} outside 0..255")
    payload = message.pack_payload()
    body = bytes((len(payload), int(message.TYPE), seq)) + payload
    return bytes((SOF,)) + body + crc16_ccitt_false(body).to_bytes(2, "little")


def frame_size(message_type: type[Message]) -> int:
    return HEADER_SIZE + message_type.LAYOUT.size + CRC_SIZE


def decode_body(raw: bytes, accepted: Mapping[int, type[Message]]) -> WireFrame:
    """Decode a complete candidate frame whose SOF, LEN bound and CRC are already checked."""
    length, type_byte, seq = raw[1], raw[2], raw[3]
    message_type = accepted.get(type_byte)
    if message_type is None:
        raise DecodeError(RejectReason.UNKNOWN_TYPE, f"type 0x{type_byte:02X}")
    if length != message_type.LAYOUT.size:
        raise DecodeError(
            RejectReason.BAD_LENGTH,
            f"{message_type.__name__} needs {message_type.LAYOUT.size} payload bytes, got {length}",
        )
    payload = raw[HEADER_SIZE : HEADER_SIZE + length]
    try:
        message = message_type.unpack_payload(payload)
    except ValueError as exc:  # an enum field with an undefined value
        raise DecodeError(RejectReason.BAD_VALUE, f"{message_type.__name__}: {exc}") from exc
    return WireFrame(seq=seq, message=message, raw=bytes(raw))


def decode(raw: bytes, accepted: Mapping[int, type[Message]] = MESSAGE_TYPES) -> WireFrame:
    """Decode exactly one complete frame (no leading or trailing bytes) or raise DecodeError."""
    if len(raw) < HEADER_SIZE + CRC_SIZE or raw[0] != SOF:
        raise DecodeError(RejectReason.TRUNCATED, f"{len(raw)} bytes do not start a complete frame")
    length = raw[1]
    if length > MAX_PAYLOAD:
        raise DecodeError(RejectReason.OVERSIZED, f"LEN {length} > {MAX_PAYLOAD}")
    total = HEADER_SIZE + length + CRC_SIZE
    if len(raw) < total:
        raise DecodeError(RejectReason.TRUNCATED, f"{len(raw)} of {total} bytes")
    if len(raw) > total:
        raise DecodeError(RejectReason.BAD_LENGTH, f"{len(raw) - total} bytes after the frame")
    if crc16_ccitt_false(raw[1 : total - CRC_SIZE]) != int.from_bytes(
        raw[total - CRC_SIZE : total], "little"
    ):
        raise DecodeError(RejectReason.CRC_ERROR, "checksum mismatch")
    return decode_body(raw, accepted)


# ------------------------------------------------------------------------------------- streaming parser


@dataclass(frozen=True, slots=True)
class Rejected:
    """A candidate frame the parser discarded, and why. `raw` is the candidate's bytes as seen."""

    reason: RejectReason
    raw: bytes
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ParserCounters:
    garbage_bytes: int = 0
    crc_errors: int = 0
    oversized: int = 0
    truncated: int = 0
    unknown_type: int = 0
    bad_length: int = 0
    bad_value: int = 0
    frames: int = 0

    @property
    def discarded(self) -> int:
        return (
            self.crc_errors
            + self.oversized
            + self.truncated
            + self.unknown_type
            + self.bad_length
            + self.bad_value
        )


_COUNTER_OF_REASON: Mapping[RejectReason, str] = {
    RejectReason.CRC_ERROR: "crc_errors",
    RejectReason.OVERSIZED: "oversized",
    RejectReason.TRUNCATED: "truncated",
    RejectReason.UNKNOWN_TYPE: "unknown_type",
    RejectReason.BAD_LENGTH: "bad_length",
    RejectReason.BAD_VALUE: "bad_value",
}


class FrameParser:
    """Streaming receiver: bytes in, frames and rejections out, resynchronising after any garbage.

    The algorithm is PROTOCOL.md §4 step by step, so the C firmware and this class discard the same
    candidates for the same bytes. It never holds more than MAX_FRAME_SIZE bytes. Not thread-safe: one
    reader owns it.
    """

    def __init__(
        self,
        accepted: Mapping[int, type[Message]] = MESSAGE_TYPES,
        gap_timeout_s: float = GAP_TIMEOUT_S,
    ) -> None:
        self._accepted = accepted
        self._gap_timeout_s = gap_timeout_s
        self._buf = bytearray()
        self._last_rx: float | None = None
        self._counts: dict[str, int] = dict.fromkeys(_COUNTER_OF_REASON.values(), 0)
        self._garbage = 0
        self._frames = 0

    @property
    def counters(self) -> ParserCounters:
        return ParserCounters(garbage_bytes=self._garbage, frames=self._frames, **self._counts)

    @property
    def pending(self) -> int:
        """Bytes of an incomplete candidate frame held back waiting for the rest."""
        return len(self._buf)

    def expiry(self) -> float | None:
        """The time after which `expire()` discards the held candidate (None when nothing is held)."""
        if not self._buf or self._last_rx is None:
            return None
        return self._last_rx + self._gap_timeout_s

    def feed(self, data: bytes, now: float | None = None) -> list[WireFrame | Rejected]:
        """Add received bytes (arrived at monotonic time `now`; None = no gap timing) and return events."""
        events: list[WireFrame | Rejected] = []
        if now is not None:
            events.extend(self.expire(now))
            self._last_rx = now
        self._buf.extend(data)
        self._drain(events)
        return events

    def expire(self, now: float) -> list[WireFrame | Rejected]:
        """Discard a started frame whose next byte is more than the gap timeout late (PROTOCOL.md §4)."""
        events: list[WireFrame | Rejected] = []
        if not self._buf or self._last_rx is None or now - self._last_rx <= self._gap_timeout_s:
            return events
        while self._buf:
            self._reject(events, RejectReason.TRUNCATED, bytes(self._buf), "gap timeout")
            del self._buf[:1]
            self._drain(events)
        return events

    def _reject(
        self, events: list[WireFrame | Rejected], reason: RejectReason, raw: bytes, detail: str
    ) -> None:
        self._counts[_COUNTER_OF_REASON[reason]] += 1
        events.append(Rejected(reason, raw, detail))

    def _drain(self, events: list[WireFrame | Rejected]) -> None:
        buf = self._buf
        while buf:
            if buf[0] != SOF:
                start = buf.find(SOF)
                skipped = len(buf) if start < 0 else start
                self._garbage += skipped
                del buf[:skipped]
                continue
            if len(buf) < 2:
                return
            length = buf[1]
            if length > MAX_PAYLOAD:
                self._reject(events, RejectReason.OVERSIZED, bytes(buf[:2]), f"LEN {length}")
                del buf[:1]
                continue
            total = HEADER_SIZE + length + CRC_SIZE
            if len(buf) < total:
                return
            raw = bytes(buf[:total])
            if crc16_ccitt_false(raw[1:-CRC_SIZE]) != int.from_bytes(raw[-CRC_SIZE:], "little"):
                self._reject(events, RejectReason.CRC_ERROR, raw, "checksum mismatch")
                del buf[:1]
                continue
            del buf[:total]
            try:
                events.append(decode_body(raw, self._accepted))
            except DecodeError as exc:
                self._reject(events, exc.reason, raw, str(exc))
            else:
                self._frames += 1
