"""Ready-made `source.backend: gst` pipelines for the cameras small robot cars carry.

Each is a camera head (the element that needs the hardware) and a tail that turns its output into RGB for
`appsink`. The README lists them; tests run every tail for real behind a `videotestsrc` stand-in that
produces what the camera head produces, and parse the heads whose elements this computer has.
`car camera check --backend gst "PIPELINE"` measures one on the car.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ReadyPipeline:
    name: str
    camera: str  # what it is for
    head: str  # the hardware part
    tail: str  # to RGB appsink
    stand_in: str  # videotestsrc producing what `head` produces (for the tests)

    @property
    def pipeline(self) -> str:
        return f"{self.head} ! {self.tail}"


SIZE = "width=640,height=480,framerate=30/1"

READY_PIPELINES: dict[str, ReadyPipeline] = {
    p.name: p
    for p in (
        ReadyPipeline(
            "pi-camera",
            "Raspberry Pi camera (libcamera; Raspberry Pi OS: gstreamer1.0-libcamera)",
            f"libcamerasrc ! video/x-raw,format=NV12,{SIZE}",
            "videoconvert ! appsink",
            f"videotestsrc is-live=true ! video/x-raw,format=NV12,{SIZE}",
        ),
        ReadyPipeline(
            "jetson-csi",
            "Jetson CSI camera (JetPack's nvarguscamerasrc, converted out of NVMM by nvvidconv)",
            "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! "
            "nvvidconv ! video/x-raw,format=BGRx,width=640,height=360",
            "videoconvert ! appsink",
            "videotestsrc is-live=true ! video/x-raw,format=BGRx,width=640,height=360,framerate=30/1",
        ),
        ReadyPipeline(
            "usb-mjpeg",
            "USB webcam (UVC) in MJPEG: 30 fps where raw YUYV manages less",
            f"v4l2src device=/dev/video0 ! image/jpeg,{SIZE}",
            "jpegdec ! videoconvert ! appsink",
            f"videotestsrc is-live=true ! video/x-raw,{SIZE} ! jpegenc ! image/jpeg,{SIZE}",
        ),
        ReadyPipeline(
            "rtsp",
            "IP camera over RTSP (H.264; decodebin picks the decoder installed, e.g. gstreamer1.0-libav)",
            "rtspsrc location=rtsp://192.168.1.10:554/stream latency=0 ! decodebin",
            "videoconvert ! appsink",
            f"videotestsrc is-live=true ! video/x-raw,{SIZE} ! jpegenc ! decodebin",
        ),
    )
}
