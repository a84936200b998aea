"""The only place images are read from or written to disk.

OpenCV works in BGR; everything in this project works in RGB. Converting here, once, is what makes the
published notebook's mistake (training on BGR, explaining RGB) impossible: no other module calls
`cv2.imread` or `cv2.imwrite`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision.errors import VisionError


class ImageReadError(VisionError, ValueError):
    """An image file that cannot be used; the message names the file and what to do."""


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file; check the path")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError(
            f"{path}: not a readable image (corrupt or unsupported format); remove or replace it"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, rgb: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write an RGB uint8 image; the format follows the suffix (.jpg, .png)."""
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_rgb({path}): expected RGB uint8 H×W×3, got {rgb.dtype} {rgb.shape}")
    params: list[int] = []
    if path.suffix.lower() in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
        raise OSError(f"{path}: could not write image; check the folder exists and is writable")


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless in-memory encoding (drive logs store frames this way by default)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("could not PNG-encode frame")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not JPEG-encode frame")
    return buf.tobytes()


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to RGB uint8."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageReadError("stored image bytes are not a decodable PNG/JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
