"""The host link to the microcontroller: what the control loop talks to.

`Link` is the interface; `SerialLink` runs it over any pyserial URL (a device path, a pty, `loop://`,
`socket://host:port`, `spy://PORT?file=trace.txt`), and `firmware_bridge.loopback.LoopbackLink` runs it
in-process against a `McuCore` on a simulated clock. Both share `BaseLink`, so handshake, arming, ACK
matching and fault reporting are the same code.

Rules the control loop relies on:

- `send()` and `heartbeat()` write and return at once; they never wait for the ACK. The ACK is matched on
  the reader thread; `health(now)` (cheap, call it every period) reports what went wrong since.
- Nothing here sends on a timer: if the loop stops calling, the firmware's watchdog stops the car.
- A lost port is reopened with back-off; the link then says HELLO (so the firmware is DISARMED) and never
  arms by itself: `arm()` is the caller's decision.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

import serial

from firmware_bridge.errors import LinkError
from firmware_bridge.host import (
    AckInfo,
    Command,
    FirmwareInfo,
    FirmwareRequirements,
    HostSession,
    LinkFault,
    LinkFaultKind,
    LinkHealth,
    SentCommand,
)
from firmware_bridge.protocol import (
    Arm,
    Disarm,
    Drive,
    FirmwareState,
    Heartbeat,
    Hello,
    Message,
    Status,
    StatusRequest,
    Stop,
)

Clock = Callable[[], float]
HELLO_RETRY_S = 0.5  # PROTOCOL.md §7: resend HELLO when no VERSION within this time
READ_TIMEOUT_S = 0.02  # how long the reader blocks before checking whether to stop


class Link(Protocol):
    """What the control loop uses (car/loop.py). Times are the link's clock (time.monotonic by default)."""

    @property
    def port_name(self) -> str: ...

    @property
    def firmware(self) -> FirmwareInfo | None: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def handshake(self, timeout_s: float | None = None) -> FirmwareInfo: ...

    def arm(self, timeout_s: float | None = None) -> AckInfo: ...

    def disarm(self, timeout_s: float | None = None) -> AckInfo: ...

    def send(self, command: Command) -> SentCommand: ...

    def heartbeat(self) -> SentCommand: ...

    def health(self, now: float) -> LinkHealth: ...


