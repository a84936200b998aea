"""`car drive --web`: the console server around one drive, wired in through the drive's hooks.

Started before the drive (the page answers while the model loads), stopped after it. The loop gets the
operator's inbox (`DriveHooks.operator`) and publishes each tick to the hub (`DriveHooks.on_record`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from car.build import McuHandle
from car.config import CarConfig
from car.loop import ControlLoop
from car.operator import OperatorInbox
from car.run_drive import DriveHooks
from car.types import DriveRecord
from car.web.hub import LiveHub
from car.web.security import AccessPolicy, parse_listen


class LiveConsole:
    def __init__(self, config: CarConfig, out: Callable[[str], None] = print) -> None:
        from car.web.console import console_app
        from car.web.server import WebServer

        web = config.web
        self.host, port = parse_listen(web.listen)
        self.policy = AccessPolicy.resolve(self.host, web.token)
        self.inbox = OperatorInbox(manual=web.mode == "manual", max_speed=web.teleop_max_speed)
        self.hub = LiveHub(threshold=0.5, fps=web.fps, operator=self.inbox)
        self.server = WebServer(console_app(self.hub, self.inbox, self.policy), self.host, port)
        self.out = out
        self._user_on_record: Callable[[DriveRecord], None] | None = None

    def start(self) -> LiveConsole:
        self.hub.start()
        self.server.start()
        url = self.server.url
        if self.policy.required:
            shown = (
                f"{url}?token={self.policy.token}" if self.policy.generated else f"{url}?token=<your token>"
            )
        else:
            shown = url
        mode = "manual (teleop from the page)" if self.inbox.manual else "auto"
        self.out(f"car drive: web console at {shown} ({mode}; space bar or STOP latches an e-stop)")
        return self

    def close(self) -> None:
        self.server.stop()
        self.hub.close()

    def __enter__(self) -> LiveConsole:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self.server.port

    def hooks(self, inner: DriveHooks | None = None) -> DriveHooks:
        """The drive's hooks with the console added (another caller's hooks, e.g. a test's, still run)."""
        inner = inner or DriveHooks()

        def on_ready(loop: ControlLoop, mcu: McuHandle) -> None:
            self.hub.threshold = loop.policy.params.threshold
            self.hub.info["title"] = f"{mcu.description}"
            if inner.on_ready is not None:
                inner.on_ready(loop, mcu)

        def on_record(record: DriveRecord) -> None:
            self.hub.publish(record)
            if inner.on_record is not None:
                inner.on_record(record)

        return dataclasses.replace(inner, on_ready=on_ready, on_record=on_record, operator=self.inbox)


def redacted(config: CarConfig) -> CarConfig:
    """The config as the drive log stores it: never the token itself."""
    if not config.web.token:
        return config
    return dataclasses.replace(config, web=dataclasses.replace(config.web, token="<redacted>"))
