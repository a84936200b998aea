"""`car drive` as a function: build everything from the config, run the loop, shut down safely.

Start-up order: model bundle (verified hashes) and detector (warm session) → microcontroller end (the
virtual one on a pty, the AVR emulator, or nothing for a real board) → serial link: open, handshake, arm
→ drive log (its metadata records the bundle's hashes and the whole config) → frame source → loop.
Shut-down, whatever happened: the loop's last command is STOP; the link's close sends STOP again; the log
gets its summary and is committed; the microcontroller end is stopped. SIGINT and SIGTERM ask the loop to
stop (it sends STOP within one period). If the process dies outright, the firmware watchdog stops the car.

Nothing here imports torch or shap (a test runs `car drive` and checks `sys.modules`).
"""

from __future__ import annotations

import contextlib
import json
import platform
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from car.build import McuHandle, SourceContext, build_source, start_mcu, warm_up_source
from car.config import CarConfig, resolve_path
from car.detectors import configured_detector
from car.drivelog import BundleFile, DriveLogWriter, DriveMeta, RunSummary, utc_now
from car.links import BridgeMotorLink
from car.loop import ControlLoop
from car.operator import OperatorInbox
from car.policy import Policy, PolicyParams
from car.timing import MonotonicClock, format_stats
from car.types import DriveRecord
from vision.bundle import MANIFEST_NAME, ModelBundle, load_bundle
from vision.detector import Detector
from vision.sources import FrameSource
from vision.sources.base import source_info

if TYPE_CHECKING:
    from firmware_bridge.host import FirmwareInfo


@dataclass(frozen=True, slots=True)
class DriveHooks:
    """Optional instrumentation points (tests inject faults through them; benches time through them)."""

    wrap_source: Callable[[FrameSource], FrameSource] | None = None
    wrap_detector: Callable[[Detector], Detector] | None = None
    on_ready: Callable[[ControlLoop, McuHandle], None] | None = None
    on_record: Callable[[DriveRecord], None] | None = None
    operator: OperatorInbox | None = None  # e-stop / teleop inbox the loop polls each tick (web console)


@dataclass(frozen=True, slots=True)
class DriveResult:
    log_path: Path
    summary: RunSummary
    firmware: str
    startup_s: float  # from `drive()` being called to the first command written
    first_command_unix: float | None  # wall-clock time of the first command (for start-up benches)


def default_log_path(config: CarConfig) -> Path:
    if config.log.path:
        return Path(config.log.path)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return resolve_log_dir(config.log.dir) / f"{stamp}.sqlite"