class BaseLink(ABC):
    """Everything but the transport: numbering, waiting for answers, handshake, arm, health."""

    def __init__(
        self,
        port_name: str,
        *,
        ack_timeout_s: float,
        handshake_timeout_s: float,
        requirements: FirmwareRequirements,
        clock: Clock,
    ) -> None:
        self._port_name = port_name
        self._session = HostSession(ack_timeout_s)
        self._handshake_timeout_s = handshake_timeout_s
        self._requirements = requirements
        self._clock = clock
        self._lock = threading.RLock()  # guards the session
        self._changed = threading.Condition(self._lock)  # notified when a frame arrives
        self._firmware: FirmwareInfo | None = None
        self._opened = False

    # ------------------------------------------------------------------ transport (subclasses)
    @abstractmethod
    def _write_frame(self, frame: bytes) -> str:
        """Write one frame; return "" on success or a one-line reason it was not written."""

    @abstractmethod
    def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait (holding self._lock while testing) until predicate() or timeout; return predicate()."""

    @abstractmethod
    def _standing_faults(self) -> tuple[LinkFault, ...]: ...

    @abstractmethod
    def _connected(self) -> bool: ...

    @abstractmethod
    def _reconnects(self) -> int: ...

    # ------------------------------------------------------------------ lifecycle
    @property
    def port_name(self) -> str:
        return self._port_name

    @property
    def firmware(self) -> FirmwareInfo | None:
        return self._firmware

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def _require_open(self) -> None:
        if not self._opened:
            raise LinkError(
                f"{self._port_name}: link is not open; call open() or use it as a context manager"
            )

    # ------------------------------------------------------------------ sending
    def _transmit(self, message: Message) -> SentCommand:
        self._require_open()
        now = self._clock()
        with self._lock:
            seq, frame = self._session.frame_for(message, now)
        error = self._write_frame(frame)
        if error:
            with self._lock:
                self._session.unsent(seq)
                self._session.report(LinkFaultKind.WRITE_FAILED, f"{message.TYPE.name} seq {seq}: {error}")
        speed = message.speed if isinstance(message, Drive) else 0
        return SentCommand(seq, message.TYPE, speed, frame, now, written=not error, error=error)

    def send(self, command: Command) -> SentCommand:
        """Write DRIVE or STOP and return at once with what was written (never waits for the ACK)."""
        return self._transmit(command.to_message())

    def heartbeat(self) -> SentCommand:
        """Feed the firmware watchdog when the loop has nothing new to say. Call it from the loop only."""
        return self._transmit(Heartbeat())

    def health(self, now: float) -> LinkHealth:
        with self._lock:
            return self._session.health(now, self._connected(), self._standing_faults(), self._reconnects())

    # ------------------------------------------------------------------ blocking requests (not in the loop)
    def wait_ack(self, sent: SentCommand, timeout_s: float | None = None) -> AckInfo | None:
        """Block until the ACK of `sent` arrives (None after the timeout). For set-up, tests and benches."""
        if not sent.written:
            return None
        timeout = self._session.ack_timeout_s if timeout_s is None else timeout_s

        def answered() -> bool:
            return not self._session.is_pending(sent.seq)

        self._wait(answered, timeout)
        with self._lock:
            return self._session.ack_for(sent.seq, sent.sent_at)

    def handshake(self, timeout_s: float | None = None) -> FirmwareInfo:
        """HELLO until VERSION arrives (resent every 0.5 s), then check the firmware (PROTOCOL.md §7)."""
        self._require_open()
        total = self._handshake_timeout_s if timeout_s is None else timeout_s
        deadline = self._clock() + total
        while True:
            with self._lock:
                count_before = self._session.version[0]
            sent = self._transmit(Hello())
            remaining = deadline - self._clock()
            if sent.written:
                answered = self._version_newer_than(count_before)
                if self._wait(answered, max(0.0, min(HELLO_RETRY_S, remaining))):
                    break
            elif remaining > 0:
                self._wait(lambda: False, min(HELLO_RETRY_S, remaining))
            if self._clock() >= deadline:
                raise LinkError(
                    f"{self._port_name}: no answer to HELLO within {total:.1f} s; check the port, the baud "
                    "rate (115200 8N1) and that the firmware runs (an Arduino needs ~2 s to boot after open)"
                )
        with self._lock:
            version = self._session.version[1]
        assert version is not None
        info = FirmwareInfo.from_version(version)
        self._requirements.check(info, self._port_name)
        self._firmware = info
        return info

    def _version_newer_than(self, count: int) -> Callable[[], bool]:
        return lambda: self._session.version[0] > count

    def _request_ack(self, message: Message, timeout_s: float | None) -> AckInfo:
        sent = self._transmit(message)
        if not sent.written:
            raise LinkError(f"{self._port_name}: could not send {message.TYPE.name}: {sent.error}")
        timeout = max(self._session.ack_timeout_s, 0.5) if timeout_s is None else timeout_s
        ack = self.wait_ack(sent, timeout)
        if ack is None:
            raise LinkError(
                f"{self._port_name}: no ACK for {message.TYPE.name} within {timeout:.2f} s; "
                "check the cable and that the firmware runs"
            )
        return ack

    def arm(self, timeout_s: float | None = None) -> AckInfo:
        """Arm the firmware (does the handshake first if there was none since open or reconnect)."""
        if self._firmware is None:
            self.handshake()
        ack = self._request_ack(Arm(), timeout_s)
        if ack.state not in (FirmwareState.ARMED, FirmwareState.DRIVING):
            raise LinkError(f"{self._port_name}: firmware did not arm (state {ack.state.name})")
        with self._lock:
            self._session.set_expect_armed(True)
        return ack

    def disarm(self, timeout_s: float | None = None) -> AckInfo:
        with self._lock:
            self._session.set_expect_armed(False)
        return self._request_ack(Disarm(), timeout_s)

    def stop_and_wait(self, timeout_s: float | None = None) -> AckInfo:
        """STOP and wait for its ACK (shutdown paths; the loop itself uses send())."""
        return self._request_ack(Stop(), timeout_s)

    def request_status(self, timeout_s: float = 0.5) -> Status:
        """Ask for every firmware counter (PROTOCOL.md STATUS)."""
        with self._lock:
            count_before = self._session.status[0]
        sent = self._transmit(StatusRequest())
        if not sent.written or not self._wait(lambda: self._session.status[0] > count_before, timeout_s):
            raise LinkError(f"{self._port_name}: no STATUS answer within {timeout_s:.2f} s")
        with self._lock:
            status = self._session.status[1]
        assert status is not None
        return status

    @property
    def last_ack(self) -> AckInfo | None:
        with self._lock:
            return self._session.last_ack


class SerialLink(BaseLink):
    """The link over a pyserial URL, with a reader thread and reconnect-with-back-off."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        ack_timeout_s: float = 0.1,
        handshake_timeout_s: float = 2.0,
        write_timeout_s: float = 0.1,
        reconnect: bool = True,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 1.0,
        requirements: FirmwareRequirements | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            port,
            ack_timeout_s=ack_timeout_s,
            handshake_timeout_s=handshake_timeout_s,
            requirements=requirements or FirmwareRequirements(),
            clock=clock,
        )
        if not port:
            raise LinkError("serial link: empty port; give a device path (/dev/ttyUSB0) or a pyserial URL")
        self._baudrate = baudrate
        self._write_timeout_s = write_timeout_s
        self._reconnect_enabled = reconnect
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._write_lock = threading.Lock()  # one writer at a time; also guards self._port swaps
        self._port: serial.Serial | None = None
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._reader_error: BaseException | None = None
        self._lost_reason = ""
        self._reconnect_count = 0

    # ------------------------------------------------------------------ lifecycle
    def _open_port(self) -> serial.Serial:
        try:
            return serial.serial_for_url(
                self._port_name,
                baudrate=self._baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=READ_TIMEOUT_S,
                write_timeout=self._write_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise LinkError(
                f"cannot open serial port {self._port_name!r}: {exc}; check the device path or URL, "
                "the cable, and that you may use it (Linux: be in the 'dialout' group)"
            ) from exc

    def open(self) -> None:
        if self._opened:
            return
        port = self._open_port()
        try:
            self._stop.clear()
            self._port = port
            self._reader = threading.Thread(
                target=self._reader_main, name=f"serial-reader {self._port_name}", daemon=True
            )
            self._reader.start()
        except BaseException:
            self._port = None
            port.close()
            raise
        self._opened = True

    def close(self) -> None:
        """Best-effort STOP, then stop the reader and close the port. Safe to call twice."""
        if not self._opened:
            return
        if self._port is not None:
            self._transmit(Stop())  # the car stops even if the firmware's watchdog never gets the chance
        self._opened = False
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        with self._write_lock:
            port, self._port = self._port, None
        if port is not None:
            port.close()

    # ------------------------------------------------------------------ transport
    def _write_frame(self, frame: bytes) -> str:
        with self._write_lock:
            port = self._port
            if port is None:
                return f"port lost ({self._lost_reason}); reopening"
            try:
                port.write(frame)
            except serial.SerialTimeoutException:
                return f"write timed out after {self._write_timeout_s} s (is the receiver stuck?)"
            except (serial.SerialException, OSError) as exc:
                self._drop_port_locked(port, f"write failed: {exc}")
                return f"write failed: {exc}"
        return ""

    def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout=timeout_s)

    def _connected(self) -> bool:
        return self._port is not None

    def _reconnects(self) -> int:
        return self._reconnect_count

    def _standing_faults(self) -> tuple[LinkFault, ...]:
        faults: list[LinkFault] = []
        if self._opened and self._port is None:
            faults.append(LinkFault(LinkFaultKind.PORT_LOST, f"{self._port_name}: {self._lost_reason}"))
        if self._reader_error is not None:
            faults.append(
                LinkFault(
                    LinkFaultKind.READER_FAILED, f"{type(self._reader_error).__name__}: {self._reader_error}"
                )
            )
        return tuple(faults)

    # ------------------------------------------------------------------ reader thread
    def _drop_port_locked(self, port: serial.Serial, reason: str) -> None:
        """Forget a dead port (caller holds the write lock). The reader thread reopens it."""
        if self._port is not port:
            return
        with self._changed:  # health() sees the lost port and the forgotten session together
            self._port = None
            self._lost_reason = reason
            self._firmware = None
            self._session.forget_pending()
            self._session.report(LinkFaultKind.PORT_LOST, f"{self._port_name}: {reason}")
            self._changed.notify_all()
        with contextlib.suppress(Exception):  # the port is already dead; closing is best effort
            port.close()

    def _reader_main(self) -> None:
        try:
            backoff = self._backoff_initial_s
            while not self._stop.is_set():
                port = self._port
                if port is None:
                    if not self._reconnect_enabled:
                        self._stop.wait(READ_TIMEOUT_S)
                        continue
                    if self._stop.wait(backoff):
                        break
                    if self._try_reopen():
                        backoff = self._backoff_initial_s
                    else:
                        backoff = min(backoff * 2.0, self._backoff_max_s)
                    continue
                try:
                    data = port.read(max(1, port.in_waiting))
                except Exception as exc:  # any failure of a live port means it is gone
                    if self._stop.is_set():
                        break
                    with self._write_lock:
                        self._drop_port_locked(port, f"read failed: {exc}")
                    continue
                if data:
                    now = self._clock()
                    with self._changed:
                        self._session.receive(data, now)
                        self._changed.notify_all()
        except BaseException as exc:  # surfaced through health(), never swallowed
            self._reader_error = exc
            with self._changed:
                self._changed.notify_all()

    def _try_reopen(self) -> bool:
        try:
            port = self._open_port()
        except LinkError as exc:
            self._lost_reason = f"reopen failed: {exc.__cause__}"
            return False
        with self._write_lock:
            if self._stop.is_set():
                port.close()
                return False
            self._port = port
            self._reconnect_count += 1
            now = self._clock()
            with self._lock:
                _, hello = self._session.frame_for(Hello(), now)
            try:
                port.write(hello)  # first frame after a reopen: the firmware goes DISARMED
            except (serial.SerialException, OSError) as exc:
                self._drop_port_locked(port, f"write failed after reopen: {exc}")
                return False
        return True
