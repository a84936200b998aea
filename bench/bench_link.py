"""Firmware link: command-to-ACK round trip over a real pty, the cost of send(), and frame sizes.

Side by side in one run: the same DRIVE command through SerialLink + VirtualMcu over a pty (threads, the
kernel's pty, pyserial), through LoopbackLink (same codec and firmware core, in-process), and the bare
codec. A real 115200-baud UART adds the wire time printed at the end (bytes x 10 bits / 115200).
"""

from __future__ import annotations

import statistics
import time

from firmware_bridge.host import Command, LinkFaultKind
from firmware_bridge.link import SerialLink
from firmware_bridge.loopback import LoopbackLink
from firmware_bridge.mcu import FirmwareConfig
from firmware_bridge.protocol import (
    MCU_TO_HOST,
    MESSAGE_TYPES,
    Ack,
    AckResult,
    Drive,
    FirmwareState,
    FrameParser,
    MsgType,
    decode,
    encode,
    frame_size,
)
from firmware_bridge.virtual_mcu import VirtualMcu

ROUND_TRIPS = 3000
BAUD = 115200
WATCHDOG_TRIPS = 20


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


def summary_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": percentile(ordered, 0.50) * 1e3,
        "p99_ms": percentile(ordered, 0.99) * 1e3,
        "max_ms": ordered[-1] * 1e3,
        "mean_ms": statistics.fmean(ordered) * 1e3,
    }


def pty_round_trips(count: int) -> tuple[list[float], list[float]]:
    """RTT of each DRIVE (send -> ACK matched on the reader thread) and the time send() itself took."""
    rtts: list[float] = []
    send_costs: list[float] = []
    with VirtualMcu() as mcu, SerialLink(mcu.path) as link:
        link.handshake()
        link.arm()
        for i in range(count):
            speed = 0.3 + 0.4 * (i % 2)
            t0 = time.perf_counter()
            sent = link.send(Command.drive(speed))
            send_costs.append(time.perf_counter() - t0)
            ack = link.wait_ack(sent, 1.0)
            if ack is None or ack.rtt_s is None:
                raise RuntimeError(f"DRIVE seq {sent.seq} not acknowledged within 1 s")
            rtts.append(ack.rtt_s)
        link.stop_and_wait()
    return rtts, send_costs


def loopback_round_trips(count: int) -> list[float]:
    costs: list[float] = []
    with LoopbackLink(clock=time.monotonic) as link:
        link.handshake()
        link.arm()
        for i in range(count):
            t0 = time.perf_counter()
            ack = link.wait_ack(link.send(Command.drive(0.3 + 0.4 * (i % 2))))
            costs.append(time.perf_counter() - t0)
            if ack is None:
                raise RuntimeError("loopback ACK missing")
    return costs


def watchdog_overshoots(trips: int, watchdog_ms: int = 50) -> list[float]:
    """How long after its timeout the virtual firmware's watchdog FAULT reaches the host (seconds).

    Measured from just before the last DRIVE is written, so it is an upper bound of the firmware's own
    lateness (it includes the pty and the host's reader thread)."""
    overshoots: list[float] = []
    with VirtualMcu(FirmwareConfig(watchdog_ms=watchdog_ms)) as mcu, SerialLink(mcu.path) as link:
        link.handshake()
        for _ in range(trips):
            link.arm()
            t_sent = time.monotonic()
            link.send(Command.drive(0.5))
            while not link.health(time.monotonic()).has(LinkFaultKind.WATCHDOG_STOP):
                if time.monotonic() - t_sent > 1.0:
                    raise RuntimeError("the watchdog did not fire within 1 s")
                time.sleep(0.0002)
            overshoots.append(time.monotonic() - t_sent - watchdog_ms / 1000.0)
    return overshoots


def codec_costs(count: int) -> tuple[list[float], list[float]]:
    encode_costs: list[float] = []
    decode_costs: list[float] = []
    ack = Ack(1, MsgType.DRIVE, AckResult.OK, FirmwareState.DRIVING, 600, 600, 0, 0)
    parser = FrameParser(MCU_TO_HOST)
    for i in range(count):
        t0 = time.perf_counter()
        encode(Drive(600), i % 256)
        t1 = time.perf_counter()
        raw = encode(ack, i % 256)
        t2 = time.perf_counter()
        parser.feed(raw)
        t3 = time.perf_counter()
        encode_costs.append(t1 - t0)
        decode_costs.append(t3 - t2)
    decode(raw)  # one strict decode, so a broken codec fails the bench loudly
    return encode_costs, decode_costs


def run() -> dict[str, object]:
    sizes = {cls.TYPE.name: frame_size(cls) for cls in MESSAGE_TYPES.values()}
    print("encoded frame sizes (bytes, SOF + LEN + TYPE + SEQ + payload + CRC-16):")
    for name, size in sizes.items():
        print(f"  {name:<15} {size:>3}   {size * 10 / BAUD * 1e3:5.2f} ms on the wire at {BAUD} 8N1")

    rtts, send_costs = pty_round_trips(ROUND_TRIPS)
    loop_costs = loopback_round_trips(ROUND_TRIPS)
    enc, dec = codec_costs(ROUND_TRIPS)
    overshoot = summary_ms(watchdog_overshoots(WATCHDOG_TRIPS))
    rows = {
        "pty: DRIVE -> ACK round trip (SerialLink + VirtualMcu)": summary_ms(rtts),
        "pty: send() call (what the control loop pays)": summary_ms(send_costs),
        "in-process: DRIVE -> ACK (LoopbackLink + McuCore)": summary_ms(loop_costs),
        "codec: encode DRIVE": summary_ms(enc),
        "codec: parse ACK (streaming parser)": summary_ms(dec),
    }
    print(f"\n{ROUND_TRIPS} commands each, sequential (one command in flight):")
    print(f"  {'':<56} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, s in rows.items():
        print(f"  {name:<56} {s['p50_ms']:8.3f} {s['p99_ms']:8.3f} {s['max_ms']:8.3f}")
    pty_p50 = rows["pty: DRIVE -> ACK round trip (SerialLink + VirtualMcu)"]["p50_ms"]
    loop_p50 = rows["in-process: DRIVE -> ACK (LoopbackLink + McuCore)"]["p50_ms"]
    wire_ms = (sizes["DRIVE"] + sizes["ACK"]) * 10 / BAUD * 1e3
    print(
        f"\n  watchdog (50 ms) FAULT seen by the host after its timeout, {WATCHDOG_TRIPS} trips: "
        f"p50 +{overshoot['p50_ms']:.2f} ms, max +{overshoot['max_ms']:.2f} ms"
    )
    print(f"  pty round trip / in-process round trip (p50): {pty_p50 / loop_p50:.1f}x")
    print(f"  a real UART at {BAUD} baud adds {wire_ms:.2f} ms of wire time per DRIVE + ACK")
    return {
        "frame_bytes": sizes,
        "round_trips": ROUND_TRIPS,
        "pty_rtt": rows["pty: DRIVE -> ACK round trip (SerialLink + VirtualMcu)"],
        "pty_send_call": rows["pty: send() call (what the control loop pays)"],
        "loopback_rtt": rows["in-process: DRIVE -> ACK (LoopbackLink + McuCore)"],
        "codec_encode_drive": rows["codec: encode DRIVE"],
        "codec_parse_ack": rows["codec: parse ACK (streaming parser)"],
        "pty_over_loopback_p50": pty_p50 / loop_p50,
        "watchdog_overshoot": overshoot,
        "uart_wire_ms_drive_plus_ack": wire_ms,
    }


if __name__ == "__main__":
    run()
