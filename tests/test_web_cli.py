"""The web console's command line and its costs: no web stack without --web, refusals, the hub's mailbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from car.cli import main
from car.operator import OperatorInbox
from car.types import Decision, DriveRecord, Probabilities, Reason, StageTimings
from car.web.hub import LiveHub
from tests.test_loop import bundles  # noqa: F401  (the fixture is used by name)
from vision.labels import GO

PROBE = """
import json, sys
from car.cli import main
code = main(["drive", "--set", "model.bundle={bundle}", "--duration", "0.3", "--log", "{log}", "--json"{web}])
web = sorted(m for m in sys.modules if m.split(".")[0] in ("starlette", "uvicorn", "websockets")
             or m.startswith("car.web"))
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "shap", "torchvision", "matplotlib"))
print(json.dumps({{"code": code, "web": web, "heavy": heavy}}))
"""


def probe(bundle: Path, log: Path, web: str) -> dict[str, object]:
    code = PROBE.format(bundle=bundle, log=log, web=web)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2  # --json: stdout holds the summary and the probe only (the URL goes to stderr)
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_drive_without_web_imports_no_web_stack_and_with_it_no_torch(
    bundles: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    plain = probe(bundles["always_go"], tmp_path / "a.sqlite", "")
    assert plain["code"] == 0 and plain["web"] == [] and plain["heavy"] == []
    web = probe(bundles["always_go"], tmp_path / "b.sqlite", ', "--web", "127.0.0.1:0"')
    assert web["code"] == 0 and web["heavy"] == []
    assert isinstance(web["web"], list) and "uvicorn" in web["web"]


def test_refusals_are_one_line_errors(tmp_path: Path, capsys: object) -> None:
    assert main(["drive", "--mode", "manual", "--duration", "0.1"]) == 2  # manual needs the page
    assert main(["drive", "--web", "0.0.0.0:0", "--duration", "0.1"]) == 2  # public address, no token
    assert main(["drive", "--web", "localhost:http"]) == 2
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "give --web PORT" in err and "needs a token" in err and "expected [HOST:]PORT" in err
    assert main(["label", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "o")]) == 2


def record(seq: int) -> DriveRecord:
    return DriveRecord(
        seq=seq,
        t_tick=seq / 30,
        frame_seq=seq,
        t_capture=seq / 30,
        source="t",
        rgb=np.full((224, 224, 3), seq % 250, np.uint8),
        decision=Decision(GO, Reason.GO_HOLD, Probabilities(0.9, 0.1)),
        command=None,
        ack=None,
        faults=(),
        timings=StageTimings(),
    )


def test_hub_is_a_newest_only_mailbox_that_encodes_only_for_viewers() -> None:
    hub = LiveHub(threshold=0.4, fps=10.0, operator=OperatorInbox())
    for seq in range(500):  # the loop publishes; nobody watches: nothing is encoded
        hub.publish(record(seq))
    assert hub.encoded_frames == 0 and hub.newest_frame() is None
    hub.viewer_joined()
    hub.refresh()
    newest = hub.newest_frame()
    assert newest is not None and newest[0] == 499  # the newest frame only, never a backlog
    state = json.loads(hub.newest_snapshot()[1])
    assert state["record"]["seq"] == 499 and state["threshold"] == 0.4
    assert len(state["history"]) == 300 and state["history"][-1] == [499, 0.1, 0]
    hub.refresh()
    assert hub.encoded_frames == 1  # the same frame is not encoded twice
    hub.viewer_left()
    assert hub.viewers == 0
