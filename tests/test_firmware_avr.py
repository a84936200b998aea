"""The AVR firmware: it builds and fits, its C protocol code passes the shared test vectors on the host, and
the very ELF that `make flash` writes runs in an emulated ATmega328P (simavr) behind a real pty, where the
host talks to it over pyserial and its motor pins are read from the emulated I/O registers.

Skipped when avr-gcc / simavr are not installed, except under CI=true, where they must be.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest
import serial

from firmware_bridge.avr_emulator import (
    FIRMWARE_DIR,
    AvrEmulator,
    AvrEmulatorConfig,
    PinSample,
    build_firmware,
    install_hint,
    missing_tools,
)
from firmware_bridge.errors import LinkError
from firmware_bridge.mcu import McuCore
from firmware_bridge.protocol import (
    HOST_TO_MCU,
    MCU_TO_HOST,
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
    Status,
    StatusRequest,
    Stop,
    Version,
    WireFrame,
    crc16_ccitt_false,
    encode,
)

VECTORS = FIRMWARE_DIR.parent / "test_vectors.json"
_MISSING = missing_tools()
if _MISSING and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.skip(f"AVR toolchain missing ({', '.join(_MISSING)}): {install_hint()}", allow_module_level=True)


@pytest.fixture(scope="module")
def built() -> AvrEmulatorConfig:
    config = AvrEmulatorConfig()
    build_firmware(config)  # make: a no-op when up to date
    return config


class RawHost:
    """The host end of the pty with plain pyserial and the protocol codec: every byte under test control."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 115200, timeout=0.01)
        self.parser = FrameParser(MCU_TO_HOST)
        self.seq = 0

    def close(self) -> None:
        self.port.close()

    def send(self, message: Message) -> None:
        self.port.write(encode(message, self.seq))
        self.seq = (self.seq + 1) % 256

    def read(self, count: int, timeout_s: float = 10.0) -> list[Message]:
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            data = self.port.read(max(1, self.port.in_waiting))
            messages += [e.message for e in self.parser.feed(data) if isinstance(e, WireFrame)]
        return messages

    def request(self, message: Message, replies: int = 1) -> list[Message]:
        self.send(message)
        got = self.read(replies)
        assert len(got) == replies, f"{message!r}: {len(got)} of {replies} replies: {got}"
        return got

    def ack(self, message: Message) -> Ack:
        (reply,) = self.request(message)
        assert isinstance(reply, Ack), reply
        return reply


@pytest.fixture
def emulator(built: AvrEmulatorConfig, tmp_path: Path) -> Iterator[AvrEmulator]:
    config = AvrEmulatorConfig(build=False, pins_trace=tmp_path / "pins.txt")
    with AvrEmulator(config) as avr:
        yield avr
        assert avr.error is None, avr.error


@pytest.fixture
def host(emulator: AvrEmulator) -> Iterator[RawHost]:
    raw = RawHost(emulator.path)
    yield raw
    raw.close()


def last_pins(emulator: AvrEmulator) -> PinSample:
    samples = emulator.pin_samples()
    assert samples, "no pin trace"
    return samples[-1]


def wait_pins(emulator: AvrEmulator, predicate: object, timeout_s: float = 10.0) -> PinSample:
    assert callable(predicate)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples = emulator.pin_samples()
        if samples and predicate(samples[-1]):
            return samples[-1]
        time.sleep(0.005)
    raise AssertionError(f"pins never matched; last {emulator.pin_samples()[-1:]}")


def wait_emulated(emulator: AvrEmulator, until_s: float, fuse_s: float = 60.0) -> float:
    """Wait until the chip's emulated clock reaches `until_s`; returns the emulated time then.

    Timing is asserted in emulated time: a busy machine slows the emulation and this clock together. The
    wall-clock `fuse_s` only ends a test whose emulator stalled; it is no bound on anything measured."""
    fuse = time.monotonic() + fuse_s
    while (now := emulator.emulated_s()) < until_s:
        assert time.monotonic() < fuse, f"emulation stalled at {now:.3f} s (waiting for {until_s:.3f} s)"
        time.sleep(0.005)
    return now


