"""Frame sources on real files: an mp4v video written with cv2.VideoWriter, a dataset folder, a camera."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.frame import GroundTruth
from vision.imageio import write_rgb
from vision.preprocess import fit_to_input
from vision.sources import (
    CameraSource,
    EndOfStream,
    ImageFolderSource,
    SimSource,
    SourceOpenError,
    SourceTimeout,
    VideoFileSource,
)

W, H, N = 320, 240, 12


def colour_of(i: int) -> tuple[int, int, int]:
    return (20 * i % 256, 255 - 20 * i % 256, 128)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "drive.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (W, H))
    assert writer.isOpened()
    for i in range(N):
        rgb = np.zeros((H, W, 3), np.uint8)
        rgb[:] = colour_of(i)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_file_frames_in_order_then_end(video: Path) -> None:
    with VideoFileSource(video) as source:
        frames = [source.read(1.0) for _ in range(N)]
        with pytest.raises(EndOfStream):
            source.read(1.0)
    assert [f.seq for f in frames] == list(range(N))
    assert all(f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8 for f in frames)
    times = [f.t_capture for f in frames]
    assert times == sorted(times) and times[-1] <= time.monotonic()
    for i, f in enumerate(frames):  # RGB order survives the BGR codec (mp4v is lossy: tolerance)
        assert np.abs(f.rgb.reshape(-1, 3).mean(0) - colour_of(i)).max() < 12
    assert fit_to_input(frames[0].rgb).shape == (224, 224, 3)


def test_video_loops_and_is_paced(video: Path) -> None:
    with VideoFileSource(video, fps=100.0, loop=True) as source:
        t0 = time.monotonic()
        frames = [source.read(1.0) for _ in range(N + 5)]
        elapsed = time.monotonic() - t0
    assert [f.seq for f in frames] == list(range(N + 5))
    assert elapsed >= (N + 4) / 100.0 * 0.9
    assert np.abs(frames[N].rgb.astype(int) - frames[0].rgb.astype(int)).mean() < 3


def test_video_timeout_when_next_frame_is_later_than_the_timeout(video: Path) -> None:
    with VideoFileSource(video, fps=2.0) as source:
        source.read(1.0)
        with pytest.raises(SourceTimeout):
            source.read(0.05)
        assert isinstance(SourceTimeout(), TimeoutError)


def test_missing_and_undecodable_video(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="no such video"):
        VideoFileSource(tmp_path / "none.mp4").open()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(SourceOpenError, match="cannot decode"):
        VideoFileSource(bad).open()


def test_camera_thread_newest_frame_wins_then_end_of_file(video: Path) -> None:
    # OpenCV opens a video file through the same VideoCapture API as a camera: the capture thread plays it at
    # the file's own rate (30 fps), so a slow reader only ever sees the newest frame; the file's end is
    # EndOfStream (the drive ends), not a failure.
    camera = CameraSource(str(video), max_failures=3)
    with camera:
        first = camera.read(2.0)
        while camera.captured < first.seq + 4:  # wait for frames, however slow the machine
            time.sleep(0.01)
        newest = camera.read(2.0)
        assert newest.seq > first.seq + 1
        assert camera.skipped >= 1
        with pytest.raises(EndOfStream, match="end of video file"):
            while True:
                camera.read(2.0)
    assert newest.rgb.shape == (H, W, 3)


def test_camera_that_cannot_open() -> None:
    with pytest.raises(SourceOpenError, match="cannot open"):
        CameraSource("/dev/video-does-not-exist").open()


def test_camera_times_out_without_new_frames() -> None:
    class SlowCapture:
        """A camera that delivers one frame and then hangs: cannot exist here, so it is simulated."""

        def __init__(self) -> None:
            self.n = 0

        def isOpened(self) -> bool:
            return True

        def set(self, prop: int, value: float) -> bool:
            return True

        def get(self, prop: int) -> float:
            return 0.0

        def read(self) -> tuple[bool, np.ndarray | None]:
            self.n += 1
            if self.n > 1:
                time.sleep(0.05)
                return False, None
            return True, np.full((48, 64, 3), 100, np.uint8)

        def release(self) -> None:
            pass

    camera = CameraSource("0", max_failures=10_000, capture_factory=lambda d, a: SlowCapture())  # type: ignore[arg-type,return-value]
    with camera:
        assert camera.read(1.0).seq == 0
        t0 = time.monotonic()
        with pytest.raises(SourceTimeout):
            camera.read(0.1)
        assert time.monotonic() - t0 >= 0.09  # never gives up early (how late: the scheduler's business)


def make_folder(root: Path, n: int) -> list[tuple[str, int]]:
    root.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(n):
        label = i % 2
        name = f"{label}_{uuid.UUID(int=i)}.jpg"
        write_rgb(root / name, np.full((100, 150, 3), 30 * i, np.uint8))
        made.append((name, label))
    return sorted(made)


def test_image_folder_in_order_with_labels_as_truth(tmp_path: Path) -> None:
    made = make_folder(tmp_path / "set", 5)
    with ImageFolderSource(tmp_path / "set") as source:
        frames = [source.read(1.0) for _ in range(5)]
        with pytest.raises(EndOfStream):
            source.read(1.0)
    assert [f.source.split("/")[-1] for f in frames] == [name for name, _ in made]
    assert [f.truth.label for f in frames if f.truth is not None] == [label for _, label in made]
    assert frames[0].rgb.shape == (100, 150, 3)


def test_image_folder_free_blocked_layout_and_bad_file(tmp_path: Path) -> None:
    for sub, value in (("free", 10), ("blocked", 200)):
        (tmp_path / sub).mkdir()
        write_rgb(tmp_path / sub / f"{sub}_a.jpg", np.full((64, 64, 3), value, np.uint8))
    with ImageFolderSource(tmp_path, loop=True) as source:
        labels = [f.truth.label for f in (source.read(1.0) for _ in range(4)) if f.truth is not None]
    assert sorted(labels[:2]) == [0, 1] and labels[2:] == labels[:2]
    with pytest.raises(SourceOpenError, match="no such image folder"):
        ImageFolderSource(tmp_path / "nope").open()


class ToyWorld:
    """A stand-in for vision.sim.World with the same two methods (the real one is tested in test_loop)."""

    def __init__(self) -> None:
        self.position = 0.0

    def step(self, speed_mps: float, dt: float) -> None:
        self.position += speed_mps * dt

    def render(self) -> tuple[np.ndarray, GroundTruth]:
        return np.full((224, 224, 3), int(self.position * 100) % 256, np.uint8), GroundTruth(0)


def test_sim_source_moves_the_world_by_speed_times_time() -> None:
    from car.timing import SimulatedClock

    clock = SimulatedClock()
    world = ToyWorld()
    source = SimSource(world, lambda: 0.5, fps=10.0, clock=clock)
    with source:
        frames = [source.read(1.0) for _ in range(11)]
    assert [f.seq for f in frames] == list(range(11))
    assert frames[-1].t_capture == pytest.approx(1.0)
    assert world.position == pytest.approx(0.5)
    assert source.distance_m == pytest.approx(0.5)


def test_threaded_source_newest_frame_wins_and_passes_the_end_on(video: Path) -> None:
    from vision.sources import ThreadedSource

    with ThreadedSource(VideoFileSource(video)) as source:
        first = source.read(2.0)
        time.sleep(0.3)  # the thread decodes everything meanwhile; only the newest is kept
        newest = source.read(2.0)
        assert newest.seq == N - 1 and first.seq < newest.seq
        assert source.skipped >= 1
        with pytest.raises(EndOfStream):
            source.read(2.0)


def test_threaded_source_times_out_between_frames() -> None:
    from car.timing import MonotonicClock
    from vision.sources import ThreadedSource

    with ThreadedSource(SimSource(ToyWorld(), lambda: 0.0, fps=5.0, clock=MonotonicClock())) as source:
        assert source.read(1.0).seq == 0
        with pytest.raises(SourceTimeout):
            source.read(0.05)  # the next frame is 0.2 s away
        assert source.read(1.0).seq == 1
