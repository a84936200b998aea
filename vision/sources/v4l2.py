"""What a V4L2 device offers (formats, sizes, rates), read with the kernel's own ioctls (no extra package).

`list_devices()` serves `car camera list`; `offers_mjpeg()` lets the OpenCV camera ask for MJPEG only where
the device has it. Layouts and request numbers are those of <linux/videodev2.h> (the same on x86-64 and
ARM); a device that answers none of this (or no /dev/video* at all) gives an empty list, not an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def _iowr(nr: int, size: int, read_only: bool = False) -> int:
    direction = 2 if read_only else 3  # _IOR / _IOWR
    return (direction << 30) | (size << 16) | (ord("V") << 8) | nr


_CAP = struct.Struct("16s32s32sIII12x")  # struct v4l2_capability (104 bytes)
_FMT = struct.Struct("III32sII12x")  # struct v4l2_fmtdesc (64 bytes)
_SIZE = struct.Struct("IIIIIIIII8x")  # struct v4l2_frmsizeenum (44 bytes)
_IVAL = struct.Struct("IIIIIIIIIII8x")  # struct v4l2_frmivalenum (52 bytes)
VIDIOC_QUERYCAP = _iowr(0, _CAP.size, read_only=True)
VIDIOC_ENUM_FMT = _iowr(2, _FMT.size)
VIDIOC_ENUM_FRAMESIZES = _iowr(74, _SIZE.size)
VIDIOC_ENUM_FRAMEINTERVALS = _iowr(75, _IVAL.size)
BUF_TYPE_VIDEO_CAPTURE = 1
CAP_VIDEO_CAPTURE = 0x1
CAP_DEVICE_CAPS = 0x80000000
DISCRETE = 1
MJPEG_CODES = ("MJPG", "JPEG")


def fourcc_text(code: int) -> str:
    return code.to_bytes(4, "little").decode("ascii", "replace").strip()


@dataclass(frozen=True, slots=True)
class FrameSize:
    width: int
    height: int
    fps: tuple[float, ...]  # discrete rates; empty when the driver gives a range


@dataclass(frozen=True, slots=True)
class PixelFormat:
    fourcc: str
    description: str
    sizes: tuple[FrameSize, ...]


@dataclass(frozen=True, slots=True)
class VideoDevice:
    path: str
    card: str
    driver: str
    bus: str
    formats: tuple[PixelFormat, ...] = field(default_factory=tuple)


def _ioctl(fd: int, request: int, packed: bytes) -> bytes | None:
    buf = bytearray(packed)
    try:
        fcntl.ioctl(fd, request, buf, True)
    except OSError:
        return None
    return bytes(buf)


def _fill(layout: struct.Struct, values: tuple[object, ...]) -> tuple[object, ...]:
    """Pad `values` with zeros (b'' for byte strings) to the layout's field count."""
    kinds = [c for c in _codes(layout.format)]
    out = list(values) + [b"" if k == "s" else 0 for k in kinds[len(values) :]]
    return tuple(out)


def _codes(fmt: str) -> list[str]:
    codes, digits = [], ""
    for ch in fmt:
        if ch.isdigit():
            digits += ch
            continue
        if ch == "x":
            digits = ""
            continue
        codes.extend([ch] if ch == "s" else [ch] * int(digits or "1"))
        digits = ""
    return codes


def _rates(fd: int, fourcc: int, width: int, height: int) -> tuple[float, ...]:
    rates = []
    for row in _enumerate_raw(fd, VIDIOC_ENUM_FRAMEINTERVALS, _IVAL, (fourcc, width, height)):
        kind, num, den = row[4], row[5], row[6]
        if kind != DISCRETE:
            break
        if num:
            rates.append(round(den / num, 2))
    return tuple(sorted(set(rates), reverse=True))


def _enumerate_raw(fd: int, request: int, layout: struct.Struct, head: tuple[int, ...]) -> Iterator[tuple]:
    for index in range(256):
        raw = _ioctl(fd, request, layout.pack(*_fill(layout, (index, *head))))
        if raw is None:
            return
        yield layout.unpack(raw)


def _sizes(fd: int, fourcc: int) -> tuple[FrameSize, ...]:
    sizes = []
    for row in _enumerate_raw(fd, VIDIOC_ENUM_FRAMESIZES, _SIZE, (fourcc,)):
        kind = row[2]
        if kind == DISCRETE:
            sizes.append(FrameSize(row[3], row[4], _rates(fd, fourcc, row[3], row[4])))
        else:  # continuous or stepwise: the largest size stands for the range
            sizes.append(FrameSize(row[4], row[7], ()))
            break
    return tuple(sizes)


def describe_device(path: str | Path) -> VideoDevice | None:
    """The device's name and capture formats; None when it is not a V4L2 capture device (or not readable)."""
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        raw = _ioctl(fd, VIDIOC_QUERYCAP, bytes(_CAP.size))
        if raw is None:
            return None
        driver, card, bus, _version, caps, device_caps = _CAP.unpack(raw)
        if caps & CAP_DEVICE_CAPS:
            caps = device_caps
        if not caps & CAP_VIDEO_CAPTURE:
            return None
        formats = tuple(
            PixelFormat(
                fourcc_text(row[4]), row[3].rstrip(b"\0").decode(errors="replace"), _sizes(fd, row[4])
            )
            for row in _enumerate_raw(fd, VIDIOC_ENUM_FMT, _FMT, (BUF_TYPE_VIDEO_CAPTURE,))
        )
        return VideoDevice(
            str(path),
            card.rstrip(b"\0").decode(errors="replace"),
            driver.rstrip(b"\0").decode(errors="replace"),
            bus.rstrip(b"\0").decode(errors="replace"),
            formats,
        )
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def list_devices(root: str | Path = "/dev") -> list[VideoDevice]:
    """Every V4L2 capture device under `root` (metadata-only nodes are left out); empty when there is none."""
    paths = sorted(Path(root).glob("video*"), key=lambda p: (len(p.name), p.name))
    found = (describe_device(p) for p in paths)
    return [d for d in found if d is not None]


def device_path(device: int | str) -> str | None:
    """/dev/videoN for an index, the path for a /dev path; None for anything else (URL, file, pipeline)."""
    if isinstance(device, int):
        return f"/dev/video{device}"
    return device if device.startswith("/dev/") else None


def offers_mjpeg(device: int | str) -> bool:
    path = device_path(device)
    found = describe_device(path) if path else None
    return found is not None and any(f.fourcc in MJPEG_CODES for f in found.formats)
