"""The real AVR firmware, running in an emulated ATmega328P, behind a pty: the "avr" microcontroller.

`AvrEmulator` builds `firmware_bridge/firmware` (avr-gcc, and gcc + libsimavr for the harness) when its
outputs are missing or stale, starts `avr_pty_harness FIRMWARE.elf`, and hands out the pty path that a
`SerialLink` opens exactly like `/dev/ttyACM0`. The same ELF file is what `make flash` writes to a board.

Emulated time is paced to wall time by the harness (see `firmware/sim/avr_pty_harness.c`), so the
firmware's 250 ms command watchdog and 120 ms hardware watchdog are real-time; `stats.max_lag_ms` says how
far emulation ever fell behind (a loaded machine).

Needs the Debian packages gcc-avr, avr-libc, simavr and libsimavr-dev (`make system-packages`).
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from firmware_bridge.errors import LinkError

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
DEBIAN_PACKAGES = ("gcc-avr", "avr-libc", "simavr", "libsimavr-dev")
PWM_FULL = 255
SPEED_FULL_SCALE = 1000

# What each build tool is and which Debian package brings it.
_REQUIRED_FILES: tuple[tuple[str, str], ...] = (
    ("avr-gcc", "gcc-avr"),
    ("avr-objcopy", "binutils-avr (pulled in by gcc-avr)"),
    ("avr-size", "binutils-avr (pulled in by gcc-avr)"),
    ("gcc", "gcc"),
    ("make", "make"),
)
_REQUIRED_PATHS: tuple[tuple[str, str], ...] = (
    ("/usr/lib/avr/include/avr/io.h", "avr-libc"),
    ("/usr/include/simavr/sim_avr.h", "libsimavr-dev"),
)
_STATS_RE = re.compile(
    r"stopped \(state (?P<state>\d+)\) after (?P<emulated>[\d.]+) s emulated; "
    r"rx (?P<rx>\d+) tx (?P<tx>\d+) bytes; LAG max_ms=(?P<lag>[\d.]+)"
)


def missing_tools() -> list[str]:
    """What is missing to build and run the emulated firmware, as "tool (Debian package)" strings."""
    missing = [f"{tool} ({package})" for tool, package in _REQUIRED_FILES if shutil.which(tool) is None]
    missing += [f"{path} ({package})" for path, package in _REQUIRED_PATHS if not Path(path).exists()]
    return missing


def install_hint() -> str:
    return (
        f"install them with `sudo apt-get install -y {' '.join(DEBIAN_PACKAGES)}` (or `make system-packages`)"
    )


@dataclass(frozen=True, slots=True)
class AvrEmulatorConfig:
    """Where the firmware lives and how the harness runs."""

    firmware_dir: Path = FIRMWARE_DIR
    build_dir: Path | None = None  # None: firmware_dir / "build"
    build: bool = True  # run `make` first (a no-op when everything is up to date)
    paced: bool = True  # pace emulated time to wall time (False: as fast as the CPU allows)
    pins_trace: Path | None = None  # append the motor pins' changes to this file
    start_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0

    @property
    def build_path(self) -> Path:
        return self.build_dir if self.build_dir is not None else self.firmware_dir / "build"

    @property
    def elf(self) -> Path:
        return self.build_path / "firmware.elf"

    @property
    def harness(self) -> Path:
        return self.build_path / "sim" / "avr_pty_harness"


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """The harness's closing report."""

    emulated_s: float
    rx_bytes: int
    tx_bytes: int
    max_lag_ms: float


@dataclass(frozen=True, slots=True)
class MotorPins:
    """One motor's driver inputs as the emulated chip drives them."""

    pwm: int  # effective duty 0..255
    in1: int
    in2: int

    @property
    def braking(self) -> bool:
        return self.in1 == 1 and self.in2 == 1

    @property
    def permille(self) -> int:
        """Signed output in permille of full throttle (+ forward), 0 when braking or coasting."""
        if self.in1 == self.in2:
            return 0
        magnitude = round(self.pwm * SPEED_FULL_SCALE / PWM_FULL)
        return magnitude if self.in1 else -magnitude


@dataclass(frozen=True, slots=True)
class PinSample:
    """A change of the motor driver pins, read from the emulated I/O registers."""

    emulated_s: float
    wall_s: float  # since the harness started
    left: MotorPins
    right: MotorPins
    standby: int

    @classmethod
    def parse(cls, line: str) -> PinSample:
        parts = line.split()
        # "<emu_us> <wall_us> L <pwm> <in1> <in2> R <pwm> <in1> <in2> STBY <s>"
        if len(parts) != 12 or parts[2] != "L" or parts[6] != "R" or parts[10] != "STBY":
            raise ValueError(f"not a pin trace line: {line!r}")
        n = [int(p) for i, p in enumerate(parts) if i not in (2, 6, 10)]
        return cls(n[0] / 1e6, n[1] / 1e6, MotorPins(n[2], n[3], n[4]), MotorPins(n[5], n[6], n[7]), n[8])


