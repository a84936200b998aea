"""Registries that turn the typed config into devices: frame sources and microcontrollers.

Adding a source or a microcontroller kind is one function more, decorated with its config name; nothing
here is an if/elif chain over kinds. Heavy or optional imports (the simulated world, the AVR emulator) happen
inside the builder that needs them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from car.config import CarConfig, resolve_path
from car.errors import CarError
from car.timing import Clock
from vision.sources import FrameSource, ImageFolderSource, SimSource, ThreadedSource, VideoFileSource
from vision.sources.registry import open_camera


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a source may need besides its config: the loop's clock and the firmware's motor output."""

    clock: Clock
    motor_fraction: Callable[[], float]


SourceBuilder = Callable[[CarConfig, SourceContext], FrameSource]
SOURCE_BUILDERS: dict[str, SourceBuilder] = {}


def source_builder(kind: str) -> Callable[[SourceBuilder], SourceBuilder]:
    def deco(fn: SourceBuilder) -> SourceBuilder:
        SOURCE_BUILDERS[kind] = fn
        return fn

    return deco


SOURCE_WARMUPS: dict[str, Callable[[CarConfig], None]] = {}


_WARMING: dict[str, threading.Thread] = {}


def warm_up_source(config: CarConfig) -> threading.Thread | None:
    """Start a source's slow preparation (the simulator's textures) on a thread, so that it overlaps the
    imports and the model and link start-up; join the thread before `build_source`. Calling it again for
    the same kind returns the thread already started."""
    kind = config.source.kind
    warm = SOURCE_WARMUPS.get(kind)
    if warm is None:
        return None
    if kind not in _WARMING:
        thread = threading.Thread(target=warm, args=(config,), name="source-warm-up", daemon=True)
        thread.start()
        _WARMING[kind] = thread
    return _WARMING[kind]


def build_source(config: CarConfig, context: SourceContext) -> FrameSource:
    try:
        builder = SOURCE_BUILDERS[config.source.kind]
    except KeyError:
        raise CarError(
            f"source.kind={config.source.kind!r}: choose one of {', '.join(sorted(SOURCE_BUILDERS))}"
        ) from None
    return builder(config, context)


def _existing(value: str, what: str) -> Path:
    path = resolve_path(value)
    if not path.exists():
        raise CarError(f"source.path={value!r}: no such {what}; check the path")
    return path


@source_builder("camera")
def _camera(config: CarConfig, context: SourceContext) -> FrameSource:
    """The backend's own source (vision.sources.registry: CAMERA_BACKENDS), with that backend's options."""
    return open_camera(config.source.backend, config.source.camera_options())


@source_builder("video")
def _video(config: CarConfig, context: SourceContext) -> FrameSource:
    s = config.source
    return VideoFileSource(_existing(s.path, "video file"), fps=s.fps, loop=s.loop)


@source_builder("folder")
def _folder(config: CarConfig, context: SourceContext) -> FrameSource:
    s = config.source
    return ImageFolderSource(_existing(s.path, "image folder"), fps=s.fps, loop=s.loop)


@source_builder("replay")
def _replay(config: CarConfig, context: SourceContext) -> FrameSource:
    from car.replay import DriveLogSource

    s = config.source
    return DriveLogSource(_existing(s.path, "drive log"), fps=s.fps, loop=s.loop)


def _warm_sim(config: CarConfig) -> None:
    from vision.sim import WorldConfig
    from vision.sim.render import renderer_for

    renderer_for(WorldConfig())  # cached per process: the worlds of this drive reuse it


SOURCE_WARMUPS["sim"] = _warm_sim


@source_builder("sim")
def _sim(config: CarConfig, context: SourceContext) -> FrameSource:
    from car.sim_world import EpisodicWorld

    world = EpisodicWorld.from_config(config.sim, context.motor_fraction)
    camera = SimSource(
        world,
        lambda: context.motor_fraction() * world.max_speed_mps,
        fps=config.source.fps,
        clock=context.clock,
        name=f"sim:seed={config.sim.seed}",
    )
    return ThreadedSource(camera) if config.sim.camera_thread else camera


# -- microcontrollers --------------------------------------------------------------------------------------


@dataclass(slots=True)
class McuHandle:
    """A running microcontroller end: the port the link opens, and (simulated ones) the motor output."""

    port: str
    description: str
    motor_fraction: Callable[[], float] | None = None
    device: object | None = None  # the VirtualMcu / emulator object, for fault injection in tests
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self.closers):
            with contextlib.suppress(Exception):
                close()
        self.closers.clear()


McuBuilder = Callable[[CarConfig], McuHandle]
MCU_BUILDERS: dict[str, McuBuilder] = {}


def mcu_builder(kind: str) -> Callable[[McuBuilder], McuBuilder]:
    def deco(fn: McuBuilder) -> McuBuilder:
        MCU_BUILDERS[kind] = fn
        return fn

    return deco


def start_mcu(config: CarConfig) -> McuHandle:
    try:
        builder = MCU_BUILDERS[config.link.mcu]
    except KeyError:
        raise CarError(
            f"link.mcu={config.link.mcu!r}: choose one of {', '.join(sorted(MCU_BUILDERS))}"
        ) from None
    return builder(config)


@mcu_builder("serial")
def _serial(config: CarConfig) -> McuHandle:
    """A real microcontroller: nothing to start, the link opens `link.port`."""
    return McuHandle(port=config.link.port, description=f"microcontroller on {config.link.port}")


@mcu_builder("virtual")
def _virtual(config: CarConfig) -> McuHandle:
    from firmware_bridge.mcu import FirmwareConfig
    from firmware_bridge.virtual_mcu import VirtualMcu

    mcu = VirtualMcu(FirmwareConfig(watchdog_ms=config.link.watchdog_ms), seed=config.sim.seed)
    mcu.start()
    return McuHandle(
        port=mcu.path,
        description=f"virtual microcontroller on {mcu.path} -> {mcu.pty_name}",
        motor_fraction=lambda: mcu.motor_fraction,
        device=mcu,
        closers=[mcu.stop],
    )


@mcu_builder("avr")
def _avr(config: CarConfig) -> McuHandle:
    """The AVR firmware in the simavr emulator (its watchdog is compiled in: link.watchdog_ms is unused)."""
    from firmware_bridge.avr_emulator import AvrEmulator

    emulator = AvrEmulator()
    emulator.open()
    return McuHandle(
        port=emulator.path,
        description=f"AVR firmware in simavr on {emulator.path}",
        motor_fraction=None,  # the motor output comes from the firmware's ACKs
        device=emulator,
        closers=[emulator.close],
    )