def next_ack(host: RawHost, message: Message, fuse_s: float = 30.0) -> Ack:
    """Send `message` and return its ACK, skipping replies to earlier requests still on the wire."""
    host.send(message)
    fuse = time.monotonic() + fuse_s
    while time.monotonic() < fuse:
        for reply in host.read(1):
            if isinstance(reply, Ack):
                return reply
    raise AssertionError(f"no ACK to {message!r}")


# ------------------------------------------------------------------------------------- build and fit


def test_build_prints_flash_and_ram_use_that_fit_the_chip(built: AvrEmulatorConfig) -> None:
    out = subprocess.run(
        ["make", "-C", str(FIRMWARE_DIR), "size"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"flash (\d+) of (\d+) bytes .*RAM (\d+) of (\d+) bytes", out)
    assert match, out
    flash, flash_max, ram, ram_max = (int(g) for g in match.groups())
    assert 1000 < flash < flash_max // 2
    assert 50 < ram < ram_max // 2
    hex_lines = (built.build_path / "firmware.hex").read_text().split()
    assert all(line.startswith(":") for line in hex_lines) and hex_lines[-1] == ":00000001FF"


def test_elf_is_for_the_atmega328p(built: AvrEmulatorConfig) -> None:
    header = built.elf.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    assert int.from_bytes(header[18:20], "little") == 83  # EM_AVR


# ------------------------------------------------------------------------------ host-side C vectors


def run_vectors(vectors: Path, built: AvrEmulatorConfig) -> subprocess.CompletedProcess[str]:
    subprocess.run(["make", "-C", str(FIRMWARE_DIR), "host-test"], capture_output=True, text=True, check=True)
    lines = subprocess.run(
        [sys.executable, str(FIRMWARE_DIR / "host" / "vectors_to_text.py"), str(vectors)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    runner = built.build_path / "host" / "vector_runner"
    return subprocess.run([str(runner)], input=lines, capture_output=True, text=True, check=False)


def test_c_receiver_and_firmware_logic_pass_every_vector(built: AvrEmulatorConfig) -> None:
    result = run_vectors(VECTORS, built)
    assert result.returncode == 0, result.stdout + result.stderr
    vectors = json.loads(VECTORS.read_text())
    total = 1 + sum(len(vectors[k]) for k in ("frames", "invalid", "streams", "scenarios"))
    assert f"1..{total}" in result.stdout
    assert "not ok" not in result.stdout
    skipped = [line for line in result.stdout.splitlines() if "# SKIP" in line]
    assert len(skipped) == sum(1 for v in vectors["invalid"] if v["reason"] == "bad_value")


def test_c_vector_runner_catches_a_wrong_reply(built: AvrEmulatorConfig, tmp_path: Path) -> None:
    vectors = json.loads(VECTORS.read_text())
    scenario = next(s for s in vectors["scenarios"] if s["name"] == "speed clamped both ways")
    reply = scenario["replies"][1]["hex"].split()
    reply[8] = f"{int(reply[8], 16) ^ 1:02x}"  # one motor bit of the clamped ACK
    scenario["replies"][1]["hex"] = " ".join(reply)
    stream = vectors["streams"][0]
    stream["counters"]["garbage_bytes"] += 1
    tampered = tmp_path / "vectors.json"
    tampered.write_text(json.dumps(vectors))
    result = run_vectors(tampered, built)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert len(failed) == 2, result.stdout
    assert "speed clamped both ways" in failed[1] and "garbage_bytes" in failed[0]


class ExactSeconds:
    """Exact rational time for driving the Python reference: its boundary checks (`now - last <= 0.020`,
    `now >= last_valid + 0.25`) then decide exactly as integer milliseconds do in C, instead of by float
    rounding (0.319 - 0.299 > 0.020 in binary floating point). Floats it meets (its constants) are
    read as the decimal they were written as."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = exact(value)

    def __add__(self, other: object) -> ExactSeconds:
        return ExactSeconds(self.value + exact(other))

    __radd__ = __add__

    def __sub__(self, other: object) -> ExactSeconds:
        return ExactSeconds(self.value - exact(other))

    def __rsub__(self, other: object) -> ExactSeconds:
        return ExactSeconds(exact(other) - self.value)

    def __mul__(self, other: object) -> ExactSeconds:
        return ExactSeconds(self.value * exact(other))

    __rmul__ = __mul__

    def __truediv__(self, other: object) -> ExactSeconds:
        return ExactSeconds(self.value / exact(other))

    def __lt__(self, other: object) -> bool:
        return self.value < exact(other)

    def __le__(self, other: object) -> bool:
        return self.value <= exact(other)

    def __gt__(self, other: object) -> bool:
        return self.value > exact(other)

    def __ge__(self, other: object) -> bool:
        return self.value >= exact(other)

    def __round__(self, ndigits: None = None) -> int:
        return round(self.value)


def exact(value: object) -> Fraction:
    if isinstance(value, ExactSeconds):
        return value.value
    if isinstance(value, float):
        return Fraction(repr(value))
    assert isinstance(value, int | Fraction), value
    return Fraction(value)


def split_frames(data: bytes) -> list[bytes]:
    """Consecutive well-formed frames (what McuCore returns) -> one bytes object per frame."""
    frames = []
    while data:
        size = data[1] + 6
        frames.append(data[:size])
        data = data[size:]
    return frames


def random_chunk(rng: random.Random, seq: int) -> bytes:
    """One host write: a few frames, some valid, some broken in every way PROTOCOL.md §4 names."""
    out = bytearray()
    for _ in range(rng.randint(1, 4)):
        speed = rng.choice([0, rng.randint(-1200, 1200), -32768, 32767, 1000, -500])
        message = rng.choice(
            [
                Hello(rng.choice([1, 1, 2])),
                Arm(),
                Disarm(),
                Drive(speed),
                Stop(),
                Heartbeat(),
                StatusRequest(),
            ]
        )
        frame = bytearray(encode(message, (seq + len(out)) % 256))
        kind = rng.random()
        if kind < 0.08:  # one bit flipped anywhere
            frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        elif kind < 0.16:  # cut short
            frame = frame[: rng.randint(1, len(frame) - 1)]
        elif kind < 0.24:  # line noise, with start-of-frame bytes in it
            frame = bytearray(rng.choice([0xA5, rng.randrange(256)]) for _ in range(rng.randint(1, 40)))
        elif kind < 0.30:  # good CRC, but a type the MCU does not know or a wrong length
            type_byte = rng.choice([0x00, 0x08, 0x42, 0x82, 0xFF, 0x04, 0x05, 0x01])
            payload = bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 26])))
            body = bytes((len(payload), type_byte, rng.randrange(256))) + payload
            frame = bytearray(b"\xa5" + body + crc16_ccitt_false(body).to_bytes(2, "little"))
        out += frame
    return bytes(out)


def acks_before_a_discard(events: list[WireFrame | Rejected]) -> bool:
    """Whether one reference call handles a frame and then, in the same batch, a later discard."""
    first_frame = next((i for i, e in enumerate(events) if isinstance(e, WireFrame)), None)
    return first_frame is not None and any(isinstance(e, Rejected) for e in events[first_frame:])


def reference_scenario(rng: random.Random, index: int) -> str | None:
    """A random scenario, answered by the Python reference McuCore, as a vector_runner record.

    None when the reference's answer depends on its batching: McuCore builds its replies after the parser
    has consumed a whole call's input, so an ACK counts discards of bytes *after* the acked frame in that
    call (the C firmware, byte by byte, counts those up to the frame). Bytes are fed one at a time, which
    leaves only a gap-timeout cascade (a truncated candidate with frames behind it) as such a batch."""
    steps: list[tuple[int, bytes]] = []
    t = 0
    for i in range(rng.randint(1, 10)):
        t += rng.choice([0, 1, 2, 5, 19, 20, 21, 22, 40, 49, 50, 51, 120, 249, 250, 251, 300])
        steps.append((t, random_chunk(rng, i * 4)))
    end = t + rng.choice([5, 25, 260])
    core = McuCore(boot_time=ExactSeconds(0))  # type: ignore[arg-type]
    shadow = FrameParser(HOST_TO_MCU)  # sees the same calls, to spot batch-dependent answers
    replies: list[tuple[int, bytes]] = []
    pending = list(steps)
    batch_dependent = False
    for now_ms in range(end + 1):
        now = ExactSeconds(Fraction(now_ms, 1000))
        while pending and pending[0][0] == now_ms:
            for byte in pending.pop(0)[1]:  # one byte at a time, as a UART delivers them
                batch_dependent |= acks_before_a_discard(shadow.feed(bytes((byte,)), now))  # type: ignore[arg-type]
                replies += [(now_ms, f) for f in split_frames(core.feed(bytes((byte,)), now))]  # type: ignore[arg-type]
        batch_dependent |= acks_before_a_discard(shadow.expire(now))  # type: ignore[arg-type]
        replies += [(now_ms, f) for f in split_frames(core.tick(now))]  # type: ignore[arg-type]
    if batch_dependent:
        return None
    timed = " ".join(f"{ts}:{data.hex()}" for ts, data in steps)
    answers = " ".join(f"{ts}:{data.hex()}" for ts, data in replies) or "-"
    final = f"{int(core.state)},{core.motor_left},{core.motor_right}"
    return "\t".join(["scenario", f"random {index}", str(end), timed, answers, final])


def test_c_firmware_logic_matches_the_reference_on_random_streams(built: AvrEmulatorConfig) -> None:
    """Differential test: ~150 seeded random scenarios (valid, corrupt, cut, noisy, unknown, mistimed
    frames; gaps around the 20 ms gap timeout, the 50 ms fault limit and the 250 ms watchdog): the C
    controller must send byte-identical replies at the same millisecond and end in the same state as
    the Python reference firmware."""
    rng = random.Random(2024)
    answered = [reference_scenario(rng, i) for i in range(150)]
    records = [r for r in answered if r is not None]
    assert len(records) >= 140  # only a few fall into the reference's batching quirk
    subprocess.run(["make", "-C", str(FIRMWARE_DIR), "host-test"], capture_output=True, text=True, check=True)
    runner = built.build_path / "host" / "vector_runner"
    result = subprocess.run(
        [str(runner)], input="\n".join(records) + "\n", capture_output=True, text=True, check=False
    )
    failed = [line for line in result.stdout.splitlines() if line.startswith("not ok")]
    assert failed == [] and result.returncode == 0, failed[:5]
    assert f"1..{len(records)}" in result.stdout
    replies = sum(record.split("\t")[4].count(":") for record in records)
    assert replies > 500  # the scenarios exercise the firmware, not just silence


# ------------------------------------------------------------------- the emulated firmware on a pty


def test_boots_disarmed_with_motors_braked_and_refuses_to_drive(emulator: AvrEmulator, host: RawHost) -> None:
    pins = wait_pins(emulator, lambda p: True)
    assert pins.left.braking and pins.right.braking and pins.standby == 1
    ack = host.ack(Drive(500))
    assert ack.result is AckResult.NOT_ARMED
    assert ack.state is FirmwareState.DISARMED and ack.motor_left == 0
    assert last_pins(emulator).left.braking


def test_handshake_reports_the_firmware_constants(host: RawHost) -> None:
    (version,) = host.request(Hello())
    assert version == Version(1, 1, 0, 0, 250, -500, 1000)


def test_round_trip_drives_the_pwm_pins_and_stop_brakes(emulator: AvrEmulator, host: RawHost) -> None:
    host.request(Hello())
    assert host.ack(Arm()).state is FirmwareState.ARMED
    t0 = time.monotonic()
    ack = host.ack(Drive(600))
    rtt = time.monotonic() - t0
    assert (ack.state, ack.motor_left, ack.motor_right) == (FirmwareState.DRIVING, 600, 600)
    assert rtt < 0.1
    pins = wait_pins(emulator, lambda p: p.left.permille > 0)
    assert pins.left == pins.right and pins.left.duty == 6000 and (pins.left.in1, pins.left.in2) == (1, 0)
    ack = host.ack(Drive(-900))
    assert (ack.result, ack.motor_left) == (AckResult.CLAMPED, -500)
    pins = wait_pins(emulator, lambda p: p.left.permille < 0)
    assert pins.left.permille == pins.right.permille == -500 and (pins.left.in1, pins.left.in2) == (0, 1)
    ack = host.ack(Stop())
    assert (ack.state, ack.motor_left) == (FirmwareState.ARMED, 0)
    pins = wait_pins(emulator, lambda p: p.left.braking)
    assert pins.right.braking and pins.left.duty == 10000


def test_command_watchdog_stops_in_real_time(emulator: AvrEmulator, host: RawHost) -> None:
    host.request(Hello())
    host.ack(Arm())
    host.ack(Drive(400))
    (fault,) = host.read(1, timeout_s=30.0)
    fault_seen = emulator.emulated_s()  # the chip's own clock, once the host has the FAULT
    assert isinstance(fault, FaultReport) and fault.code is FaultCode.WATCHDOG and fault.count == 1
    samples = emulator.pin_samples()
    drive_at = next(s for s in samples if s.left.permille > 0).emulated_s
    assert fault_seen - drive_at > 0.22  # ~250 ms of the chip's time (the exact bound: on the pins below)
    brake_at = next(s for s in samples if s.emulated_s > drive_at and s.left.braking).emulated_s
    assert 0.250 <= brake_at - drive_at <= 0.260  # PROTOCOL.md §6: watchdog_ms .. watchdog_ms + 10 ms
    ack = host.ack(Drive(400))
    assert (ack.result, ack.state, ack.watchdog_trips) == (AckResult.NOT_ARMED, FirmwareState.WATCHDOG, 1)


def test_heartbeats_keep_the_car_driving(emulator: AvrEmulator, host: RawHost) -> None:
    host.request(Hello())
    host.ack(Arm())
    host.ack(Drive(300))
    for _ in range(12):  # 12 x ~50 ms, well past the 250 ms watchdog
        time.sleep(0.05)
        ack = host.ack(Heartbeat())
        assert ack.state is FirmwareState.DRIVING and ack.watchdog_trips == 0
    assert last_pins(emulator).left.permille > 0


def test_corrupt_frame_is_counted_and_never_acted_on(emulator: AvrEmulator, host: RawHost) -> None:
    host.request(Hello())
    host.ack(Arm())
    frame = bytearray(encode(Drive(900), 40))
    frame[4] ^= 0x10  # one payload bit: the CRC no longer matches
    host.port.write(bytes(frame))
    (fault,) = host.read(1)
    assert isinstance(fault, FaultReport) and fault.code is FaultCode.CRC_ERROR and fault.count == 1
    ack = host.ack(Heartbeat())
    assert (ack.state, ack.motor_left, ack.discarded) == (FirmwareState.ARMED, 0, 1)
    assert all(s.left.braking for s in emulator.pin_samples())


def test_garbage_counters_match_the_reference_firmware(host: RawHost) -> None:
    """Seeded garbage (with SOF bytes and broken frames in it), then frames: the emulated C firmware and
    the Python reference McuCore, fed the same bytes, end with the same counters and the same state."""
    rng = random.Random(7)
    garbage = bytearray(rng.randrange(256) for _ in range(300))
    for at in rng.sample(range(len(garbage)), 12):
        garbage[at] = 0xA5
    good = encode(Arm(), 1) + encode(Drive(250), 2)
    corrupt = bytearray(encode(Drive(700), 3))
    corrupt[5] ^= 0x80
    stream = bytes(garbage) + good + bytes(corrupt) + bytes(rng.randrange(256) for _ in range(50))
    stream += encode(Heartbeat(), 4)

    host.port.write(stream)
    time.sleep(0.2)  # wire time (~35 ms) plus the 20 ms gap timeout for any trailing candidate
    host.port.reset_input_buffer()
    host.seq = 5
    (status,) = host.request(StatusRequest())
    assert isinstance(status, Status)

    reference = McuCore()
    reference.feed(stream, 0.0)
    reference.tick(0.1)
    c = reference.counters
    expected = (
        c.garbage_bytes,
        c.crc_errors,
        c.oversized,
        c.truncated,
        c.unknown_type,
        c.bad_length,
    )
    got = (
        status.garbage_bytes,
        status.crc_errors,
        status.oversized,
        status.truncated,
        status.unknown_type,
        status.bad_length,
    )
    assert got == expected
    assert sum(got) > 50
    assert (status.state, status.motor_left) == (reference.state, reference.motor_left)


def test_hung_firmware_is_reset_by_the_hardware_watchdog_into_stop(
    emulator: AvrEmulator, host: RawHost
) -> None:
    host.request(Hello())
    host.ack(Arm())
    host.ack(Drive(600))
    wait_pins(emulator, lambda p: p.left.permille > 0)
    hung_emulated = emulator.inject_hang()
    host.send(Heartbeat())
    assert host.read(1, timeout_s=0.05) == []  # the main loop no longer answers
    pins = wait_pins(emulator, lambda p: p.left.braking, timeout_s=30.0)
    assert pins.emulated_s - hung_emulated < 0.5  # in the chip's time (was: wall time)
    assert pins.right.braking
    assert 0.110 <= pins.emulated_s - hung_emulated <= 0.150  # WDTO_120MS: 16384 cycles of 128 kHz
    host.port.reset_input_buffer()
    ack = host.ack(Heartbeat())
    assert (ack.state, ack.motor_left) == (FirmwareState.DISARMED, 0)  # rebooted: DISARMED, motors off
    assert "hang injected" in emulator.log_text()


def test_a_flood_of_requests_does_not_starve_the_hardware_watchdog(
    emulator: AvrEmulator, host: RawHost
) -> None:
    """Each STATUS reply (31 bytes) takes five times its request (6 bytes) on the wire: a host flooding
    requests keeps the receive ring busy, and the main loop must still pet the hardware watchdog.

    Measured in emulated time: 600 ms of the chip's clock after the flood, however long that takes on a
    busy machine; replies to the flood still on their way are skipped, not mistaken for the answer."""
    host.request(Hello())
    host.ack(Arm())
    flood_at = emulator.emulated_s()
    host.port.write(b"".join(encode(StatusRequest(), i % 256) for i in range(2, 600)))  # 310 ms of wire
    wait_emulated(emulator, flood_at + 0.6)
    host.port.reset_input_buffer()
    ack = next_ack(host, Heartbeat())
    assert ack.state in (FirmwareState.ARMED, FirmwareState.WATCHDOG)  # not rebooted (DISARMED)
    (status,) = host.request(StatusRequest())
    assert isinstance(status, Status) and status.uptime_ms > 600


def test_host_can_close_and_reopen_the_port(emulator: AvrEmulator) -> None:
    first = RawHost(emulator.path)
    first.request(Hello())
    first.close()
    time.sleep(0.05)
    second = RawHost(emulator.path)
    try:
        (version,) = second.request(Hello())
        assert isinstance(version, Version)
    finally:
        second.close()


def test_emulated_time_tracks_wall_time(built: AvrEmulatorConfig) -> None:
    avr = AvrEmulator(AvrEmulatorConfig(build=False))
    started = time.monotonic()  # before the harness starts its own clock
    with avr:
        time.sleep(0.6)
    wall = time.monotonic() - started  # after it stopped
    stats = avr.stats
    assert stats is not None
    assert stats.emulated_s <= wall + 0.001  # paced: never ahead of wall time
    # and behind only by the lag it reports (the machine was too busy to keep up)
    assert stats.emulated_s >= 0.6 - stats.max_lag_ms / 1000.0 - 0.02
    assert stats.max_lag_ms >= 0.0  # how far it fell behind measures the machine: reported, not bounded


def test_missing_firmware_is_a_clear_error(tmp_path: Path) -> None:
    config = AvrEmulatorConfig(build=False, build_dir=tmp_path / "nothing")
    with pytest.raises(LinkError, match=r"firmware.elf is missing: build it with `make -C"):
        AvrEmulator(config).open()
