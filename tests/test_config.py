"""Config: the shipped YAML files load; sim.yaml equals the defaults; bad keys/values fail in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from car.config import (
    CONFIG_DIR,
    CarConfig,
    field_docs,
    load_config,
    replace_field,
    with_overrides,
)
from car.errors import CarError


def test_sim_yaml_is_the_embedded_default() -> None:
    assert load_config(CONFIG_DIR / "sim.yaml") == CarConfig()
    assert load_config(None) == CarConfig()


def test_sim_yaml_lists_every_field() -> None:
    doc = yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())
    listed = {f"{section}.{key}" for section, fields in doc.items() for key in fields}
    assert listed == {key for key, *_ in field_docs()}


def test_car_yaml_is_a_real_car() -> None:
    config = load_config(CONFIG_DIR / "car.yaml")
    assert config.source.kind == "camera"
    assert config.link.mcu == "serial" and config.link.port.startswith("/dev/")
    assert config.policy == replace_field(CarConfig(), "policy", drive_speed=0.3).policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "loop:\n  rate_hz: fast\n",
            r"c\.yaml: loop\.rate_hz='fast': expected a number from 0\.0 to 1000\.0",
        ),
        ("loop:\n  rat_hz: 30\n", r"unknown key loop\.rat_hz; allowed: rate_hz"),
        ("loops:\n  rate_hz: 30\n", r"unknown section 'loops'"),
        ("source:\n  kind: webcam\n", r"source\.kind='webcam': expected one of sim, camera"),
        ("policy:\n  go_frames: 0\n", r"policy\.go_frames=0: expected an integer >= 1"),
        ("policy:\n  go_frames: 2.5\n", r"policy\.go_frames=2\.5: expected an integer"),
        ("policy:\n  threshold: 1.5\n", r"policy\.threshold=1\.5"),
        ("source:\n  loop: yes please\n", r"source\.loop='yes please': expected true or false"),
        ("source:\n  kind: video\n", r"source\.kind=video needs source\.path"),
        ("link:\n  mcu: serial\n", r"link\.mcu=serial needs link\.port"),
        ("loop:\n  blank_low: 250\n", r"blank_low=250 must be below"),
        ("- a\n- b\n", r"expected a mapping of sections"),
        ("loop: [1, 2\n", r"not valid YAML"),
    ],
)
def test_bad_values_fail_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CarError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)
    assert str(tmp_path / "c.yaml") in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CarError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")


def test_partial_file_keeps_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "loop:\n  rate_hz: 20\npolicy:\n  threshold: 0.6\n"))
    assert config.loop.rate_hz == 20.0 and isinstance(config.loop.rate_hz, float)
    assert config.policy.threshold == 0.6
    assert config.model == CarConfig().model


def test_overrides_are_validated_like_the_file() -> None:
    config = with_overrides(
        CarConfig(), ["loop.rate_hz=15", "log.frame_format=jpeg", "policy.threshold=null"]
    )
    assert (
        config.loop.rate_hz == 15.0 and config.log.frame_format == "jpeg" and config.policy.threshold is None
    )
    with pytest.raises(CarError, match=r"--set: log\.frame_format='gif'"):
        with_overrides(CarConfig(), ["log.frame_format=gif"])
    with pytest.raises(CarError, match=r"write section\.key=value"):
        with_overrides(CarConfig(), ["rate_hz=15"])


def test_to_json_round_trips() -> None:
    import json

    from car.config import config_from_mapping

    config = with_overrides(CarConfig(), ["sim.seed=7"])
    assert config_from_mapping(json.loads(config.to_json())) == config


def test_car_drive_reports_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from car.cli import main

    assert main(["drive", "--set", f"model.bundle={tmp_path / 'no-bundle'}", "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("car drive: error: ") and "no-bundle" in err and "\n" not in err
    assert main(["drive", "--config", str(write(tmp_path, "loop:\n  rate_hz: -1\n"))]) == 2
    assert "loop.rate_hz=-1" in capsys.readouterr().err
    assert main(["drive", "--list-config"]) == 0
    assert "policy.go_frames" in capsys.readouterr().out
