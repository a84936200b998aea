"""The ground-truth mask codec: a boolean mask as a single-channel PNG (255 = the can's pixels)."""

from __future__ import annotations

import cv2
import numpy as np

from car.errors import CarError


def encode_mask(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8))
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 2-D array
        raise ValueError("could not PNG-encode mask")
    return buf.tobytes()


def decode_mask(data: bytes) -> np.ndarray:
    gray = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if gray is None:
        raise CarError("drive log: a stored mask is not a decodable PNG; the log is damaged")
    return gray > 127
