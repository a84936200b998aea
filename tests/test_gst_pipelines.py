"""The README's ready-made gst pipelines: every tail runs for real behind a videotestsrc stand-in for its
camera head; heads whose elements are here parse; the others name the package that provides them."""

from __future__ import annotations

import pytest

from vision.sources import SourceOpenError

pytest.importorskip("gi", reason="the camera extra (PyGObject) is not installed")
from vision.sources.gst import ELEMENT_PACKAGES, GstSource, _gst
from vision.sources.gst_pipelines import READY_PIPELINES


@pytest.mark.parametrize("name", list(READY_PIPELINES))
def test_the_tail_turns_what_the_camera_gives_into_rgb_frames(name: str) -> None:
    ready = READY_PIPELINES[name]
    with GstSource(f"{ready.stand_in} ! {ready.tail}") as source:
        frames = [source.read(5.0) for _ in range(3)]
    assert all(f.rgb.ndim == 3 and f.rgb.shape[2] == 3 for f in frames)
    assert frames[0].rgb.shape[1] == 640


@pytest.mark.parametrize("name", list(READY_PIPELINES))
def test_the_whole_pipeline_parses_or_names_the_missing_package(name: str) -> None:
    Gst = _gst()
    from gi.repository import GLib

    ready = READY_PIPELINES[name]
    assert ready.pipeline.endswith("appsink") and ready.pipeline in ready.head + " ! " + ready.tail
    try:
        Gst.parse_launch(ready.pipeline).set_state(Gst.State.NULL)
    except GLib.Error as exc:  # a hardware element that this computer does not have
        missing = exc.message.split('"')[1]
        assert missing in ELEMENT_PACKAGES, f"{name}: no package hint for {missing}"
        with pytest.raises(SourceOpenError, match=f"no element '{missing}'.*install"):
            GstSource(ready.pipeline).open()
