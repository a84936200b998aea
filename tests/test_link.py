"""The host link over real ptys (and pyserial's spy://, socket://, loop://), and in-process on a sim clock."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge.errors import LinkError
from firmware_bridge.host import AckInfo, Command, FirmwareRequirements, LinkFaultKind
from firmware_bridge.link import SerialLink
from firmware_bridge.loopback import LoopbackLink
from firmware_bridge.mcu import FirmwareConfig, McuCore
from firmware_bridge.protocol import AckResult, FirmwareState, MsgType, WireFrame
from firmware_bridge.virtual_mcu import FaultInjection
from tests.firmware_helpers import armed_link, virtual_mcu, wait_until, watchdog_silence_s

# How long a test waits for an answer before it fails: a fuse for a dead peer, never a timing bound
# (those are asserted on the microcontroller's own clock). The waits return as soon as the answer is in.
FUSE_S = 10.0


def drive_accepted(link: SerialLink, speed: float, attempts: int = 5) -> AckInfo:
    """DRIVE until the firmware takes it. A test thread descheduled on a busy machine can stay silent past a
    100 ms watchdog between its ARM and its DRIVE; the firmware then answers NOT_ARMED, so arm again."""
    for _ in range(attempts):
        ack = link.wait_ack(link.send(Command.drive(speed)), FUSE_S)
        assert ack is not None, "no ACK to DRIVE"
        if ack.result is not AckResult.NOT_ARMED:
            return ack
        link.arm()
    raise AssertionError(f"DRIVE refused {attempts} times: the watchdog fired before each")


def test_handshake_reports_firmware_version_watchdog_and_limits() -> None:
    config = FirmwareConfig(watchdog_ms=200, speed_min=-300, speed_max=800, firmware_version=(1, 2, 3))
    with virtual_mcu(config) as mcu, SerialLink(mcu.path) as link:
        info = link.handshake()
        assert (info.protocol_version, info.firmware_version) == (1, "1.2.3")
        assert (info.watchdog_ms, info.speed_min, info.speed_max) == (200, -300, 800)
        assert link.firmware == info
        assert mcu.state is FirmwareState.DISARMED  # a handshake never arms


def test_handshake_refuses_a_firmware_without_watchdog() -> None:
    with virtual_mcu(FirmwareConfig(watchdog_ms=0)) as mcu, SerialLink(mcu.path) as link:
        with pytest.raises(LinkError, match=r"watchdog switched off.*flash") as info:
            link.handshake()
        assert mcu.path in str(info.value)
        with pytest.raises(LinkError):
            link.arm()  # arm needs an accepted handshake
        assert mcu.state is FirmwareState.DISARMED


def test_handshake_refuses_another_protocol_version() -> None:
    requirements = FirmwareRequirements(protocol_version=2)
    with (
        virtual_mcu() as mcu,
        SerialLink(mcu.path, requirements=requirements) as link,
        pytest.raises(LinkError, match=r"protocol v1, this host needs v2"),
    ):
        link.handshake()


def test_handshake_times_out_with_a_clear_error_when_the_firmware_is_silent() -> None:
    with virtual_mcu() as mcu, SerialLink(mcu.path) as link:
        mcu.set_faults(FaultInjection(mute=True))
        t0 = time.monotonic()
        with pytest.raises(LinkError, match=r"no answer to HELLO within 0.3 s; check the port"):
            link.handshake(timeout_s=0.3)
        # never gives up early; how late it may return is the scheduler's business, not a property
        assert time.monotonic() - t0 >= 0.25


def test_open_failure_names_the_port_and_the_fix_and_leaves_no_thread() -> None:
    threads_before = threading.active_count()
    link = SerialLink("/dev/no-such-tty-for-gostop")
    with pytest.raises(LinkError, match=r"cannot open serial port '/dev/no-such-tty-for-gostop'.*dialout"):
        link.open()
    assert threading.active_count() == threads_before
    with pytest.raises(LinkError, match="not open"):
        link.send(Command.stop())


def test_drive_stop_round_trip_with_acks_and_rtt() -> None:
    with virtual_mcu() as mcu, armed_link(mcu) as link:
        sent = link.send(Command.drive(0.6))
        assert sent.written and sent.message_type is MsgType.DRIVE and sent.speed_permille == 600
        assert sent.frame_size == 8
        ack = link.wait_ack(sent, FUSE_S)
        assert ack is not None and ack.acked_seq == sent.seq and ack.result is AckResult.OK
        assert ack.state is FirmwareState.DRIVING and ack.motor_left == ack.motor_right == 600
        assert ack.rtt_s is not None and 0 < ack.rtt_s < FUSE_S
        assert mcu.snapshot().motor_fraction == pytest.approx(0.6)
        stop = link.send(Command.stop())
        ack = link.wait_ack(stop, FUSE_S)
        assert ack is not None and ack.state is FirmwareState.ARMED and ack.motor_left == 0
        assert mcu.snapshot().motor_left == 0
        health = link.health(time.monotonic())
        assert health.ok and health.connected and health.last_ack == ack and health.pending_acks == 0


def test_speed_outside_limits_is_clamped_and_reported() -> None:
    with virtual_mcu(FirmwareConfig(speed_max=500)) as mcu, armed_link(mcu) as link:
        ack = link.wait_ack(link.send(Command.drive(0.9)), FUSE_S)
        assert ack is not None and ack.result is AckResult.CLAMPED and ack.motor_left == 500


def test_watchdog_stops_a_silent_host_and_the_host_sees_it_in_the_next_ack() -> None:
    with virtual_mcu(FirmwareConfig(watchdog_ms=100)) as mcu, armed_link(mcu) as link:
        trips = drive_accepted(link, 0.5).watchdog_trips
        # the host goes silent: the control loop "hangs"
        assert wait_until(lambda: mcu.snapshot().motor_left == 0, timeout_s=10.0)
        assert 0.100 <= watchdog_silence_s(mcu) <= 0.100 + 0.060  # on the MCU's own clock
        ack = link.wait_ack(link.heartbeat(), FUSE_S)
        assert ack is not None and ack.state is FirmwareState.WATCHDOG and ack.watchdog_trips == trips + 1
        health = link.health(time.monotonic())
        assert health.has(LinkFaultKind.WATCHDOG_STOP) and health.firmware_state is FirmwareState.WATCHDOG
        ack = link.wait_ack(link.send(Command.drive(0.5)), FUSE_S)
        assert ack is not None and ack.result is AckResult.NOT_ARMED and mcu.snapshot().motor_left == 0
        assert link.health(time.monotonic()).has(LinkFaultKind.NOT_ARMED)
        link.arm()  # only an explicit ARM lets it drive again
        ack = link.wait_ack(link.send(Command.drive(0.5)), FUSE_S)
        assert ack is not None and ack.state is FirmwareState.DRIVING


def test_heartbeats_from_the_loop_keep_the_car_driving() -> None:
    with virtual_mcu(FirmwareConfig(watchdog_ms=100)) as mcu, armed_link(mcu) as link:
        drive_accepted(link, 0.4)
        for _ in range(15):  # 15 x 30 ms = 450 ms, far beyond the 100 ms watchdog
            time.sleep(0.03)
            link.heartbeat()
        snap = mcu.snapshot()
        if snap.watchdog_silence is not None:
            # A busy machine kept this thread asleep past the watchdog once: the firmware was right to
            # stop, and only after 100 ms of silence on its own clock (never while heartbeats arrived).
            assert snap.watchdog_silence >= 0.100
            return
        assert snap.state is FirmwareState.DRIVING and snap.motor_left == 400


def test_send_never_waits_for_the_ack_and_a_missing_ack_is_a_fault() -> None:
    with virtual_mcu() as mcu, armed_link(mcu, ack_timeout_s=0.05) as link:
        mcu.set_faults(FaultInjection(mute=True))
        sent = link.send(Command.drive(0.3))
        assert sent.written
        assert link.health(time.monotonic()).pending_acks == 1  # returned before any ACK could exist
        time.sleep(0.08)
        health = link.health(time.monotonic())
        assert health.has(LinkFaultKind.ACK_MISSING) and health.acks_missing == 1 and health.pending_acks == 0
        assert mcu.snapshot().motor_left == 300  # the firmware did act; only its answer was lost
        assert link.health(time.monotonic()).ok  # a missing ACK is reported once, then drained


def test_corrupt_replies_are_discarded_by_the_host_and_it_resynchronises() -> None:
    with virtual_mcu(seed=5) as mcu, armed_link(mcu, ack_timeout_s=0.05) as link:
        mcu.set_faults(FaultInjection(corrupt_tx=0.5))
        for _ in range(10):
            link.send(Command.stop())
            time.sleep(0.005)
        time.sleep(0.06)
        health = link.health(time.monotonic())
        assert health.has(LinkFaultKind.ACK_MISSING) or health.has(LinkFaultKind.HOST_DISCARDS)
        mcu.set_faults(FaultInjection())
        time.sleep(0.03)  # longer than the gap timeout: a started candidate is discarded as truncated
        ack = link.wait_ack(link.send(Command.drive(0.2)), FUSE_S)
        assert ack is not None and ack.motor_left == 200


def test_port_vanishes_is_reported_and_reopened_without_rearming() -> None:
    with virtual_mcu() as mcu, armed_link(mcu, backoff_initial_s=0.02) as link:
        assert link.wait_ack(link.send(Command.drive(0.5)), FUSE_S) is not None
        mcu.vanish()
        assert wait_until(lambda: not link.health(time.monotonic()).connected, timeout_s=2.0)
        health = link.health(time.monotonic())
        assert health.has(LinkFaultKind.PORT_LOST) and health.last_ack is None
        sent = link.send(Command.stop())
        assert not sent.written and "port lost" in sent.error
        assert link.health(time.monotonic()).has(LinkFaultKind.WRITE_FAILED)
        mcu.reappear()  # the adapter is plugged in again: same path, new pty, rebooted MCU
        assert wait_until(lambda: link.health(time.monotonic()).connected, timeout_s=3.0)
        assert wait_until(lambda: link.health(time.monotonic()).firmware_state is FirmwareState.DISARMED)
        health = link.health(time.monotonic())
        assert health.reconnects == 1 and health.ok
        time.sleep(0.05)
        assert (
            mcu.state is FirmwareState.DISARMED and mcu.snapshot().motor_left == 0
        )  # never re-armed by itself
        ack = link.wait_ack(link.send(Command.drive(0.5)), FUSE_S)
        assert ack is not None and ack.result is AckResult.NOT_ARMED
        link.arm()
        ack = link.wait_ack(link.send(Command.drive(0.5)), FUSE_S)
        assert ack is not None and ack.motor_left == 500


def test_close_sends_stop_at_once() -> None:
    with virtual_mcu() as mcu:
        with armed_link(mcu) as link:
            link.wait_ack(link.send(Command.drive(0.5)), FUSE_S)
            assert mcu.snapshot().motor_left == 500
        assert wait_until(lambda: mcu.snapshot().motor_left == 0, timeout_s=FUSE_S)
        assert mcu.state is FirmwareState.ARMED  # stopped by STOP at once, not later by the watchdog


def test_spy_url_traces_the_traffic(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    with virtual_mcu() as mcu, SerialLink(f"spy://{mcu.path}?file={trace}") as link:
        link.handshake()
        link.arm()
        assert link.wait_ack(link.send(Command.drive(0.1)), FUSE_S) is not None
    text = trace.read_text()
    assert "A5 02 04" in text.upper()  # the DRIVE frame's header, as hex


@contextlib.contextmanager
def tcp_mcu() -> Iterator[tuple[str, McuCore]]:
    """The reference firmware behind a TCP socket, for socket:// URLs (ser2net-style)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    core = McuCore(boot_time=time.monotonic())
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(2.0)
        conn, _ = server.accept()
        conn.settimeout(0.002)
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                    if not data:
                        return
                except TimeoutError:
                    data = b""
                out = core.feed(data, time.monotonic()) if data else core.tick(time.monotonic())
                if out:
                    conn.sendall(out)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"socket://127.0.0.1:{port}", core
    finally:
        stop.set()
        thread.join(timeout=2.0)
        server.close()


