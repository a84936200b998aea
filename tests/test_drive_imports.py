"""`car drive` never imports torch or shap, not even indirectly: checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_loop import bundles  # noqa: F401  (the fixture is used by name)

PROBE = """
import json, sys
from car.cli import main
code = main(["drive", "--set", "model.bundle={bundle}", "--duration", "0.5", "--log", "{log}", "--json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "shap", "torchvision", "matplotlib"))
print(json.dumps({{"code": code, "heavy": heavy}}))
"""


def test_drive_never_imports_torch_or_shap(bundles: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    code = PROBE.format(bundle=bundles["always_go"], log=tmp_path / "d.sqlite")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = out.stdout.strip().splitlines()
    drive_summary = json.loads(lines[-2])
    probe = json.loads(lines[-1])
    assert probe["code"] == 0
    assert drive_summary["frames"] > 5  # it really drove
    assert probe["heavy"] == []


def test_drive_modules_import_without_torch_available(tmp_path: Path) -> None:
    """Importing every module of the drive path with torch and shap made unimportable still works."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    for name in ("torch", "shap"):
        (blocker / f"{name}.py").write_text(f"raise ImportError('{name} is not on the car')\n")
    modules = [
        "car.commands.drive",
        "car.run_drive",
        "car.loop",
        "car.build",
        "car.sim_world",
        "car.replay",
        "vision.sources",
        "vision.detector",
        "vision.bundle",
        "vision.sim",
        "firmware_bridge.link",
        "firmware_bridge.virtual_mcu",
    ]
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    env_path = f"{blocker}"
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r})\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
