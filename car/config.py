"""The car's configuration: YAML → typed, validated, frozen dataclasses.

Every field has a default; `CarConfig()` is the embedded default and equals `configs/sim.yaml` (a test
checks). Each field's allowed values live in its metadata (`choices`, `min`, `max`, `help`), so validation,
error messages and the README's field table come from one place. A bad key or value fails at start-up with
one line naming the file, the key, the value and what is allowed (`CarError`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from car.errors import CarError
from vision.sources.registry import CAMERA_BACKENDS, options_for, unread_keys

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG_FILE = CONFIG_DIR / "sim.yaml"


def _f(default: Any, help: str, **rules: Any) -> Any:
    """A dataclass field with its documentation and validation rules."""
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True, slots=True)
class SourceKind:
    """A `source.kind`: what it is, and the `source.*` keys it needs (car.build holds its builder)."""

    help: str
    needs: tuple[tuple[str, str], ...] = ()  # (key, what it is) pairs that must not be empty


SOURCE_KINDS: dict[str, SourceKind] = {
    "sim": SourceKind("the simulated world's forward camera"),
    "camera": SourceKind(
        "a camera through source.backend (see CAMERA_BACKENDS)", needs=(("device", "the camera"),)
    ),
    "video": SourceKind("a video file, paced at source.fps", needs=(("path", "the video file"),)),
    "folder": SourceKind(
        "a dataset folder's images, labels as ground truth", needs=(("path", "the image folder"),)
    ),
    "replay": SourceKind("a drive log's frames", needs=(("path", "the drive log"),)),
}
MCU_KINDS = ("virtual", "avr", "serial")
# keys no other source kind reads (fps is also the playback rate of video/folder/replay)
CAMERA_ONLY_KEYS = ("device", "backend", "width", "height", "lock_exposure_after_s", "lock_white_balance")


@dataclass(frozen=True, slots=True)
class SourceConfig:
    kind: str = _f("sim", "where frames come from", choices=tuple(SOURCE_KINDS))
    device: str = _f(
        "0",
        "camera: a device index (0), a device path, a video file (played at its own rate), a URL (rtsp://, "
        "http://); backend gst: a GStreamer pipeline ending in appsink; picamera2: the camera number",
    )
    backend: str = _f(
        "any",
        "camera: how it is read (OpenCV: any, v4l2, gstreamer, ffmpeg; gst: GStreamer through PyGObject; "
        "picamera2: Raspberry Pi camera)",
        choices=tuple(CAMERA_BACKENDS),
    )
    width: int = _f(0, "camera: requested frame width in pixels (0: the driver's default)", min=0)
    height: int = _f(0, "camera: requested frame height in pixels (0: the driver's default)", min=0)
    path: str = _f("", "video: the video file; folder: the image folder; replay: the drive log")
    fps: float = _f(
        30.0,
        "camera: requested capture rate; video/folder/replay: playback rate (0: as fast as they decode)",
        min=0.0,
    )
    loop: bool = _f(False, "video/folder/replay: start again at the end instead of ending the drive")
    lock_exposure_after_s: float = _f(
        0.0,
        "camera (v4l2/any, picamera2): switch auto exposure off this long after start, keeping the settled "
        "value (0: leave it on); a driver that refuses is reported",
        min=0.0,
    )
    lock_white_balance: bool = _f(
        False,
        "camera (v4l2/any, picamera2): switch auto white balance off when the exposure locks (or at start), "
        "keeping the settled value",
    )

    def camera_options(self) -> Any:
        """The chosen camera backend's options class, filled from these keys."""
        return options_for(self.backend, dataclasses.asdict(self))


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int = _f(0, "seed of the simulated world (same seed, same scene and frames)", min=0)
    scene: str = _f("can_path", "scene kind placed in the world (a vision.sim scene kind, or 'random')")
    start_distance_m: float = _f(
        0.0, "distance from the car to the can at the start (0: random, 1.0 to 2.5 m)", min=0.0
    )
    camera_thread: bool = _f(
        False,
        "car drive: render on a thread of its own like a camera (newest frame wins), overlapping inference "
        "on a second core (frames then wait for the loop: longer latency)",
    )
    episode_pause_s: float = _f(
        3.0,
        "car drive: after standing still this long (or at the track's end) the next scene begins",
        min=0.1,
    )
    domain: str = _f(
        "default",
        "the world's look: a name in vision.sim.domains (default, or shifted: unseen floors, light)",
    )


