"""The real AVR firmware, running in an emulated ATmega328P, behind a pty: the "avr" microcontroller.

`AvrEmulator` builds `firmware_bridge/firmware` (avr-gcc, and gcc + libsimavr for the harness) when its
outputs are missing or stale, starts `avr_pty_harness FIRMWARE.elf`, and hands out a port path that a
`SerialLink` opens exactly like `/dev/ttyACM0`. The release ELF is the same file `make flash` writes to a
board; a `FirmwareConfig` other than the default builds a variant ELF with those constants compiled in.

It has the same surface as the Python `VirtualMcu` (path, pty_name, start/stop or open/close, snapshot,
state, motor_fraction, set_faults, vanish, reappear, error), so one test body can run against both. What
it reports is read from outside the chip: the motor outputs from the emulated H-bridge pins (PWM duty and
direction), the state from a register the firmware mirrors it into; wire faults happen in the harness, on
the bytes between the pty and the emulated UART.

Emulated time is paced to wall time by the harness (see `firmware/sim/avr_pty_harness.c`), so the
firmware's command watchdog and 120 ms hardware watchdog are real-time; `stats.max_lag_ms` says how far
emulation ever fell behind (a loaded machine).

Needs the Debian packages gcc-avr, avr-libc, simavr and libsimavr-dev (`make system-packages`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from firmware_bridge.errors import LinkError
from firmware_bridge.mcu import FirmwareConfig
from firmware_bridge.protocol import SPEED_FULL_SCALE, FirmwareState
from firmware_bridge.virtual_mcu import FaultInjection

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
DEBIAN_PACKAGES = ("gcc-avr", "avr-libc", "simavr", "libsimavr-dev")
DUTY_FULL = 10000  # the pin trace reports PWM duty in 1/10000
CONTROL_TIMEOUT_S = 2.0

# What each build tool is and which Debian package brings it.
_REQUIRED_TOOLS: tuple[tuple[str, str], ...] = (
    ("avr-gcc", "gcc-avr"),
    ("avr-objcopy", "binutils-avr, with gcc-avr"),
    ("avr-size", "binutils-avr, with gcc-avr"),
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
    missing = [f"{tool} ({package})" for tool, package in _REQUIRED_TOOLS if shutil.which(tool) is None]
    missing += [f"{path} ({package})" for path, package in _REQUIRED_PATHS if not Path(path).exists()]
    return missing


def install_hint() -> str:
    return (
        f"install them with `sudo apt-get install -y {' '.join(DEBIAN_PACKAGES)}` (or `make system-packages`)"
    )


def firmware_defines(firmware: FirmwareConfig) -> list[str]:
    """The -D flags that compile `firmware`'s constants into a variant build (see src/controller.h)."""
    major, minor, patch = firmware.firmware_version
    return [
        f"-DWATCHDOG_MS={firmware.watchdog_ms}",
        f"-DSPEED_MIN={firmware.speed_min}",
        f"-DSPEED_MAX={firmware.speed_max}",
        f"-DFIRMWARE_MAJOR={major}",
        f"-DFIRMWARE_MINOR={minor}",
        f"-DFIRMWARE_PATCH={patch}",
        f"-DDISCARD_FAULT_INTERVAL_MS={firmware.discard_fault_interval_ms}",
    ]


@dataclass(frozen=True, slots=True)
class AvrEmulatorConfig:
    """Where the firmware lives and how the harness runs."""

    firmware: FirmwareConfig = field(default_factory=FirmwareConfig)  # the default: the release build
    firmware_dir: Path = FIRMWARE_DIR
    build_dir: Path | None = None  # None: firmware_dir / "build"
    build: bool = True  # run `make` first (a no-op when everything is up to date)
    paced: bool = True  # pace emulated time to wall time (False: as fast as the CPU allows)
    link_path: Path | None = None  # the stable port symlink; None: one in a private temporary folder
    pins_trace: Path | None = None  # where the pin trace goes; None: a private temporary file
    start_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0

    @property
    def build_path(self) -> Path:
        return self.build_dir if self.build_dir is not None else self.firmware_dir / "build"

    @property
    def is_release(self) -> bool:
        return self.firmware == FirmwareConfig()

    @property
    def firmware_build_path(self) -> Path:
        """The release build folder, or a folder per variant of the compiled-in constants."""
        if self.is_release:
            return self.build_path
        f = self.firmware
        key = (
            f"wd{f.watchdog_ms}_speed{f.speed_min}..{f.speed_max}_v{'.'.join(map(str, f.firmware_version))}"
            f"_df{f.discard_fault_interval_ms}"
        )
        return self.build_path / "variants" / key

    @property
    def elf(self) -> Path:
        return self.firmware_build_path / "firmware.elf"

    @property
    def harness(self) -> Path:
        return self.build_path / "sim" / "avr_pty_harness"


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """The harness's closing report."""

    emulated_s: float
    rx_bytes: int  # bytes the emulated UART received
    tx_bytes: int  # bytes the emulated UART sent
    max_lag_ms: float  # how far emulated time ever fell behind wall time


