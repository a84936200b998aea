"""The control loop's view of the motor link, adapted from `firmware_bridge`'s host links.

The loop needs three things each tick: send DRIVE/STOP without blocking, learn what went wrong since the
last tick (as `car.types.Fault`s), and see the newest acknowledgement. `BridgeMotorLink` provides that on
top of any firmware_bridge link with `send(Command) -> SentCommand`, `health(now) -> LinkHealth` and
`arm()`: the pty/serial `SerialLink` on the car and in `car drive`, the in-process `LoopbackLink` (same
`McuCore`, simulated clock) in `car sim eval`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from car.types import AckRecord, CommandKind, CommandRecord, Fault, FaultKind
from firmware_bridge.host import AckInfo, Command, LinkFaultKind, LinkHealth, SentCommand
from firmware_bridge.protocol import FirmwareState

# The firmware states in which it refuses DRIVE until re-armed.
DISARMED_STATES = frozenset({FirmwareState.DISARMED, FirmwareState.WATCHDOG})

# Which loop fault each link fault is. Every one of them stops the car.
LINK_FAULTS: Mapping[LinkFaultKind, FaultKind] = {
    LinkFaultKind.PORT_LOST: FaultKind.LINK_LOST,
    LinkFaultKind.WRITE_FAILED: FaultKind.LINK_LOST,
    LinkFaultKind.READER_FAILED: FaultKind.LINK_LOST,
    LinkFaultKind.ACK_MISSING: FaultKind.ACK_MISSING,
    LinkFaultKind.WATCHDOG_STOP: FaultKind.FIRMWARE_FAULT,
    LinkFaultKind.FIRMWARE_RESET: FaultKind.FIRMWARE_FAULT,
    LinkFaultKind.NOT_ARMED: FaultKind.FIRMWARE_FAULT,
    LinkFaultKind.FIRMWARE_DISCARDS: FaultKind.LINK_NOISE,
    LinkFaultKind.HOST_DISCARDS: FaultKind.LINK_NOISE,
}


class HostLink(Protocol):
    """What firmware_bridge's SerialLink and LoopbackLink offer the loop."""

    def send(self, command: Command) -> SentCommand: ...

    def health(self, now: float) -> LinkHealth: ...

    def arm(self) -> object: ...


class MotorLink(Protocol):
    """The loop's link: non-blocking send, faults since the last poll, newest ack."""

    def send(self, kind: CommandKind, speed: float) -> CommandRecord: ...

    def poll(self, now: float) -> tuple[tuple[Fault, ...], AckRecord | None]: ...

    def rearm_if_needed(self, now: float) -> bool: ...


def ack_record(ack: AckInfo | None) -> AckRecord | None:
    if ack is None:
        return None
    return AckRecord(
        seq=ack.acked_seq,
        state=ack.state.name,
        motor_left=ack.motor_left / 1000.0,
        motor_right=ack.motor_right / 1000.0,
        rtt_s=ack.rtt_s,
    )


class BridgeMotorLink:
    """Adapts a firmware_bridge host link to `MotorLink`.

    Re-arming: the bridge never re-arms by itself (a reset or reconnected firmware stays DISARMED). The
    loop asks `rearm_if_needed` once per tick; it re-arms at most once per `rearm_interval_s`, only when
    the firmware is known to be disarmed. The car still needs the policy's N confident GO frames to move.
    """

    def __init__(self, link: HostLink, rearm_interval_s: float = 1.0) -> None:
        self.link = link
        self.rearm_interval_s = rearm_interval_s
        self._last_rearm: float | None = None
        self._disarmed = False
        self.rearms = 0

    def send(self, kind: CommandKind, speed: float) -> CommandRecord:
        command = Command.stop() if kind is CommandKind.STOP else Command.drive(speed)
        sent = self.link.send(command)
        if not sent.written:
            raise OSError(sent.error or "the link did not write the command")
        return CommandRecord(
            kind=kind,
            speed=0.0 if kind is CommandKind.STOP else speed,
            seq=sent.seq,
            t_written=sent.sent_at,
            wire_bytes=sent.frame_size,
        )

    def poll(self, now: float) -> tuple[tuple[Fault, ...], AckRecord | None]:
        health = self.link.health(now)
        state = health.firmware_state
        self._disarmed = health.connected and state in DISARMED_STATES
        faults = tuple(Fault(LINK_FAULTS[f.kind], f"{f.kind.value}: {f.detail}") for f in health.faults)
        return faults, ack_record(health.last_ack)

    def rearm_if_needed(self, now: float) -> bool:
        if not self._disarmed:
            return False
        if self._last_rearm is not None and now - self._last_rearm < self.rearm_interval_s:
            return False
        self._last_rearm = now
        try:
            self.link.arm()
        except Exception:  # the next poll reports the link's state; the car stays stopped meanwhile
            return False
        self.rearms += 1
        self._disarmed = False
        return True
