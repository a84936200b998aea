"""Link figures of the emulated AVR firmware next to the Python virtual MCU, measured side by side in one run.

    .venv/bin/python firmware_bridge/firmware/sim/bench_avr_link.py [--json]

(`run() -> dict` has the `bench/bench_<name>.py` shape, so it can move there as `python -m bench avr_link`.)

- round trip: DRIVE written -> its ACK parsed by the host link (SerialLink), p50 / p99;
- command watchdog: last valid frame -> motors off (virtual: its core; AVR: the emulated H-bridge pins, in
  emulated time, and the FAULT's wall-clock arrival);
- hardware watchdog (AVR only): main loop hung -> pins braked, in emulated time;
- harness CPU use (% of one core) idle and while the host sends DRIVE at 30 Hz, and the worst lag of
  emulated behind wall time.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from firmware_bridge.avr_emulator import AvrEmulator, AvrEmulatorConfig, build_firmware
from firmware_bridge.host import Command
from firmware_bridge.link import SerialLink
from firmware_bridge.virtual_mcu import VirtualMcu

ROUND_TRIPS = 200
RATE_HZ = 30.0
CPU_WINDOW_S = 3.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def round_trips(path: str) -> list[float]:
    rtts: list[float] = []
    with SerialLink(path) as link:
        link.handshake()
        link.arm()
        for i in range(ROUND_TRIPS):
            ack = link.wait_ack(link.send(Command.drive(0.2 + 0.1 * (i % 3))), 1.0)
            if ack is not None and ack.rtt_s is not None:
                rtts.append(ack.rtt_s * 1000.0)
            time.sleep(0.005)
    return rtts


def watchdog_ms(path: str, motors_off: Callable[[], bool]) -> float:
    """Wall ms from the last ACK to the motors being off, polled every 0.5 ms."""
    with SerialLink(path) as link:
        link.handshake()
        link.arm()
        link.wait_ack(link.send(Command.drive(0.4)), 1.0)
        acked = time.monotonic()
        while not motors_off() and time.monotonic() - acked < 2.0:
            time.sleep(0.0005)
        return (time.monotonic() - acked) * 1000.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def harness_cpu_percent(avr: AvrEmulator, drive: bool) -> float:
    process = avr._process  # the harness subprocess
    assert process is not None
    with SerialLink(avr.path) as link:
        link.handshake()
        link.arm()
        before, t0 = cpu_seconds(process.pid), time.monotonic()
        while time.monotonic() - t0 < CPU_WINDOW_S:
            if drive:
                link.send(Command.drive(0.5))
            else:
                link.heartbeat()  # keeps the watchdog fed; 1 frame per period either way
            time.sleep(1.0 / RATE_HZ)
        return 100.0 * (cpu_seconds(process.pid) - before) / (time.monotonic() - t0)


def run() -> dict[str, float]:
    build_firmware(AvrEmulatorConfig())
    results: dict[str, float] = {}
    with VirtualMcu() as mcu:
        rtt = round_trips(mcu.path)
        results["virtual_rtt_p50_ms"] = statistics.median(rtt)
        results["virtual_rtt_p99_ms"] = percentile(rtt, 0.99)
    with VirtualMcu() as mcu:
        results["virtual_watchdog_wall_ms"] = watchdog_ms(mcu.path, lambda: mcu.snapshot().motor_left == 0)
    with AvrEmulator(AvrEmulatorConfig(build=False)) as avr:
        rtt = round_trips(avr.path)
        results["avr_rtt_p50_ms"] = statistics.median(rtt)
        results["avr_rtt_p99_ms"] = percentile(rtt, 0.99)
    with AvrEmulator(AvrEmulatorConfig(build=False)) as avr:
        results["avr_watchdog_wall_ms"] = watchdog_ms(avr.path, lambda: avr.snapshot().motor_left == 0)
        samples = avr.pin_samples()
        on = next(s for s in samples if s.left.permille > 0)
        off = next(s for s in samples if s.emulated_s > on.emulated_s and s.left.braking)
        results["avr_watchdog_emulated_ms"] = (off.emulated_s - on.emulated_s) * 1000.0
        with SerialLink(avr.path) as link:
            link.handshake()
            link.arm()
            link.wait_ack(link.send(Command.drive(0.6)), 1.0)
            hung_at = avr.inject_hang()
            time.sleep(0.4)
        reset = next(s for s in avr.pin_samples() if s.emulated_s > hung_at and s.left.braking)
        results["avr_hw_watchdog_emulated_ms"] = (reset.emulated_s - hung_at) * 1000.0
    with AvrEmulator(AvrEmulatorConfig(build=False)) as avr:
        results["avr_harness_cpu_idle_pct"] = harness_cpu_percent(avr, drive=False)
        results["avr_harness_cpu_30hz_pct"] = harness_cpu_percent(avr, drive=True)
    stats = avr.stats
    results["avr_max_lag_ms"] = stats.max_lag_ms if stats is not None else float("nan")
    print(f"{'figure':34} {'value':>9}")
    for name, value in results.items():
        print(f"{name:34} {value:9.2f}")
    print(
        f"round trip AVR/virtual (p50): {results['avr_rtt_p50_ms'] / results['virtual_rtt_p50_ms']:.2f}x "
        "(the AVR link adds the emulated 115200 baud wire: 8 + 18 bytes ~ 2.4 ms)"
    )
    return results


if __name__ == "__main__":
    figures = run()
    if "--json" in sys.argv:
        print(json.dumps(figures))