def resolve_log_dir(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def load_model(config: CarConfig) -> ModelBundle:
    path = resolve_path(config.model.bundle)
    return load_bundle(path)


def versions() -> tuple[tuple[str, str], ...]:
    import cv2
    import numpy
    import onnxruntime
    import serial

    try:
        from importlib.metadata import version

        project = version("gostop-car")
    except Exception:
        project = "unknown"
    return (
        ("gostop-car", project),
        ("python", platform.python_version()),
        ("numpy", numpy.__version__),
        ("onnxruntime", onnxruntime.__version__),
        ("opencv", cv2.__version__),
        ("pyserial", serial.__version__),
        ("platform", platform.platform()),
    )


def bundle_files(bundle: ModelBundle) -> tuple[BundleFile, ...]:
    files = [BundleFile(role, f.path, f.sha256, f.bytes) for role, f in bundle.manifest.files.items()]
    manifest = bundle.root / MANIFEST_NAME
    files.append(BundleFile("manifest", MANIFEST_NAME, bundle.sha256, manifest.stat().st_size))
    return tuple(sorted(files, key=lambda f: f.role))


def drive_meta(config: CarConfig, bundle: ModelBundle, threshold: float, source_id: str) -> DriveMeta:
    return DriveMeta(
        started_utc=utc_now(),
        source_kind=config.source.kind,
        source_id=source_id,
        bundle_name=bundle.manifest.name,
        bundle_path=str(bundle.root.resolve()),
        bundle_sha256=bundle.sha256,
        runtime=config.model.runtime,
        threshold=threshold,
        frame_format=config.log.frame_format,
        config_json=config.to_json(),
        versions=versions(),
        bundle_files=bundle_files(bundle),
    )


def with_source_info(meta: DriveMeta, source: FrameSource, out: Callable[[str], None]) -> DriveMeta:
    """The camera's negotiated format and controls (`source.info()`) as the run row's `versions_json`
    entry "camera" (a JSON object in a string), so that no drive-log schema changes. What the driver gave
    that differs from what was asked is printed."""
    info = source_info(source)
    warnings = info.get("warnings")
    for warning in warnings if isinstance(warnings, list) else []:
        out(f"camera: {warning}")
    if not info:
        return meta
    from dataclasses import replace

    return replace(meta, versions=(*meta.versions, ("camera", json.dumps(info, sort_keys=True, default=str))))


def log_source_info_at_end(writer: DriveLogWriter, meta: DriveMeta, info: dict[str, object]) -> None:
    """Controls set during the drive (exposure locked after a while) go into `events` as "camera"."""
    if info and dict(meta.versions).get("camera") != json.dumps(info, sort_keys=True, default=str):
        writer.event("camera", json.dumps(info, sort_keys=True, default=str))


@contextlib.contextmanager
def stop_on_signals(request_stop: Callable[[str], None]) -> Iterator[None]:
    """SIGINT/SIGTERM ask the loop to stop (it sends STOP); the previous handlers come back afterwards."""
    if sys.platform == "win32" or not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        request_stop(signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def motor_provider(mcu: McuHandle, link: object) -> Callable[[], float]:
    """The firmware's motor output as a fraction: read from the virtual MCU, else from the newest ACK."""
    if mcu.motor_fraction is not None:
        return mcu.motor_fraction

    def from_ack() -> float:
        ack = getattr(link, "last_ack", None)
        return 0.0 if ack is None else float(ack.motor_fraction)

    return from_ack


def drive(
    config: CarConfig,
    *,
    log_path: Path | None = None,
    hooks: DriveHooks | None = None,
    out: Callable[[str], None] = print,
) -> DriveResult:
    """Run one drive as configured; returns where the log is and what happened."""
    from firmware_bridge.link import SerialLink

    t_start = time.monotonic()
    clock = MonotonicClock()
    warming = warm_up_source(config)
    bundle = load_model(config)
    hooks = hooks or DriveHooks()
    detector = configured_detector(bundle, config)
    if hooks.wrap_detector is not None:
        detector = hooks.wrap_detector(detector)
    params = PolicyParams.from_config(config.policy, bundle.manifest.threshold)
    path = log_path or default_log_path(config)

    with contextlib.ExitStack() as stack:
        mcu = start_mcu(config)
        stack.callback(mcu.close)
        link = SerialLink(
            mcu.port,
            baudrate=config.link.baudrate,
            ack_timeout_s=config.link.ack_timeout_s,
            handshake_timeout_s=config.link.handshake_timeout_s,
        )
        link.open()
        stack.callback(link.close)  # sends STOP once more

        if warming is not None:
            warming.join()
        source = build_source(config, SourceContext(clock, motor_provider(mcu, link)))
        if hooks.wrap_source is not None:
            source = hooks.wrap_source(source)
        source.open()  # before the log, so that the run row records what the camera negotiated
        stack.callback(source.close)
        meta = with_source_info(
            drive_meta(config, bundle, params.threshold, getattr(source, "name", config.source.kind)),
            source,
            out,
        )
        writer = DriveLogWriter(
            path,
            meta,
            queue_size=config.log.queue_size,
            commit_interval_s=config.log.commit_interval_s,
            jpeg_quality=config.log.jpeg_quality,
        )
        writer.open()
        summary_box: list[RunSummary] = []
        stack.callback(lambda: writer.close(summary_box[0] if summary_box else None))
        stack.callback(lambda: log_source_info_at_end(writer, meta, source_info(source)))

        # Arm last: the firmware watchdog counts from ARM; the loop's first command follows at once.
        firmware = describe_firmware(link.handshake())
        first_command: list[float] = []
        record_hook = _first_command_hook(first_command, hooks.on_record)
        loop = ControlLoop(
            source=source,
            detector=detector,
            preprocessing=bundle.manifest.preprocessing,
            policy=Policy(params),
            link=BridgeMotorLink(link),
            sink=writer,
            clock=clock,
            config=config.loop,
            drive_speed=config.policy.drive_speed,
            on_record=record_hook,
            operator=hooks.operator,
        )
        out(
            f"car drive: {bundle.manifest.name} ({config.model.runtime}) on {source.name}, "
            f"{mcu.description}, {firmware}; log {path}"
        )
        if hooks.on_ready is not None:
            hooks.on_ready(loop, mcu)
        link.arm()
        with stop_on_signals(loop.request_stop):
            try:
                summary = loop.run()
            except BaseException:
                summary_box.append(_with_drops(loop.summary(loop.stop_reason or "exception"), writer))
                raise
        summary = _with_drops(summary, writer)
        summary_box.append(summary)
    result = DriveResult(
        log_path=path,
        summary=summary,
        firmware=firmware,
        startup_s=(first_command[1] - t_start) if first_command else float("nan"),
        first_command_unix=first_command[0] if first_command else None,
    )
    out(format_summary(result))
    return result


def describe_firmware(info: FirmwareInfo) -> str:
    return (
        f"firmware {info.firmware_version} (protocol v{info.protocol_version}, "
        f"watchdog {info.watchdog_ms} ms)"
    )


def _first_command_hook(
    first_command: list[float], on_record: Callable[[DriveRecord], None] | None
) -> Callable[[DriveRecord], None]:
    """A record hook that notes when the first command went out (wall and monotonic time), then calls on."""

    def record_hook(record: DriveRecord) -> None:
        if not first_command and record.command is not None:
            first_command.append(time.time())
            first_command.append(time.monotonic())
        if on_record is not None:
            on_record(record)

    return record_hook


def _with_drops(summary: RunSummary, writer: DriveLogWriter) -> RunSummary:
    from dataclasses import replace

    return replace(summary, dropped_images=writer.dropped_images, dropped_records=writer.dropped_records)


def format_summary(result: DriveResult) -> str:
    s = result.summary
    faults = ", ".join(f"{k} {n}" for k, n in s.fault_counts) or "none"
    lines = [
        f"drive ended: {s.end_reason}",
        f"  ticks {s.ticks}, frames {s.frames}, decisions GO {s.drives} / STOP {s.stops}, "
        f"overruns {s.overruns}",
        f"  faults: {faults}",
        f"  dropped images {s.dropped_images}, dropped records {s.dropped_records}",
        f"  start-up to first command {result.startup_s * 1000:.0f} ms",
        "  per-stage timing (latency = capture -> command bytes written):",
        format_stats(s.stages),
        f"log: {result.log_path}",
    ]
    return "\n".join(lines)