@dataclass(frozen=True, slots=True)
class MotorPins:
    """One motor's driver inputs as the emulated chip drives them."""

    duty: int  # effective PWM duty in 1/10000 (10000 = always on)
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
        magnitude = round(self.duty * SPEED_FULL_SCALE / DUTY_FULL)
        return magnitude if self.in1 else -magnitude


BRAKED = MotorPins(DUTY_FULL, 1, 1)


@dataclass(frozen=True, slots=True)
class PinSample:
    """A change of the motor driver pins or of the firmware state, read from the emulated registers."""

    emulated_s: float
    wall_s: float  # since the harness started
    left: MotorPins
    right: MotorPins
    standby: int
    state: int  # the protocol state the firmware mirrors into GPIOR1

    @classmethod
    def parse(cls, line: str) -> PinSample:
        parts = line.split()
        # "<emu_us> <wall_us> L <duty> <in1> <in2> R <duty> <in1> <in2> STBY <s> S <state>"
        if len(parts) != 14 or (parts[2], parts[6], parts[10], parts[12]) != ("L", "R", "STBY", "S"):
            raise ValueError(f"not a pin trace line: {line!r}")
        n = [int(p) for i, p in enumerate(parts) if i not in (2, 6, 10, 12)]
        return cls(
            n[0] / 1e6, n[1] / 1e6, MotorPins(n[2], n[3], n[4]), MotorPins(n[5], n[6], n[7]), n[8], n[9]
        )


@dataclass(frozen=True, slots=True)
class AvrSnapshot:
    """What the emulated board shows at one instant (the `VirtualMcu.snapshot()` fields it can know)."""

    state: FirmwareState
    motor_left: int  # permille, from the H-bridge pins
    motor_right: int
    at: float  # time.monotonic() of the snapshot

    @property
    def motor_fraction(self) -> float:
        return (self.motor_left + self.motor_right) / (2.0 * SPEED_FULL_SCALE)


