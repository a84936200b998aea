import subprocess
import sys

import pytest

from car.cli import COMMANDS, main


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for spec in COMMANDS:
        assert spec.name in out


def test_python_dash_m_car_lists_commands() -> None:
    out = subprocess.run([sys.executable, "-m", "car", "--help"], capture_output=True, text=True, check=True)
    assert "drive" in out.stdout and "explain" in out.stdout


def test_unknown_command_fails(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        main(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover
        raise AssertionError("unknown command accepted")
