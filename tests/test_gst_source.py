"""source.backend: gst on real GStreamer pipelines (videotestsrc, identity, valve): frames, rates, the end of
the stream, pipelines that do not parse, do not start, stall or fail, and a real drive on each."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from car.config import CarConfig, with_overrides
from car.drivelog import DriveLogReader
from car.loop import ControlLoop
from car.run_drive import DriveHooks, drive
from car.types import DriveRecord, FaultKind, Reason
from tests.test_loop import bundles, quiet, sim_config  # noqa: F401  (the fixture is used by name)
from vision.labels import GO, STOP
from vision.sources import EndOfStream, SourceFailure, SourceOpenError, SourceTimeout, open_camera

pytest.importorskip("gi", reason="the camera extra (PyGObject) is not installed")
from vision.sources.gst import GstSource

CAPS = "video/x-raw,width=160,height=120,framerate=30/1"
LIVE = f"videotestsrc is-live=true ! {CAPS} ! videoconvert ! appsink"


def test_frames_in_order_at_the_stream_rate_then_end_of_stream() -> None:
    with GstSource(f"videotestsrc num-buffers=30 ! {CAPS} ! videoconvert ! appsink") as source:
        frames = []
        with pytest.raises(EndOfStream, match=r"end of stream after \d+ frames"):
            while True:
                frames.append(source.read(2.0))
        info = source.info()
        # every frame the stream made was either read, replaced by a newer one, or dropped by the one-buffer
        # appsink when this machine was too busy to pull it: none is lost without being counted
        assert len(frames) + source.skipped + source.upstream_dropped == 30
    assert [f.seq for f in frames] == sorted({f.seq for f in frames})
    assert all(f.rgb.shape == (120, 160, 3) and f.rgb.dtype == np.uint8 for f in frames)
    assert info["format"] == "RGB" and info["fps"] == 30.0 and info["width"] == 160
    # capture times come from the buffers' timestamps: on a 1/30 s grid however busy the machine
    steps = np.diff([f.t_capture for f in frames]) * 30.0
    assert (np.round(steps) >= 1).all() and np.abs(steps - np.round(steps)).max() < 0.2
    span = frames[-1].t_capture - frames[0].t_capture
    assert round(span * 30.0) <= 29


def test_rows_padded_to_four_bytes_and_bgr_are_read_right() -> None:
    # width 161 in RGB: 483 bytes a row, padded to 484 by GStreamer; pattern 'red' is pure red
    with GstSource(
        "videotestsrc num-buffers=2 pattern=red ! video/x-raw,width=161,height=9 ! videoconvert ! "
        "video/x-raw,format=BGR ! appsink caps=video/x-raw,format=BGR"
    ) as source:
        frame = source.read(2.0)
    assert frame.rgb.shape == (9, 161, 3)
    assert (frame.rgb[:, :, 0] > 200).all() and (frame.rgb[:, :, 1:] < 50).all()


def test_a_missing_element_names_the_package_that_provides_it() -> None:
    with pytest.raises(SourceOpenError, match=r"no element 'libcamerasrc'.*gstreamer1\.0-libcamera") as err:
        GstSource("libcamerasrc ! videoconvert ! appsink").open()
    assert "\n" not in str(err.value)
    with pytest.raises(SourceOpenError, match=r"no element 'nosuchsrc'.*gst-inspect-1\.0"):
        GstSource("nosuchsrc ! appsink").open()


def test_a_pipeline_that_fails_to_start_names_the_element() -> None:
    with pytest.raises(
        SourceOpenError, match=r"failed to start: element v4l2src\d: .*/dev/video-none"
    ) as err:
        GstSource("v4l2src device=/dev/video-none ! videoconvert ! appsink").open()
    assert "\n" not in str(err.value)
    with pytest.raises(SourceOpenError, match="must end in appsink"):
        GstSource("videotestsrc ! fakesink").open()


def test_a_stalled_pipeline_times_out_and_an_erroring_one_fails_naming_the_element() -> None:
    with GstSource(
        f"videotestsrc is-live=true ! {CAPS} ! valve name=gate ! videoconvert ! appsink"
    ) as source:
        source.read(2.0)
        source.pipeline.get_by_name("gate").set_property("drop", True)
        with pytest.raises(SourceTimeout):  # after at most the one frame that was on its way
            for _ in range(3):
                source.read(0.5)
    erroring = GstSource(f"videotestsrc ! {CAPS} ! identity error-after=5 ! videoconvert ! appsink")
    with erroring, pytest.raises(SourceFailure, match=r"element identity\d"):
        while True:
            erroring.read(2.0)


def test_without_the_camera_extra_gst_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gi", None)  # as if PyGObject were not installed
    with pytest.raises(
        SourceOpenError, match=r"pip install '\.\[camera\]'.*gstreamer1\.0-plugins-good"
    ) as err:
        GstSource(LIVE).open()
    assert "\n" not in str(err.value)


def gst_config(bundle: Path, pipeline: str, *more: str) -> CarConfig:
    return sim_config(bundle, "source.kind=camera", "source.backend=gst", f"source.device={pipeline}", *more)


def test_the_registry_builds_a_gst_source_from_the_config() -> None:
    config = with_overrides(
        CarConfig(), ["source.kind=camera", "source.backend=gst", f"source.device={LIVE}"]
    )
    source = open_camera("gst", config.source.camera_options())
    assert isinstance(source, GstSource) and source.description == LIVE


def test_a_drive_on_videotestsrc_ends_with_end_of_stream(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    pipeline = f"videotestsrc is-live=true num-buffers=20 ! {CAPS} ! videoconvert ! appsink"
    result = drive(
        gst_config(bundles["always_go"], pipeline, "loop.duration_s=30"),
        log_path=tmp_path / "d.sqlite",
        out=quiet,
    )
    assert result.summary.end_reason == "end of stream"
    assert result.summary.frames >= 5 and result.summary.drives >= 1
    with DriveLogReader(tmp_path / "d.sqlite") as log:
        meta = log.meta
    assert meta.source_id.startswith("gst:videotestsrc")


@pytest.mark.parametrize(
    ("middle", "expected"),
    [("valve name=gate", FaultKind.NO_FRAME), ("identity error-after=15", FaultKind.SOURCE_ERROR)],
)
def test_a_stalling_or_erroring_pipeline_stops_the_car_with_the_reason_logged(
    middle: str,
    expected: FaultKind,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    pipeline = f"videotestsrc is-live=true ! {CAPS} ! {middle} ! videoconvert ! appsink"
    loops: list[ControlLoop] = []
    ticks: list[int] = []

    def on_record(record: DriveRecord) -> None:
        ticks.append(record.seq)
        if len(ticks) == 10 and expected is FaultKind.NO_FRAME:  # the camera stalls from here on
            loops[0].source.pipeline.get_by_name("gate").set_property("drop", True)  # type: ignore[attr-defined]

    hooks = DriveHooks(on_ready=lambda loop, mcu: loops.append(loop), on_record=on_record)
    path = tmp_path / "d.sqlite"
    drive(
        gst_config(bundles["always_go"], pipeline, "loop.duration_s=1.2"),
        log_path=path,
        hooks=hooks,
        out=quiet,
    )
    with DriveLogReader(path) as log:
        records = list(log.records(images=False))
    first = next(r for r in records if any(f.kind is expected for f in r.faults))
    assert any(r.decision.label == GO for r in records[: first.seq]), "the car drove before the fault"
    assert first.decision.label == STOP and first.decision.reason is Reason.FAULT
    detail = next(f.detail for f in first.faults if f.kind is expected)
    assert ("identity" in detail) if expected is FaultKind.SOURCE_ERROR else ("no new frame" in detail)
    assert all(r.decision.label == STOP for r in records[first.seq :])