class _PinTrace:
    """Reads the harness's pin trace file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = ""
        self.samples: list[PinSample] = []

    def update(self) -> list[PinSample]:
        try:
            with open(self.path) as trace:
                trace.seek(self._offset)
                text = trace.read()
                self._offset = trace.tell()
        except FileNotFoundError:
            return self.samples
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        self.samples += [PinSample.parse(line) for line in lines if line.strip()]
        return self.samples


def _run_make(config: AvrEmulatorConfig, args: list[str]) -> None:
    result = subprocess.run(
        ["make", "-C", str(config.firmware_dir), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise LinkError(
            f"building the AVR firmware in {config.firmware_dir} failed (make exit {result.returncode}): "
            + " | ".join(tail)
        )


def build_firmware(config: AvrEmulatorConfig) -> None:
    """`make firmware harness` (and the variant ELF), serialised by a lock file across processes."""
    missing = missing_tools()
    if missing:
        raise LinkError(f"the AVR emulator needs {', '.join(missing)}: {install_hint()}")
    config.build_path.mkdir(parents=True, exist_ok=True)
    with open(config.build_path / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run_make(config, [f"BUILD={config.build_path}", "firmware", "harness"])
        if not config.is_release:
            defines = " ".join(firmware_defines(config.firmware))
            _run_make(config, [f"BUILD={config.firmware_build_path}", f"FW_DEFS={defines}", "firmware"])


class AvrEmulator:
    """The emulated-firmware microcontroller: `open()` starts it, `path` is its port, `close()` stops it.

    Same lifecycle as `VirtualMcu` (also `start()` / `stop()`): a context manager; a failed `open()` leaves
    nothing running.
    """

    def __init__(self, config: AvrEmulatorConfig | FirmwareConfig | None = None, *, seed: int = 0) -> None:
        if isinstance(config, FirmwareConfig):
            config = AvrEmulatorConfig(firmware=config)
        self.config = config or AvrEmulatorConfig()
        self.seed = seed  # of the wire-fault random generator
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: Path | None = None
        self._link_path: Path | None = None
        self._pty_name: str | None = None
        self._trace: _PinTrace | None = None
        self._log: IO[str] | None = None
        self._stdout_buffer = b""
        self._stats: EmulatorStats | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def path(self) -> str:
        """The stable port path (a symlink to the current pty) to open with pyserial, 115200 8N1."""
        if self._link_path is None or self._process is None:
            raise LinkError("the AVR emulator is not running: call open() first")
        return str(self._link_path)

    @property
    def port(self) -> str:
        return self.path

    @property
    def pty_name(self) -> str | None:
        """The current pty slave (/dev/pts/N); None while vanished."""
        return self._pty_name

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def error(self) -> str | None:
        """Why the harness died while it should be running; None while all is well or after close()."""
        process = self._process
        if process is None or process.poll() is None:
            return None
        return f"the AVR harness exited with status {process.returncode}: {self.log_text().strip()[-300:]}"

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
        self._tmpdir = Path(tempfile.mkdtemp(prefix="avr-emulator-"))
        self._link_path = config.link_path or self._tmpdir / "ttyAVR"
        trace_path = config.pins_trace or self._tmpdir / "pins.txt"
        self._trace = _PinTrace(trace_path)
        command = [str(config.harness), str(config.elf), "--control", "--link", str(self._link_path)]
        command += ["--pins", str(trace_path)]
        if not config.paced:
            command.append("--free-run")
        # lives as long as the harness; close() closes it
        self._log = tempfile.TemporaryFile(mode="w+", prefix="avr_pty_harness-", suffix=".log")  # noqa: SIM115
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log
        )
        try:
            line = self._read_line(config.start_timeout_s)
            if not line.startswith("PTY "):
                raise LinkError(
                    f"the AVR harness {config.harness} did not report its pty within "
                    f"{config.start_timeout_s:.0f} s: {self.log_text().strip()[-300:] or 'no output'}"
                )
            self._pty_name = line.split(maxsplit=1)[1]
        except BaseException:
            self.close()
            raise

    def start(self) -> Self:
        self.open()
        return self

    def close(self) -> None:
        process, self._process = self._process, None
        self._pty_name = None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(self.config.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
            self._stats = self._parse_stats(self.log_text())
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._link_path = None

    def stop(self) -> None:
        self.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ control channel
    def _read_line(self, timeout_s: float) -> str:
        """One line from the harness's stdout (the PTY line or a command's answer)."""
        process = self._process
        assert process is not None and process.stdout is not None
        fd = process.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._stdout_buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                return ""
            chunk = os.read(fd, 4096)
            if not chunk:  # the harness exited
                return ""
            self._stdout_buffer += chunk
        line, _, self._stdout_buffer = self._stdout_buffer.partition(b"\n")
        return line.decode(errors="replace").strip()

    def _command(self, line: str) -> str:
        process = self._process
        if process is None or process.poll() is not None or process.stdin is None:
            raise LinkError(f"the AVR emulator is not running ({self.error or 'not started'})")
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()
        answer = self._read_line(CONTROL_TIMEOUT_S)
        if not answer.startswith("OK"):
            raise LinkError(f"AVR harness command {line!r} failed: {answer or 'no answer'}")
        return answer

    # ------------------------------------------------------------------ VirtualMcu-compatible hooks
    def set_faults(self, faults: FaultInjection) -> None:
        """Drop/corrupt bytes on the emulated wire (seeded by `seed`), or mute every byte to the host."""
        if faults.reply_delay_s:
            raise LinkError("the AVR harness cannot delay replies (reply_delay_s); use the virtual MCU")
        self._command(
            f"faults {faults.drop_rx} {faults.corrupt_rx} {faults.drop_tx} {faults.corrupt_tx} "
            f"{int(faults.mute)} {self.seed}"
        )

    def vanish(self, timeout_s: float = 1.0) -> None:
        """Close the pty and remove the path: the host sees its port die (an unplugged adapter)."""
        self._command("vanish")
        self._pty_name = None

    def reappear(self, reboot: bool = True, timeout_s: float = 1.0) -> None:
        """A new pty at the same path. `reboot`: the MCU lost power with the cable (boots DISARMED)."""
        answer = self._command(f"reappear {int(reboot)}")
        parts = answer.split()
        if len(parts) == 3:
            self._pty_name = parts[2]

    def inject_hang(self) -> float:
        """Hang the firmware's main loop (interrupts keep running); the hardware watchdog must reset it.

        Returns the emulated time (s) of the hang, comparable with `PinSample.emulated_s`."""
        answer = self._command("hang").split()
        return int(answer[2]) / 1e6 if len(answer) == 3 else float("nan")

    # ------------------------------------------------------------------ observation
    def emulated_s(self) -> float:
        """The chip's emulated time now (s since its last reset), comparable with `PinSample.emulated_s`.

        Tests assert timing in it: it advances only as the firmware runs, so a busy machine that slows the
        emulation slows this clock with it."""
        return int(self._command("time").split()[2]) / 1e6

    def pin_samples(self) -> list[PinSample]:
        """Every pin/state change so far, oldest first."""
        if self._trace is None:
            return []
        return list(self._trace.update())

    def snapshot(self) -> AvrSnapshot:
        samples = self._trace.update() if self._trace is not None else []
        if not samples:
            return AvrSnapshot(FirmwareState.DISARMED, 0, 0, time.monotonic())
        last = samples[-1]
        return AvrSnapshot(
            FirmwareState(last.state), last.left.permille, last.right.permille, time.monotonic()
        )

    @property
    def state(self) -> FirmwareState:
        return self.snapshot().state

    @property
    def motor_fraction(self) -> float:
        """Mean motor output, -1..1, from the H-bridge pins: what moves the simulated car."""
        return self.snapshot().motor_fraction

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
