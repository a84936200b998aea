"""The console and the labeller in a real browser (Debian's Chromium through Playwright; no download).

The drive is real: the simulated world, the virtual microcontroller on a pty, onnxruntime, the drive log,
uvicorn on an ephemeral 127.0.0.1 port. "Within one tick" is checked on tick numbers: the press is
stamped with the number of ticks completed when the server received it, and the first STOP record must be
that tick or the next one. Set CAR_SCREENSHOTS=DIR to keep the screenshots (the README's come from here).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from car.build import McuHandle
from car.drivelog import DriveLogReader
from car.loop import ControlLoop
from car.run_drive import DriveHooks, DriveResult, drive
from car.types import CommandKind, DriveRecord, FaultKind, Reason
from car.web.live import LiveConsole, redacted
from tests.test_loop import bundles, quiet, sim_config  # noqa: F401  (the fixture is used by name)

_IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if _IN_CI:  # CI must run these: a missing browser or package is a failure there, not a skip
    import playwright.sync_api as playwright_api
else:
    playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not _IN_CI, reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("CAR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))


@dataclass
class LiveDrive:
    """A `car drive --web` running on a thread; `motor` is the virtual MCU's output after each tick."""

    console: LiveConsole
    log_path: Path
    records: list[DriveRecord] = field(default_factory=list)
    motor: list[float] = field(default_factory=list)
    loop: list[ControlLoop] = field(default_factory=list)
    result: list[DriveResult] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.console.server.url

    def ticks(self) -> int:
        return self.loop[0].stats.ticks if self.loop else 0

    def wait(self, what: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, "timed out waiting for the drive"
            time.sleep(0.01)

    def finish(self) -> DriveResult:
        if self.loop:
            self.loop[0].request_stop("test over")
        assert self.thread is not None
        self.thread.join(timeout=30)
        self.console.close()
        return self.result[0]


def start_drive(bundle: Path, tmp_path: Path, *overrides: str) -> LiveDrive:
    config = sim_config(bundle, "web.listen=127.0.0.1:0", "loop.duration_s=60", *overrides)
    console = LiveConsole(config, out=quiet).start()
    live = LiveDrive(console, tmp_path / "drive.sqlite")
    mcus: list[McuHandle] = []

    def on_ready(loop: ControlLoop, mcu: McuHandle) -> None:
        live.loop.append(loop)
        mcus.append(mcu)

    def on_record(record: DriveRecord) -> None:
        live.records.append(record)
        live.motor.append(float(mcus[0].device.motor_fraction))  # type: ignore[attr-defined]

    hooks = console.hooks(DriveHooks(on_ready=on_ready, on_record=on_record))

    def run() -> None:
        live.result.append(drive(redacted(config), log_path=live.log_path, hooks=hooks, out=quiet))

    live.thread = threading.Thread(target=run, daemon=True)
    live.thread.start()
    return live


def stamp_calls(live: LiveDrive, name: str) -> list[tuple[int, tuple[Any, ...]]]:
    """Record (ticks completed, args) whenever the server calls `inbox.<name>`."""
    calls: list[tuple[int, tuple[Any, ...]]] = []
    inner = getattr(live.console.inbox, name)

    def wrapped(*args: Any, **kwargs: Any) -> None:
        calls.append((live.ticks(), args + tuple(kwargs.values())))
        inner(*args, **kwargs)

    setattr(live.console.inbox, name, wrapped)
    return calls


def assert_mcu_stopped(live: LiveDrive, first_stop: DriveRecord, until: int) -> None:
    """The virtual microcontroller acknowledged that tick's STOP with its motors off, kept them off, and
    reads 0 itself (its port is served by its own thread, so it is read a few ticks later, not in the
    same instant)."""
    window = live.records[first_stop.seq : until]
    stop_seqs = {r.command.seq for r in window if r.command is not None}  # link seqs wrap at 256
    acks = [r.ack for r in window if r.ack is not None]
    later = [a for a in acks if a.seq in stop_seqs]
    assert later and all(a.motor_left == 0.0 and a.motor_right == 0.0 for a in later)
    assert live.motor[until - 1] == 0.0


def test_console_shows_frames_and_chart_and_stop_latches_within_one_tick(
    browser: Any,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    live = start_drive(bundles["always_go"], tmp_path)
    presses = stamp_calls(live, "emergency_stop")
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    try:
        live.wait(lambda: live.ticks() > 5)
        page.goto(live.url)
        page.wait_for_function("window.carConsole.frames >= 3 && window.carConsole.snapshots >= 3")
        assert page.eval_on_selector("#frame", "img => img.naturalWidth") == 224
        # driving (on a loaded machine a stale frame may stop it for a tick now and then)
        page.wait_for_function("document.getElementById('decision').textContent === 'GO'")
        points = page.evaluate("window.carConsole.state.history.length")
        assert points >= 5
        # the chart really has the P(STOP) line drawn: green pixels on the canvas, at least one per pixel
        # of the line's horizontal extent (it grows with the ticks seen: a slow machine draws a shorter one)
        green, extent = page.evaluate(
            """() => { const c = document.getElementById('chart');
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
                 for (let i = 0; i < d.length; i += 4) if (d[i+1] > 150 && d[i] < 120) n++;
                 const hist = window.carConsole.state.history, span = 300, pad = 24;
                 const top = hist[hist.length - 1][0]; let ext = 0;
                 for (let i = 1; i < hist.length; i++) {  // the segments drawChart joins
                   const [q0, p0] = hist[i - 1], [q1, p1] = hist[i];
                   if (q0 > top - span && p0 !== null && p1 !== null)
                     ext += ((q1 - q0) / (span - 1)) * (c.width - pad - 4);
                 }
                 return [n, ext]; }"""
        )
        assert extent > 0
        # whole pixel columns: the extent is fractional (seen: 30 green pixels for an extent of 30.15)
        assert green >= math.floor(extent)
        screenshot(page, "console.png")

        page.click("#stop")
        live.wait(lambda: bool(presses))
        pressed_at = presses[0][0]
        page.wait_for_selector("#latched", state="visible")
        live.wait(lambda: live.ticks() > pressed_at + 15)
        first_stop = next(r for r in live.records if FaultKind.OPERATOR_STOP in {f.kind for f in r.faults})
        assert first_stop.seq <= pressed_at + 1  # the tick running at the press, or the very next one
        latched = live.records[first_stop.seq : pressed_at + 15]
        assert all(r.decision.is_stop and r.command is not None for r in latched)
        assert all(r.command.kind is CommandKind.STOP for r in latched if r.command is not None)
        assert_mcu_stopped(live, first_stop, pressed_at + 15)
        page.wait_for_function("document.getElementById('decision').textContent === 'STOP'")
        screenshot(page, "console-stopped.png")

        # Resume: the car drives again after the policy's confident GO frames (3 by default)
        resumed_from = live.ticks()
        page.click("#resume")
        live.wait(lambda: any(not r.decision.is_stop for r in live.records[resumed_from:]))
        after = live.records[resumed_from:]
        first_go = next(i for i, r in enumerate(after) if not r.decision.is_stop)
        assert [r.decision.reason for r in after[first_go - 2 : first_go + 1]] == [
            Reason.AWAITING_GO,
            Reason.AWAITING_GO,
            Reason.GO_CONFIDENT,
        ]
        page.wait_for_selector("#latched", state="hidden")
    finally:
        page.close()
        result = live.finish()
    with DriveLogReader(result.log_path) as log:
        logged = {r.seq: r for r in log.records(images=False)}
    assert FaultKind.OPERATOR_STOP in {f.kind for f in logged[first_stop.seq].faults}
    stop_command = logged[first_stop.seq].command
    assert stop_command is not None and stop_command.kind is CommandKind.STOP
    assert dict(result.summary.fault_counts)["operator_stop"] >= 15


def test_keyboard_teleop_drives_and_releasing_the_key_stops(
    browser: Any,
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    live = start_drive(bundles["always_stop"], tmp_path, "web.mode=manual", "web.teleop_max_speed=0.4")
    messages = stamp_calls(live, "teleop")
    page = browser.new_page(viewport={"width": 1280, "height": 760})
    try:
        page.goto(live.url)
        page.wait_for_function("window.carConsole.snapshots >= 2 && window.carConsole.state.operator.manual")
        assert page.is_visible("#teleop")
        page.fill("#speed", "0.4")
        page.keyboard.down("ArrowUp")
        live.wait(lambda: any(m > 0 for m in live.motor))
        screenshot(page, "console-teleop.png")
        page.keyboard.up("ArrowUp")
        live.wait(lambda: any(args[0] is False for _, args in messages))
        released_at = next(t for t, args in messages if args[0] is False)
        live.wait(lambda: live.ticks() > released_at + 5)
    finally:
        page.close()
        result = live.finish()
    driving = [r for r in live.records if not r.decision.is_stop]
    assert driving and all(r.decision.reason is Reason.MANUAL for r in driving)
    assert all(r.command is not None and r.command.speed == pytest.approx(0.4) for r in driving)
    # the network (always P(STOP) ≈ 0.98) ran in shadow: logged, not obeyed
    assert all(r.probs is not None and r.probs.stop > 0.9 for r in driving)
    assert max(live.motor) == pytest.approx(0.4)
    last_go = driving[-1].seq
    assert last_go <= released_at + 1  # released: STOP in the tick running at the release, or the next
    assert all(r.decision.is_stop for r in live.records[last_go + 1 :])
    assert_mcu_stopped(live, live.records[last_go + 1], released_at + 5)
    with DriveLogReader(result.log_path) as log:
        reasons = {r.decision.reason for r in log.records(images=False)}
    assert Reason.MANUAL in reasons


def test_labelling_twenty_frames_by_keyboard_writes_the_right_files(browser: Any, tmp_path: Path) -> None:
    from car.label_session import LabelSession, read_items
    from car.web.labeller import labeller_app
    from car.web.security import AccessPolicy
    from car.web.server import WebServer
    from tests.test_label_session import write_log
    from vision.datasets import load_dataset

    log = write_log(tmp_path / "drive.sqlite", 25)
    out = tmp_path / "labelled"
    session = LabelSession(read_items([log]), out)
    policy = AccessPolicy.resolve("127.0.0.1", "", environ={})
    page = browser.new_page(viewport={"width": 1100, "height": 640})
    with WebServer(labeller_app(session, policy), "127.0.0.1", 0) as server:
        page.goto(server.url)
        page.wait_for_function("window.carLabel.ready === true")
        keys = (
            ["g"] * 5  # ticks 0-4 GO
            + ["s"] * 5  # 5-9 STOP
            + [" ", "Backspace"]  # skip 10, then undo the skip
            + ["g"]  # 10 GO
            + ["ArrowRight"] * 4  # browse to 15 without labelling
            + ["Shift+S"]  # 11-15 STOP: the range from where labelling stopped to here
            + ["g"] * 4  # 16-19 GO
        )
        for key in keys:
            page.keyboard.press(key)
        page.wait_for_function("window.carLabel.pending === 0")
        assert page.inner_text("#counts").startswith("10 GO · 10 STOP · 0 skipped · 5 left")
        screenshot(page, "labeller.png")
        page.close()
    session.close()
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    expected = {seq: (1 if 5 <= seq <= 9 or 11 <= seq <= 15 else 0) for seq in range(20)}
    assert {line["seq"]: line["label"] for line in lines} == expected
    for line in lines:
        assert line["file"].startswith(f"{line['label']}_") and (out / line["file"]).is_file()
    jpgs = sorted(p.name for p in out.iterdir() if p.suffix == ".jpg")
    assert jpgs == sorted(line["file"] for line in lines)
    data = load_dataset(out)
    assert sorted(data.labels.tolist()) == sorted(expected.values())