@dataclass(frozen=True, slots=True)
class LinkConfig:
    mcu: str = _f(
        "virtual",
        "virtual: the Python virtual microcontroller on a pty (simulation); avr: the AVR firmware in the "
        "simavr emulator; serial: a real microcontroller on `port`",
        choices=MCU_KINDS,
    )
    port: str = _f(
        "", "serial: the port (/dev/ttyUSB0, /dev/ttyACM0, socket://host:port, spy:///dev/ttyUSB0)"
    )
    baudrate: int = _f(115200, "serial speed (8N1)", min=1200)
    ack_timeout_s: float = _f(0.1, "a command not acknowledged within this time is a fault", min=0.001)
    handshake_timeout_s: float = _f(2.0, "time allowed for the hello/arm handshake at start-up", min=0.01)
    watchdog_ms: int = _f(
        250, "virtual/avr: the firmware's command watchdog (motors off after silence)", min=10
    )


@dataclass(frozen=True, slots=True)
class ModelConfig:
    bundle: str = _f("models/edge-sim", "the model bundle folder (relative paths: from here, then the repo)")
    runtime: str = _f("fp32", "which ONNX network of the bundle drives", choices=("fp32", "int8"))
    threads: int = _f(1, "onnxruntime intra-op threads", min=1, max=64)


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    threshold: float | None = _f(
        None, "P(STOP) above this means STOP (null: the bundle manifest's threshold)", min=0.0, max=1.0
    )
    go_frames: int = _f(3, "consecutive confident GO frames needed to drive again after a STOP", min=1)
    go_margin: float = _f(
        0.1, "a GO frame is confident when P(STOP) < threshold - go_margin", min=0.0, max=1.0
    )
    drive_speed: float = _f(0.5, "speed sent with DRIVE, as a fraction of full throttle", min=0.0, max=1.0)
    slow_when_unsure: bool = _f(
        True, "scale the DRIVE speed down as the caution (P(STOP), recent evidence, unfamiliarity) rises"
    )
    slow_from: float = _f(0.1, "caution at which the car starts to slow down", min=0.0, max=1.0)
    slowest: float = _f(
        0.4, "speed at full caution (at the STOP threshold), as a fraction of drive_speed", min=0.0, max=1.0
    )
    evidence_frames: int = _f(
        4, "caution is at least the mean P(STOP) of this many recent frames (0: this frame only)", min=0
    )
    ood: bool = _f(
        True,
        "use the bundle's out-of-distribution calibration (fp32): unfamiliar frames slow the car, past its "
        "limit STOP with fault out_of_distribution",
    )
    ood_signals: str = _f(
        "features,image",
        "which of the calibration's signals to use, comma-separated: features (the network's own), image "
        "(floor and wall colour, exposure, sharpness statistics)",
        choices=("features", "features,image", "image"),
    )
    ood_hold: bool = _f(
        True,
        "after an out_of_distribution STOP, drive again only on go_frames GO frames that are also familiar",
    )
    ood_resume_below: float = _f(
        0.0,
        "with ood_hold: a frame is familiar at this unfamiliarity or below (0: under every signal's "
        "slow-down point)",
        min=0.0,
        max=1.0,
    )
    stop_memory_frames: int = _f(
        15,
        "after a STOP on P(STOP), drive again only once this many frames in a row stayed at or under the "
        "threshold (0: off; 15 frames is half a second at 30 Hz)",
        min=0,
    )


