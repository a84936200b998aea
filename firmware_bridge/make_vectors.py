"""Write `firmware_bridge/test_vectors.json` (PROTOCOL.md §9) from the Python codec and reference firmware.

`python -m firmware_bridge.make_vectors` rewrites the file; `--check` only compares. The committed file is
the contract: tests decode it independently of this generator, and a C firmware is tested against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from firmware_bridge.mcu import FirmwareConfig, McuCore
from firmware_bridge.protocol import (
    HOST_TO_MCU,
    MCU_TO_HOST,
    SOF,
    Ack,
    AckResult,
    Arm,
    Direction,
    Disarm,
    Drive,
    FaultCode,
    FaultReport,
    FirmwareState,
    FrameParser,
    Heartbeat,
    Hello,
    Message,
    MsgType,
    Status,
    StatusRequest,
    Stop,
    Version,
    WireFrame,
    crc16_ccitt_false,
    encode,
)

VECTORS_PATH = Path(__file__).with_name("test_vectors.json")


def to_hex(data: bytes) -> str:
    return data.hex(" ")


def message_fields(message: Message) -> dict[str, int]:
    return {f.name: int(getattr(message, f.name)) for f in fields(message)}


def frame_entry(name: str, message: Message, seq: int) -> dict[str, object]:
    direction = Direction.HOST_TO_MCU if message.TYPE < 0x80 else Direction.MCU_TO_HOST
    return {
        "name": name,
        "direction": direction.name.lower(),
        "hex": to_hex(encode(message, seq)),
        "type": message.TYPE.name,
        "seq": seq,
        "fields": message_fields(message),
    }


def raw_frame(length: int, type_byte: int, seq: int, payload: bytes) -> bytes:
    """A frame with a correct CRC around arbitrary header values (for unknown-type / bad-length cases)."""
    body = bytes((length, type_byte, seq)) + payload
    return bytes((SOF,)) + body + crc16_ccitt_false(body).to_bytes(2, "little")


def _valid_frames() -> list[dict[str, object]]:
    ack = Ack(2, MsgType.DRIVE, AckResult.OK, FirmwareState.DRIVING, 600, 600, 0, 0)
    return [
        frame_entry("hello v1", Hello(1), 0),
        frame_entry("arm", Arm(), 1),
        frame_entry("drive +600", Drive(600), 2),
        frame_entry("drive -250", Drive(-250), 3),
        frame_entry("drive 0", Drive(0), 4),
        frame_entry("drive -32768 (extreme, will be clamped)", Drive(-32768), 5),
        frame_entry("drive +32767 (extreme, will be clamped)", Drive(32767), 6),
        frame_entry("stop seq 7", Stop(), 7),
        frame_entry("stop seq 255", Stop(), 255),
        frame_entry("heartbeat", Heartbeat(), 8),
        frame_entry("disarm", Disarm(), 9),
        frame_entry("status request", StatusRequest(), 10),
        frame_entry("drive with 0xA5 inside (speed 165)", Drive(165), 0xA5),
        frame_entry("version 1.0.0 wd 250 -500..1000", Version(1, 1, 0, 0, 250, -500, 1000), 0),
        frame_entry("ack drive ok driving", ack, 1),
        frame_entry(
            "ack drive clamped",
            Ack(6, MsgType.DRIVE, AckResult.CLAMPED, FirmwareState.DRIVING, 1000, 1000, 3, 1),
            2,
        ),
        frame_entry(
            "ack drive not armed",
            Ack(3, MsgType.DRIVE, AckResult.NOT_ARMED, FirmwareState.WATCHDOG, 0, 0, 65535, 65535),
            3,
        ),
        frame_entry("fault watchdog", FaultReport(FaultCode.WATCHDOG, 0, FirmwareState.WATCHDOG, 1), 4),
        frame_entry(
            "fault unknown type 0x42", FaultReport(FaultCode.UNKNOWN_TYPE, 0x42, FirmwareState.ARMED, 2), 5
        ),
        frame_entry(
            "status",
            Status(FirmwareState.DRIVING, 600, 600, 10, 1, 2, 3, 4, 5, 6, 7, 123456789),
            6,
        ),
    ]


def _invalid_frames() -> list[dict[str, object]]:
    stop = encode(Stop(), 7)
    drive = encode(Drive(600), 2)
    ack = encode(Ack(2, MsgType.DRIVE, AckResult.OK, FirmwareState.DRIVING, 600, 600, 0, 0), 1)

    def flip(data: bytes, index: int, mask: int) -> bytes:
        out = bytearray(data)
        out[index] ^= mask
        return bytes(out)

    h2m, m2h = "host_to_mcu", "mcu_to_host"
    cases: list[tuple[str, str, bytes, str]] = [
        ("stop with CRC low byte wrong", h2m, flip(stop, -2, 0x01), "crc_error"),
        ("stop with CRC high byte wrong", h2m, flip(stop, -1, 0x80), "crc_error"),
        ("drive with one payload bit flipped", h2m, flip(drive, 4, 0x04), "crc_error"),
        ("drive with the sign bit flipped", h2m, flip(drive, 5, 0x80), "crc_error"),
        ("drive with SEQ changed", h2m, flip(drive, 3, 0x01), "crc_error"),
        ("drive with TYPE changed to STOP, CRC unchanged", h2m, flip(drive, 2, 0x04 ^ 0x05), "crc_error"),
        ("LEN 27 (oversized)", h2m, bytes((SOF, 27)), "oversized"),
        ("LEN 255 (oversized)", h2m, bytes((SOF, 255)), "oversized"),
        ("drive cut after 5 bytes, then silence", h2m, drive[:5], "truncated"),
        ("lone SOF, then silence", h2m, bytes((SOF,)), "truncated"),
        ("unknown type 0x42", h2m, raw_frame(0, 0x42, 1, b""), "unknown_type"),
        ("MCU->host type ACK sent to the MCU", h2m, ack, "unknown_type"),
        ("host->MCU type STOP sent to the host", m2h, stop, "unknown_type"),
        ("DRIVE with 1 payload byte", h2m, raw_frame(1, int(MsgType.DRIVE), 1, b"\x10"), "bad_length"),
        ("STOP with a payload byte", h2m, raw_frame(1, int(MsgType.STOP), 1, b"\x00"), "bad_length"),
        ("HELLO with no payload", h2m, raw_frame(0, int(MsgType.HELLO), 1, b""), "bad_length"),
        (
            "ACK with state 9",
            m2h,
            raw_frame(12, int(MsgType.ACK), 1, bytes((2, 4, 0, 9)) + bytes(8)),
            "bad_value",
        ),
        ("ack with a flipped motor bit", m2h, flip(ack, 8, 0x10), "crc_error"),
    ]
    return [{"name": n, "direction": d, "hex": to_hex(b), "reason": r} for n, d, b, r in cases]


@dataclass(frozen=True, slots=True)
class Chunk:
    t_ms: int
    data: bytes


def _run_stream(direction: Direction, chunks: list[Chunk], end_ms: int) -> dict[str, object]:
    accepted = HOST_TO_MCU if direction is Direction.HOST_TO_MCU else MCU_TO_HOST
    parser = FrameParser(accepted)
    frames: list[WireFrame] = []
    for chunk in chunks:
        frames += [e for e in parser.feed(chunk.data, chunk.t_ms / 1000.0) if isinstance(e, WireFrame)]
    frames += [e for e in parser.expire(end_ms / 1000.0) if isinstance(e, WireFrame)]
    c = parser.counters
    return {
        "direction": direction.name.lower(),
        "chunks": [{"t_ms": ch.t_ms, "hex": to_hex(ch.data)} for ch in chunks],
        "end_ms": end_ms,
        "frames": [
            {"type": f.message.TYPE.name, "seq": f.seq, "fields": message_fields(f.message)} for f in frames
        ],
        "counters": {
            "garbage_bytes": c.garbage_bytes,
            "crc_errors": c.crc_errors,
            "oversized": c.oversized,
            "truncated": c.truncated,
            "unknown_type": c.unknown_type,
            "bad_length": c.bad_length,
        },
    }


def _streams() -> list[dict[str, object]]:
    h2m = Direction.HOST_TO_MCU
    drive = encode(Drive(600), 2)
    stop = encode(Stop(), 3)
    hb = encode(Heartbeat(), 4)
    garbage = bytes(range(0x30, 0x40)) + b"\xa5\xff\xa5\x03\x00" + bytes((SOF, 0x00, 0x05))
    cases: list[tuple[str, Direction, list[Chunk], int]] = [
        ("three frames back to back", h2m, [Chunk(0, drive + stop + hb)], 100),
        ("garbage then a frame", h2m, [Chunk(0, garbage + stop)], 100),
        ("frame split over two chunks 5 ms apart", h2m, [Chunk(0, drive[:3]), Chunk(5, drive[3:])], 100),
        (
            "truncated frame, silence 30 ms, then a frame",
            h2m,
            [Chunk(0, drive[:5]), Chunk(30, stop)],
            100,
        ),
        (
            "truncated frame immediately followed by a frame (found by rescanning)",
            h2m,
            [Chunk(0, drive[:5] + stop + hb)],
            100,
        ),
        ("corrupted drive then a good stop", h2m, [Chunk(0, drive[:4] + b"\x00" + drive[5:] + stop)], 100),
        ("frame inside an oversized candidate", h2m, [Chunk(0, b"\xa5\xa5" + bytes([0x1F]) + stop)], 100),
        (
            "unknown type with good CRC, then a frame",
            h2m,
            [Chunk(0, raw_frame(2, 0x42, 0, b"\xa5\x00") + stop)],
            100,
        ),
        (
            "MCU replies",
            Direction.MCU_TO_HOST,
            [
                Chunk(
                    0,
                    encode(Version(1, 1, 0, 0, 250, -500, 1000), 0)
                    + b"\x00\x00"
                    + encode(Ack(1, MsgType.ARM, AckResult.OK, FirmwareState.ARMED, 0, 0, 0, 0), 1),
                )
            ],
            100,
        ),
    ]
    return [{"name": name} | _run_stream(d, chunks, end) for name, d, chunks, end in cases]


def _run_scenario(steps: list[Chunk], end_ms: int) -> dict[str, object]:
    core = McuCore(FirmwareConfig())
    replies: list[dict[str, object]] = []
    parser = FrameParser(MCU_TO_HOST)

    def collect(t_ms: int, out: bytes) -> None:
        for event in parser.feed(out):
            assert isinstance(event, WireFrame), event
            replies.append({"t_ms": t_ms, "hex": to_hex(event.raw)})

    # Let time run in 1 ms ticks so the watchdog fires at the first millisecond it may.
    step_iter = iter(steps)
    pending = next(step_iter, None)
    for t_ms in range(end_ms + 1):
        while pending is not None and pending.t_ms == t_ms:
            collect(t_ms, core.feed(pending.data, t_ms / 1000.0))
            pending = next(step_iter, None)
        collect(t_ms, core.tick(t_ms / 1000.0))
    return {
        "steps": [{"t_ms": s.t_ms, "hex": to_hex(s.data)} for s in steps],
        "end_ms": end_ms,
        "replies": replies,
        "final": {
            "state": core.state.name,
            "motor_left": core.motor_left,
            "motor_right": core.motor_right,
        },
    }


def _scenarios() -> list[dict[str, object]]:
    seq = iter(range(256))

    def f(message: Message) -> bytes:
        return encode(message, next(seq))

    hello, arm, drive, stop = f(Hello(1)), f(Arm()), f(Drive(600)), f(Stop())
    cases: list[tuple[str, list[Chunk], int]] = [
        ("boot: drive refused while disarmed", [Chunk(0, f(Drive(500)))], 10),
        (
            "hello, arm, drive, stop",
            [Chunk(0, hello), Chunk(10, arm), Chunk(20, drive), Chunk(30, stop)],
            40,
        ),
        (
            "watchdog: host silent after drive",
            [Chunk(0, hello), Chunk(10, arm), Chunk(20, f(Drive(400)))],
            300,
        ),
        (
            "watchdog then drive refused, re-arm, drive",
            [
                Chunk(0, f(Arm())),
                Chunk(300, f(Drive(300))),
                Chunk(310, f(Arm())),
                Chunk(320, f(Drive(300))),
            ],
            330,
        ),
        (
            "heartbeats keep the watchdog fed",
            [Chunk(0, f(Arm())), Chunk(10, f(Drive(200)))]
            + [Chunk(t, f(Heartbeat())) for t in (200, 400, 600)],
            650,
        ),
        (
            "speed clamped both ways",
            [Chunk(0, f(Arm())), Chunk(5, f(Drive(1500))), Chunk(10, f(Drive(-900)))],
            20,
        ),
        (
            "drive 0 means armed and stopped",
            [Chunk(0, f(Arm())), Chunk(5, f(Drive(500))), Chunk(10, f(Drive(0)))],
            20,
        ),
        (
            "corrupt drive never moves the motors",
            [
                Chunk(0, f(Arm())),
                Chunk(5, bytes(b ^ (0x10 if i == 5 else 0) for i, b in enumerate(f(Drive(700))))),
            ],
            20,
        ),
        (
            "garbage burst: one fault per 50 ms, then a valid stop",
            [
                Chunk(0, f(Arm())),
                Chunk(5, b"\xa5\xff" * 4),
                Chunk(20, b"\xa5\xff"),
                Chunk(60, b"\xa5\xff" + f(Stop())),
            ],
            70,
        ),
        ("stop while disarmed is acknowledged", [Chunk(0, f(Stop()))], 5),
        (
            "hello while driving stops and disarms",
            [Chunk(0, f(Arm())), Chunk(5, f(Drive(500))), Chunk(10, f(Hello(1)))],
            15,
        ),
        ("disarm while driving", [Chunk(0, f(Arm())), Chunk(5, f(Drive(500))), Chunk(10, f(Disarm()))], 15),
        ("status request", [Chunk(0, f(Arm())), Chunk(5, b"\x00\x01"), Chunk(7, f(StatusRequest()))], 10),
        ("truncated frame reported after the gap", [Chunk(0, f(Drive(100))[:4])], 30),
    ]
    return [{"name": name} | _run_scenario(steps, end) for name, steps, end in cases]


def build_vectors() -> dict[str, object]:
    return {
        "protocol": "GO/STOP serial protocol, see PROTOCOL.md",
        "protocol_version": 1,
        "crc": {"name": "CRC-16/CCITT-FALSE", "check_input_ascii": "123456789", "check": "0x29b1"},
        "frames": _valid_frames(),
        "invalid": _invalid_frames(),
        "streams": _streams(),
        "scenarios": _scenarios(),
    }


def render() -> str:
    return json.dumps(build_vectors(), indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_bridge.make_vectors", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare with the committed file")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = VECTORS_PATH.exists() and VECTORS_PATH.read_text() == text
        print(f"{VECTORS_PATH}: {'up to date' if same else 'DIFFERS from the codec'}")
        return 0 if same else 1
    VECTORS_PATH.write_text(text)
    print(f"wrote {VECTORS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