def build_firmware(config: AvrEmulatorConfig) -> None:
    """`make firmware harness` in the firmware folder, serialised by a lock file (tests run in parallel)."""
    missing = missing_tools()
    if missing:
        raise LinkError(f"the AVR emulator needs {', '.join(missing)}: {install_hint()}")
    config.build_path.mkdir(parents=True, exist_ok=True)
    with open(config.build_path / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(
            ["make", "-C", str(config.firmware_dir), f"BUILD={config.build_path}", "firmware", "harness"],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise LinkError(
            f"building the AVR firmware in {config.firmware_dir} failed (make exit {result.returncode}): "
            + " | ".join(tail)
        )


class AvrEmulator:
    """The emulated-firmware microcontroller: `open()` starts it, `port` is its pty, `close()` stops it.

    Same lifecycle as the Python `VirtualMcu`: a context manager; a failed `open()` leaves nothing running.
    """

    def __init__(self, config: AvrEmulatorConfig | None = None) -> None:
        self.config = config or AvrEmulatorConfig()
        self._process: subprocess.Popen[str] | None = None
        self._port: str | None = None
        self._log: IO[str] | None = None
        self._stats: EmulatorStats | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> str:
        """The pty path to open with pyserial (115200 8N1)."""
        if self._port is None:
            raise LinkError("the AVR emulator is not running: call open() first")
        return self._port

    @property
    def path(self) -> str:
        """Alias of `port`, the name `VirtualMcu` uses."""
        return self.port

    @property
    def error(self) -> str | None:
        """Why the harness died while it should be running; None while all is well or after close()."""
        process = self._process
        if process is None or process.poll() is None:
            return None
        return f"the AVR harness exited with status {process.returncode}: {self.log_text().strip()[-300:]}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def stats(self) -> EmulatorStats | None:
        """The harness's closing report, after close()."""
        return self._stats

    def open(self) -> None:
        if self._process is not None:
            raise LinkError("the AVR emulator is already running")
        config = self.config
        if config.build:
            build_firmware(config)
        for path in (config.elf, config.harness):
            if not path.exists():
                raise LinkError(f"{path} is missing: build it with `make -C {config.firmware_dir}`")
        command = [str(config.harness), str(config.elf)]
        if not config.paced:
            command.append("--free-run")
        if config.pins_trace is not None:
            command += ["--pins", str(config.pins_trace)]
        # lives as long as the harness; close() closes it
        self._log = tempfile.TemporaryFile(mode="w+", prefix="avr_pty_harness-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True
        )
        try:
            self._port = self._read_port(self._process, config.start_timeout_s)
        except BaseException:
            self.close()
            raise

    def _read_port(self, process: subprocess.Popen[str], timeout_s: float) -> str:
        """The "PTY <path>" line; anything simavr prints before it goes to the log."""
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([process.stdout], [], [], left)
                line = process.stdout.readline() if ready else ""
                if line.startswith("PTY "):
                    return line.split(maxsplit=1)[1].strip()
                if not line:  # EOF: the harness exited
                    break
                if self._log is not None:
                    self._log.write(line)
        finally:
            process.stdout.close()
        raise LinkError(
            f"the AVR harness {self.config.harness} did not report its pty within {timeout_s:.0f} s: "
            f"{self.log_text().strip()[-300:] or 'no output'}"
        )

    def close(self) -> None:
        process, self._process = self._process, None
        self._port = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.config.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._stats = self._parse_stats(self.log_text())
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ test hooks
    def inject_hang(self) -> None:
        """Hang the firmware's main loop (interrupts keep running); the hardware watchdog must reset it."""
        if self._process is None or self._process.poll() is not None:
            raise LinkError("the AVR emulator is not running")
        self._process.send_signal(signal.SIGUSR1)

    def pin_samples(self) -> list[PinSample]:
        """Every motor pin change so far (needs `pins_trace`)."""
        trace = self.config.pins_trace
        if trace is None:
            raise LinkError("no pin trace: construct the emulator with AvrEmulatorConfig(pins_trace=PATH)")
        if not trace.exists():
            return []
        return [PinSample.parse(line) for line in trace.read_text().splitlines() if line.strip()]

    def log_text(self) -> str:
        """What the harness wrote to stderr so far."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read()
        self._log.seek(0, os.SEEK_END)
        return text

    @staticmethod
    def _parse_stats(log: str) -> EmulatorStats | None:
        match = _STATS_RE.search(log)
        if match is None:
            return None
        return EmulatorStats(
            emulated_s=float(match["emulated"]),
            rx_bytes=int(match["rx"]),
            tx_bytes=int(match["tx"]),
            max_lag_ms=float(match["lag"]),
        )
