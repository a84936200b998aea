"""A virtual microcontroller: the reference firmware (`McuCore`) behind a real pty, in real time.

The host opens `VirtualMcu.path` like any serial port (pyserial, miniterm, `SerialLink`). `path` is a
symlink that points at the current pty slave (`/dev/pts/N`): `vanish()` closes the pty (the host's reads
fail as if the USB adapter were unplugged) and removes the symlink; `reappear()` makes a new pty and points
the same symlink at it, so a host that reopens `path` finds the microcontroller again.

A thread drives the core: it wakes on every byte from the host, just after the core's next deadline
(watchdog, gap timeout), and at least every `tick_s`, so the watchdog fires within about a millisecond of
its timeout (plus the OS's scheduling delay). Fault injection (`set_faults`) drops,
corrupts or delays bytes, mutes all replies (stop acking) — for tests of the host's fault handling.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import select
import shutil
import tempfile
import threading
import time
import tty
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from firmware_bridge.mcu import FirmwareConfig, McuCore, McuCounters
from firmware_bridge.protocol import SPEED_FULL_SCALE, FirmwareState


@dataclass(frozen=True, slots=True)
class FaultInjection:
    """What to do to the bytes on the virtual wire. Probabilities are per byte; a seeded RNG decides."""

    drop_rx: float = 0.0  # a byte from the host is lost
    corrupt_rx: float = 0.0  # a byte from the host gets one random bit flipped
    drop_tx: float = 0.0  # a byte to the host is lost
    corrupt_tx: float = 0.0  # a byte to the host gets one random bit flipped
    reply_delay_s: float = 0.0  # every reply is held this long before it is written
    mute: bool = False  # send nothing at all (no ACK, no VERSION, no FAULT); the core still acts

    def __post_init__(self) -> None:
        for name in ("drop_rx", "corrupt_rx", "drop_tx", "corrupt_tx"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault injection {name}={value} must be a probability in 0..1")
        if self.reply_delay_s < 0:
            raise ValueError(f"reply_delay_s {self.reply_delay_s} must be >= 0")


@dataclass(frozen=True, slots=True)
class McuSnapshot:
    """A consistent view of the virtual firmware at one instant (taken under its lock)."""

    state: FirmwareState
    motor_left: int
    motor_right: int
    counters: McuCounters
    bytes_received: int
    bytes_sent: int
    at: float
    last_valid_at: float = 0.0  # the MCU's clock: when the last valid frame arrived
    watchdog_fired_at: float | None = None  # the MCU's clock: when the watchdog last stopped the motors
    watchdog_silence: float | None = None  # the MCU's clock: how long the host was silent when it fired

    @property
    def motor_fraction(self) -> float:
        return (self.motor_left + self.motor_right) / (2.0 * SPEED_FULL_SCALE)


def _apply_faults(data: bytes, drop: float, corrupt: float, rng: random.Random) -> bytes:
    if drop == 0.0 and corrupt == 0.0:
        return data
    out = bytearray()
    for byte in data:
        if drop and rng.random() < drop:
            continue
        flip = 1 << rng.randrange(8) if corrupt and rng.random() < corrupt else 0
        out.append(byte ^ flip)
    return bytes(out)


class _Pty:
    """One pty pair: the master is the MCU's side; our own slave fd keeps the pty alive between opens."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line editing, 8-bit clean: a wire, not a terminal
        flags = fcntl.fcntl(self.master, fcntl.F_GETFL)
        fcntl.fcntl(self.master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.name = os.ttyname(self.slave)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class VirtualMcu:
    """The reference firmware on a pty, run by a thread in real time. Use as a context manager."""

    def __init__(
        self,
        config: FirmwareConfig | None = None,
        *,
        link_path: str | Path | None = None,
        seed: int = 0,
        tick_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or FirmwareConfig()
        self._clock = clock
        self._tick_s = tick_s
        self._rng = random.Random(seed)
        self._faults = FaultInjection()
        self._lock = threading.Lock()
        self._core = McuCore(self.config, boot_time=clock())
        self._pty: _Pty | None = None
        self._tmpdir: Path | None = None
        self._link_path = Path(link_path) if link_path is not None else None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake_r, self._wake_w = -1, -1
        self._delayed: deque[tuple[float, bytes]] = deque()
        self._actions: deque[tuple[Callable[[], None], threading.Event]] = deque()
        self._bytes_received = 0
        self._bytes_sent = 0
        self._tx_overflow = 0
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Self:
        if self._thread is not None:
            return self
        if self._link_path is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="virtual-mcu-"))
            self._link_path = self._tmpdir / "ttyMCU"
        self._wake_r, self._wake_w = os.pipe()
        self._open_pty()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="virtual-mcu", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._wake()
        self._thread.join(timeout=2.0)
        self._thread = None
        with self._lock:
            self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self._link_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def path(self) -> str:
        """The stable port path to open (a symlink to the current pty)."""
        if self._link_path is None:
            raise RuntimeError("VirtualMcu not started")
        return str(self._link_path)

    @property
    def pty_name(self) -> str | None:
        """The current pty slave (/dev/pts/N), None while vanished."""
        pty = self._pty
        return pty.name if pty is not None else None

    def _open_pty(self) -> None:
        pty = _Pty()
        assert self._link_path is not None
        tmp_link = self._link_path.with_name(self._link_path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp_link.unlink()
        tmp_link.symlink_to(pty.name)
        os.replace(tmp_link, self._link_path)  # atomic re-point: the path never names a dead pty
        self._pty = pty

    def _close_pty(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        if self._link_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._link_path.unlink()

    # ------------------------------------------------------------------ fault injection
    def set_faults(self, faults: FaultInjection) -> None:
        with self._lock:
            self._faults = faults
        self._wake()

    def vanish(self, timeout_s: float = 1.0) -> None:
        """Close the pty and remove the path: the host sees its port die (an unplugged adapter)."""
        self._on_thread(self._do_vanish, timeout_s)

    def reappear(self, reboot: bool = True, timeout_s: float = 1.0) -> None:
        """A new pty at the same path. `reboot`: the MCU lost power with the cable (boots DISARMED)."""
        self._on_thread(lambda: self._do_reappear(reboot), timeout_s)

    def _on_thread(self, action: Callable[[], None], timeout_s: float) -> None:
        """Run `action` on the MCU thread between two steps: only that thread touches the pty fds, so a
        select() never waits on a descriptor another thread closed (or one the kernel handed out again)."""
        if self._thread is None:
            raise RuntimeError("VirtualMcu not started")
        done = threading.Event()
        with self._lock:
            self._actions.append((action, done))
        self._wake()
        if not done.wait(timeout_s):
            raise TimeoutError(f"virtual MCU did not act within {timeout_s} s")

    def _do_vanish(self) -> None:
        self._close_pty()
        self._delayed.clear()

    def _do_reappear(self, reboot: bool) -> None:
        if self._pty is not None:
            return
        if reboot:
            self._core = McuCore(self.config, boot_time=self._clock())
        self._open_pty()

    # ------------------------------------------------------------------ observation
    def snapshot(self) -> McuSnapshot:
        with self._lock:
            core = self._core
            return McuSnapshot(
                state=core.state,
                motor_left=core.motor_left,
                motor_right=core.motor_right,
                counters=core.counters,
                bytes_received=self._bytes_received,
                bytes_sent=self._bytes_sent,
                at=self._clock(),
                last_valid_at=core.last_valid_at,
                watchdog_fired_at=core.watchdog_fired_at,
                watchdog_silence=core.watchdog_silence,
            )

    @property
    def state(self) -> FirmwareState:
        return self.snapshot().state

    @property
    def motor_fraction(self) -> float:
        """Mean motor output, -1..1: what moves the simulated car."""
        return self.snapshot().motor_fraction

    @property
    def error(self) -> BaseException | None:
        """An exception that killed the MCU thread (None while healthy)."""
        return self._error

    # ------------------------------------------------------------------ the thread
    def _wake(self) -> None:
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"\0")

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as exc:
            self._error = exc
            raise

    def _step(self) -> None:
        while self._actions:
            with self._lock:
                action, done = self._actions.popleft()
                action()
            done.set()
        pty = self._pty
        with self._lock:
            deadlines = [t for t in (self._core.next_deadline(),) if t is not None]
        if self._delayed:
            deadlines.append(self._delayed[0][0])
        timeout = self._tick_s
        if deadlines:  # wake just after the next deadline, not on a coarse tick: exact and cheap
            timeout = max(0.0, min(timeout, min(deadlines) - self._clock() + 0.0002))
        fds = [self._wake_r] + ([pty.master] if pty is not None else [])
        readable, _, _ = select.select(fds, [], [], timeout)
        if self._wake_r in readable:
            os.read(self._wake_r, 512)
        data = b""
        if pty is not None and pty.master in readable:
            try:
                data = os.read(pty.master, 4096)
            except BlockingIOError:
                data = b""
            except OSError:  # EIO: no slave open at this instant; the pty stays ours
                data = b""
                time.sleep(0.002)
        with self._lock:
            now = self._clock()
            faults = self._faults
            out = b""
            if data:
                self._bytes_received += len(data)
                data = _apply_faults(data, faults.drop_rx, faults.corrupt_rx, self._rng)
                out += self._core.feed(data, now)
            out += self._core.tick(now)
            if out and not faults.mute:
                out = _apply_faults(out, faults.drop_tx, faults.corrupt_tx, self._rng)
                self._delayed.append((now + faults.reply_delay_s, out))
            while self._delayed and self._delayed[0][0] <= now:
                self._write(self._delayed.popleft()[1])

    def _write(self, data: bytes) -> None:
        pty = self._pty
        if pty is None or not data:
            return
        try:
            written = os.write(pty.master, data)
        except BlockingIOError:
            written = 0
        except OSError:
            return
        self._bytes_sent += written
        self._tx_overflow += len(data) - written  # the host is not reading: bytes lost, like a real UART