def test_socket_url_works() -> None:
    with tcp_mcu() as (url, core), SerialLink(url) as link:
        link.handshake()
        link.arm()
        ack = link.wait_ack(link.send(Command.drive(0.7)), FUSE_S)
        assert ack is not None and ack.motor_left == 700 and core.motor_left == 700


def test_loop_url_opens_but_the_handshake_fails_clearly() -> None:
    with SerialLink("loop://") as link:
        with pytest.raises(LinkError, match="no answer to HELLO"):
            link.handshake(timeout_s=0.1)
        assert link.health(time.monotonic()).has(LinkFaultKind.HOST_DISCARDS)  # its own HELLO came back


def test_reader_thread_failure_is_surfaced() -> None:
    with virtual_mcu() as mcu, SerialLink(mcu.path) as link:
        link.handshake()

        def broken(data: bytes, now: float) -> list[WireFrame]:
            raise RuntimeError("parser exploded")

        link._session.receive = broken  # type: ignore[method-assign]  # inject a reader-side bug
        link.send(Command.stop())
        assert wait_until(lambda: link.health(time.monotonic()).has(LinkFaultKind.READER_FAILED))


def test_commands_validate_their_speed() -> None:
    for bad in (1.5, -1.01, math.nan, math.inf):
        with pytest.raises(ValueError, match="speed"):
            Command.drive(bad)
    assert Command.drive(-0.25).to_message().speed == -250  # type: ignore[attr-defined]


# ------------------------------------------------------------------------ in-process, simulated clock


class SimClock:
    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t


def test_loopback_link_runs_the_same_core_on_a_simulated_clock() -> None:
    clock = SimClock()
    with LoopbackLink(clock=clock.now, ack_timeout_s=0.1) as link:
        info = link.handshake()
        assert info.watchdog_ms == 250
        link.arm()
        sent = link.send(Command.drive(0.5))
        ack = link.wait_ack(sent)
        assert ack is not None and ack.rtt_s == 0.0 and link.motor_fraction == 0.5
        for _ in range(100):  # 10 simulated seconds of a healthy 10 Hz loop
            clock.t += 0.1
            link.send(Command.drive(0.5))
            assert link.health(clock.now()).ok
        clock.t += 0.249
        assert link.health(clock.now()).ok and link.motor_fraction == 0.5
        clock.t += 0.002  # the loop "hung" for 251 simulated ms
        health = link.health(clock.now())
        assert health.has(LinkFaultKind.WATCHDOG_STOP) and link.motor_fraction == 0.0
        assert link.core.state is FirmwareState.WATCHDOG
    assert link.core.motor_left == 0
