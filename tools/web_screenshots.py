"""Make the README's screenshots of the web console and the labeller (docs/console.png, docs/labeller.png).

    PYTHONPATH=. python tools/web_screenshots.py [--out docs]

A real drive in the simulated world with the shipped model (`models/edge-sim`) and the console on an
ephemeral 127.0.0.1 port, seen by Debian's Chromium through Playwright; then `car label`'s page on that
drive's log, with the same model's suggestions, after a few labels.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from car.config import CarConfig, with_overrides
from car.label_session import LabelSession, read_items, suggest
from car.loop import ControlLoop
from car.run_drive import DriveHooks, drive
from car.web.labeller import labeller_app
from car.web.live import LiveConsole, redacted
from car.web.security import AccessPolicy
from car.web.server import WebServer
from vision.bundle import DEFAULT_BUNDLE

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def console_shot(browser: object, out: Path, log: Path, seconds: float) -> None:
    config = with_overrides(CarConfig(), ["web.listen=127.0.0.1:0", "loop.duration_s=120", "sim.seed=3"])
    loops: list[ControlLoop] = []
    with LiveConsole(config, out=lambda _: None) as console:
        hooks = console.hooks(DriveHooks(on_ready=lambda loop, mcu: loops.append(loop)))
        thread = threading.Thread(
            target=drive, args=(redacted(config),), kwargs={"log_path": log, "hooks": hooks, "out": print}
        )
        thread.start()
        page = browser.new_page(viewport={"width": 1280, "height": 760})  # type: ignore[attr-defined]
        page.goto(console.server.url)
        time.sleep(seconds)
        page.screenshot(path=str(out / "console.png"))
        page.close()
        loops[0].request_stop("screenshots taken")
        thread.join()


def labeller_shot(browser: object, out: Path, log: Path, work: Path) -> None:
    items, threshold = suggest(read_items([log], every=5), DEFAULT_BUNDLE)
    session = LabelSession(items, work / "labelled", threshold)
    policy = AccessPolicy.resolve("127.0.0.1", "", environ={})
    with WebServer(labeller_app(session, policy), "127.0.0.1", 0) as server:
        page = browser.new_page(viewport={"width": 1100, "height": 640})  # type: ignore[attr-defined]
        page.goto(server.url)
        page.wait_for_function("window.carLabel.ready === true")
        for key in ["s", "s", "g", "s", " ", "g", "s"]:
            page.keyboard.press(key)
        page.wait_for_function("window.carLabel.pending === 0")
        time.sleep(0.5)
        page.screenshot(path=str(out / "labeller.png"))
        page.close()
    session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seconds", type=float, default=14.0, help="how long the drive runs before the shot")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        log = Path(tmp) / "drive.sqlite"
        console_shot(browser, args.out, log, args.seconds)
        labeller_shot(browser, args.out, log, Path(tmp))
        browser.close()
    print(f"wrote {args.out / 'console.png'} and {args.out / 'labeller.png'}")


if __name__ == "__main__":
    main()
