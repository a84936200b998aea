"""The camera backend seam: the registry drives the config's choices and checks; a video file given as the
camera plays at its own rate and ends the drive with end_of_stream (a real mp4v file written by OpenCV)."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from car.build import SOURCE_BUILDERS
from car.config import SOURCE_KINDS, CarConfig, SourceConfig, with_overrides
from car.drivelog import DriveLogReader
from car.errors import CarError
from car.run_drive import drive
from car.types import FaultKind
from tests.test_loop import bundles, quiet, sim_config  # noqa: F401  (the fixture is used by name)
from vision.sources import CameraSource, EndOfStream, SourceOpenError
from vision.sources.registry import CAMERA_BACKENDS, open_camera, unread_keys

FPS, N = 30.0, 24


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, (160, 120))
    assert writer.isOpened()
    for i in range(N):
        writer.write(np.full((120, 160, 3), (40 + 5 * i, 90, 160), np.uint8))
    writer.release()
    return path


def test_every_registered_backend_is_a_config_choice_with_an_options_class_and_a_source() -> None:
    field = next(f for f in dataclasses.fields(SourceConfig) if f.name == "backend")
    assert field.metadata["choices"] == tuple(CAMERA_BACKENDS)
    every_key = {f.name for f in dataclasses.fields(SourceConfig)}
    for name, spec in CAMERA_BACKENDS.items():
        assert spec.name == name and spec.help
        keys = {f.name for f in dataclasses.fields(spec.options)}
        assert "device" in keys and keys <= every_key, name  # options are source.* keys
        module, _, cls = spec.source.partition(":")
        source_cls = getattr(importlib.import_module(module), cls)  # importable without its library
        assert callable(source_cls.from_options), name
        config = with_overrides(CarConfig(), ["source.kind=camera", f"source.backend={name}"])
        options = config.source.camera_options()
        assert isinstance(options, spec.options)
    assert unread_keys("gst") == (
        "fps", "height", "lock_exposure_after_s", "lock_white_balance", "width"
    )  # fmt: skip


def test_every_source_kind_has_a_builder() -> None:
    field = next(f for f in dataclasses.fields(SourceConfig) if f.name == "kind")
    assert field.metadata["choices"] == tuple(SOURCE_KINDS)
    assert set(SOURCE_KINDS) == set(SOURCE_BUILDERS)


def test_a_key_the_backend_would_ignore_is_refused() -> None:
    with pytest.raises(CarError, match=r"source\.width=640 is not read by source\.backend=gst"):
        with_overrides(CarConfig(), ["source.kind=camera", "source.backend=gst", "source.width=640"])
    with pytest.raises(CarError, match=r"source\.backend='gst' is only read by source\.kind=camera"):
        with_overrides(CarConfig(), ["source.backend=gst"])  # kind is still sim: it would be ignored
    with pytest.raises(CarError, match=r"source\.backend='webcam': expected one of any, v4l2"):
        with_overrides(CarConfig(), ["source.backend=webcam"])


def test_opencv_gstreamer_without_gstreamer_points_to_gst() -> None:
    from vision.sources.opencv import opencv_has_gstreamer

    if opencv_has_gstreamer():
        pytest.skip("this OpenCV has GStreamer")
    pipeline = "videotestsrc ! videoconvert ! appsink"
    for backend in ("gstreamer", "any"):
        with pytest.raises(SourceOpenError, match=r"built without GStreamer.*source\.backend: gst") as err:
            open_camera(
                backend,
                with_overrides(
                    CarConfig(), ["source.kind=camera", f"source.device={pipeline}"]
                ).source.camera_options(),
            ).open()
        assert "\n" not in str(err.value)


def test_a_video_file_as_the_camera_plays_at_its_own_rate_and_ends(clip: Path) -> None:
    with CameraSource(str(clip)) as camera:
        assert camera.info()["file"] is True and camera.info()["fps"] == pytest.approx(FPS)
        frames = []
        with pytest.raises(EndOfStream, match="end of video file"):
            while True:
                frames.append(camera.read(2.0))
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and seqs[-1] == N - 1  # the last frame comes before the end
    # paced at the file's rate: never faster than 1/FPS per frame (a lower bound holds on any machine)
    span = frames[-1].t_capture - frames[0].t_capture
    assert span >= (seqs[-1] - seqs[0]) / FPS * 0.9


def test_a_video_file_whose_rate_is_unknown_is_refused_with_a_pointer(clip: Path) -> None:
    class NoRate:
        """The real capture of the clip, but without a frame rate (as some containers have)."""

        def __init__(self, device: int | str, api: int) -> None:
            self.cap = cv2.VideoCapture(device, api)

        def isOpened(self) -> bool:
            return bool(self.cap.isOpened())

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_FPS else float(self.cap.get(prop))

        def release(self) -> None:
            self.cap.release()

    with pytest.raises(SourceOpenError, match=r"use source\.kind: video"):
        CameraSource(str(clip), capture_factory=NoRate).open()  # type: ignore[arg-type]


def test_a_drive_on_a_video_file_as_the_camera_ends_with_end_of_stream(
    clip: Path,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    config = sim_config(
        bundles["always_go"], "source.kind=camera", f"source.device={clip}", "loop.duration_s=30"
    )
    result = drive(config, log_path=tmp_path / "d.sqlite", out=quiet)
    faults = dict(result.summary.fault_counts)
    assert result.summary.end_reason == "end of stream"
    assert faults.get(FaultKind.END_OF_STREAM.value) == 1
    assert FaultKind.SOURCE_ERROR.value not in faults
    assert result.summary.frames >= 2
    with DriveLogReader(tmp_path / "d.sqlite") as log:  # the run row records what the camera negotiated
        camera = json.loads(dict(log.meta.versions)["camera"])
    assert camera["file"] is True and camera["fps"] == pytest.approx(FPS) and camera["width"] == 160