@dataclass(frozen=True, slots=True)
class LoopConfig:
    rate_hz: float = _f(30.0, "fixed loop rate (0: as fast as frames arrive)", min=0.0, max=1000.0)
    duration_s: float = _f(
        0.0, "stop the drive after this many seconds (0: until Ctrl-C or the end)", min=0.0
    )
    max_frame_age_s: float = _f(0.1, "a frame captured longer ago than this is stale: STOP", min=0.001)
    frame_timeout_s: float = _f(0.1, "no frame within this time is a fault: STOP", min=0.001)
    blank_low: int = _f(8, "a frame with 99 % of its pixels at most this is all black: STOP", min=0, max=255)
    blank_high: int = _f(
        247, "a frame with 99 % of its pixels at least this is all white: STOP", min=0, max=255
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    dir: str = _f("runs/drives", "folder for drive logs (one <UTC timestamp>.sqlite per drive)")
    path: str = _f("", "write the log to this file instead (must not exist)")
    frame_format: str = _f("png", "png stores frames losslessly; jpeg is smaller", choices=("png", "jpeg"))
    jpeg_quality: int = _f(90, "jpeg: quality", min=1, max=100)
    queue_size: int = _f(256, "records waiting for the writer thread before images are dropped", min=1)
    commit_interval_s: float = _f(0.25, "the log commits at least this often (≤ 1 s)", min=0.01, max=1.0)


WEB_MODES = ("auto", "manual")


@dataclass(frozen=True, slots=True)
class WebConfig:
    listen: str = _f(
        "",
        "serve the live web console on [HOST:]PORT ('' = off; HOST defaults to 127.0.0.1; any other "
        "address needs web.token)",
    )
    token: str = _f(
        "",
        "access token for the console ('' = none, allowed on 127.0.0.1 only; 'auto' = a random one, "
        "printed at start); the environment variable CAR_WEB_TOKEN wins",
    )
    fps: float = _f(
        10.0, "camera frames a second sent to each viewer (slow viewers get fewer)", min=0.5, max=60.0
    )
    mode: str = _f(
        "auto",
        "auto: the policy drives; manual: the page drives (teleop, network in shadow)",
        choices=WEB_MODES,
    )
    teleop_max_speed: float = _f(
        0.3, "manual: the highest speed fraction the page may ask for", min=0.0, max=1.0
    )


@dataclass(frozen=True, slots=True)
class CarConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    link: LinkConfig = field(default_factory=LinkConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    log: LogConfig = field(default_factory=LogConfig)
    web: WebConfig = field(default_factory=WebConfig)

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in section_names()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def section_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(CarConfig))


def section_type(name: str) -> type[Any]:
    hints = typing.get_type_hints(CarConfig)
    cls: type[Any] = hints[name]
    return cls


# -- parsing ----------------------------------------------------------------------------------------------


def _allowed(f: dataclasses.Field[Any], kind: str) -> str:
    parts: list[str] = []
    if "choices" in f.metadata:
        parts.append("one of " + ", ".join(f.metadata["choices"]))
    else:
        parts.append(kind)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None and hi is not None:
            parts.append(f"from {lo} to {hi}")
        elif lo is not None:
            parts.append(f">= {lo}")
    return " ".join(parts)


_INVALID = object()
"""What a converter returns for a value of the wrong type."""


def _as_bool(value: object) -> object:
    return value if isinstance(value, bool) else _INVALID


def _as_int(value: object) -> object:
    return _INVALID if isinstance(value, bool) or not isinstance(value, int) else value


def _as_float(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return _INVALID
    number = float(value)
    return _INVALID if math.isnan(number) else number


def _as_str(value: object) -> object:
    return _INVALID if isinstance(value, bool) or not isinstance(value, str | int | float) else str(value)


_CONVERTERS: dict[type, tuple[str, Callable[[object], object]]] = {
    bool: ("true or false", _as_bool),
    int: ("an integer", _as_int),
    float: ("a number", _as_float),
    str: ("a string", _as_str),
}
"""A config field's Python type: (how the error names it, value -> the value in that type or _INVALID)."""


def _within_rules(converted: object, f: dataclasses.Field[Any]) -> bool:
    """The field's `choices`, `min` and `max` metadata allow `converted`."""
    choices = f.metadata.get("choices")
    if choices is not None and converted not in choices:
        return False
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if not isinstance(converted, int | float) or isinstance(converted, bool):
        return True
    return not ((lo is not None and converted < lo) or (hi is not None and converted > hi))


def _convert(value: object, hint: object, f: dataclasses.Field[Any], where: str) -> object:
    """Check one value against its field's type and rules; return it in the field's type."""
    args = typing.get_args(hint)
    optional = (typing.get_origin(hint) in (typing.Union, types.UnionType)) and type(None) in args
    base = next(a for a in args if a is not type(None)) if optional else hint
    kind_name, convert = _CONVERTERS[base]  # type: ignore[index]
    if optional:
        kind_name += " or null"
    if value is None:
        if optional:
            return None
        raise CarError(f"{where}=null: expected {_allowed(f, kind_name)}")
    converted = convert(value)
    if converted is _INVALID and base is bool:
        raise CarError(f"{where}={value!r}: expected true or false")
    if converted is _INVALID or not _within_rules(converted, f):
        raise CarError(f"{where}={value!r}: expected {_allowed(f, kind_name)}")
    return converted


def _build_section(name: str, data: object, origin: str) -> Any:
    cls = section_type(name)
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise CarError(f"{origin}: {name}={data!r}: expected a mapping of keys (see configs/sim.yaml)")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, object] = {}
    for key, value in data.items():
        if key not in fields:
            raise CarError(f"{origin}: unknown key {name}.{key}; allowed: {', '.join(fields)}")
        values[key] = _convert(value, hints[key], fields[key], f"{origin}: {name}.{key}")
    return cls(**values)


def config_from_mapping(doc: object, origin: str = "<config>") -> CarConfig:
    if doc is None:
        return CarConfig()
    if not isinstance(doc, Mapping):
        raise CarError(f"{origin}: expected a mapping of sections ({', '.join(section_names())})")
    unknown = [k for k in doc if k not in section_names()]
    if unknown:
        raise CarError(f"{origin}: unknown section {unknown[0]!r}; allowed: {', '.join(section_names())}")
    config = CarConfig(**{name: _build_section(name, doc.get(name), origin) for name in section_names()})
    check_consistency(config, origin)
    return config


def check_consistency(config: CarConfig, origin: str) -> None:
    """Rules that involve more than one field."""
    if config.loop.blank_low >= config.loop.blank_high:
        raise CarError(
            f"{origin}: loop.blank_low={config.loop.blank_low} must be below "
            f"loop.blank_high={config.loop.blank_high}"
        )
    check_source(config.source, origin)
    if config.link.mcu == "serial" and not config.link.port:
        raise CarError(f"{origin}: link.mcu=serial needs link.port (e.g. /dev/ttyUSB0)")


def check_source(source: SourceConfig, origin: str) -> None:
    """The kind's required keys; for a camera, no key set that its backend would silently ignore."""
    for key, what in SOURCE_KINDS[source.kind].needs:
        if not getattr(source, key):
            raise CarError(f"{origin}: source.kind={source.kind} needs source.{key} ({what})")
    defaults = SourceConfig()
    if source.kind != "camera":
        for key in CAMERA_ONLY_KEYS:
            if getattr(source, key) != getattr(defaults, key):
                raise CarError(
                    f"{origin}: source.{key}={getattr(source, key)!r} is only read by source.kind=camera "
                    f"(source.kind is {source.kind}); set source.kind=camera too"
                )
        return
    for key in unread_keys(source.backend):
        if getattr(source, key) != getattr(defaults, key):
            raise CarError(
                f"{origin}: source.{key}={getattr(source, key)!r} is not read by source.backend="
                f"{source.backend} ({CAMERA_BACKENDS[source.backend].help}); remove it"
            )


def load_config(path: str | Path | None = None) -> CarConfig:
    """Read a YAML config file; `None` gives the embedded default (= configs/sim.yaml)."""
    if path is None:
        return CarConfig()
    path = Path(path)
    if not path.is_file():
        raise CarError(f"{path}: no such config file; see configs/sim.yaml and configs/car.yaml")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CarError(f"{path}: not valid YAML ({first}); fix the file") from None
    return config_from_mapping(doc, str(path))


def with_overrides(config: CarConfig, assignments: Sequence[str], origin: str = "--set") -> CarConfig:
    """Apply `section.key=value` overrides (values parsed as YAML scalars), validated like the file."""
    doc: dict[str, dict[str, object]] = config.to_dict()
    for text in assignments:
        dotted, sep, raw = text.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot:
            raise CarError(f"{origin} {text!r}: write section.key=value, e.g. loop.rate_hz=20")
        if section not in doc:
            raise CarError(f"{origin} {text!r}: unknown section {section!r}; allowed: {', '.join(doc)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        doc[section][key] = value
    return config_from_mapping(doc, origin)


def replace_field(config: CarConfig, section: str, **changes: object) -> CarConfig:
    """A copy with some fields of one section changed (for CLI flags such as --duration)."""
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


def dotted_items(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as one flat mapping with dotted keys, as `--set` names them (`policy.drive_speed`)."""
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, Mapping):
            flat.update(dotted_items(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resolve_path(value: str) -> Path:
    """A path from the config: absolute as is; relative from the working folder, else from the repo."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p
    in_repo = REPO_ROOT / p
    return in_repo if in_repo.exists() else p


def field_docs() -> list[tuple[str, str, str, str]]:
    """(key, default, allowed, help) for every field, for the README and `car drive --list-config`."""
    rows = []
    for name in section_names():
        cls = section_type(name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = {bool: "bool", int: "int", float: "number", str: "text"}.get(
                hints[f.name], "number or null"
            )
            rows.append((f"{name}.{f.name}", json.dumps(f.default), _allowed(f, kind), f.metadata["help"]))
    return rows
