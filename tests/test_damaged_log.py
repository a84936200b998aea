"""A drive log damaged in the middle, built as a user's probe found it: 4096 random bytes overwritten in
the middle of a good log (`pragma integrity_check` then reports an invalid page). `car log info`,
`car replay` and `car explain` read every record before the damage and say so in one line."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from car.cli import main
from car.drivelog import DriveLogReader
from tests.test_explain_support import can_detector, make_bundle, tiny_arch_registered, write_drive
from tests.test_loop import tiny_bundle

TICKS = 24  # with these frames, the damage lands in the records tree: "malformed", as the probe saw


@pytest.fixture(scope="module", autouse=True)
def tiny_arch() -> Iterator[None]:
    with tiny_arch_registered():
        yield


def damage_in_the_middle(path: Path, seed: int = 1) -> None:
    """Overwrite 4096 random bytes in the middle of the file, as the probe did."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    rng = random.Random(seed)
    data[middle : middle + 4096] = bytes(rng.randrange(256) for _ in range(4096))
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory, tiny_arch: None) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("damaged")
    bundle = make_bundle(root, can_detector())
    path = write_drive(root / "drive.sqlite", bundle, TICKS)
    damage_in_the_middle(path)
    check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchall()
    assert "invalid page number" in check[0][0], check  # the damage the probe reported
    with DriveLogReader(path) as log:
        log.on_damage = lambda damage: None
        readable = len(list(log.records(images=False)))
        assert log.damage is not None and log.damage.readable == readable
    assert 0 < readable < TICKS
    return path, readable


def damage_line(err: str, path: Path) -> str:
    lines = [line for line in err.splitlines() if "damaged" in line]
    assert len(set(lines)) == 1, err  # one line (the same one, however often a command reads the log)
    line = lines[0]
    assert str(path) in line and "malformed" in line and "still read" in line
    return line


def test_the_reader_salvages_every_record_before_the_damage(damaged: tuple[Path, int]) -> None:
    path, readable = damaged
    warnings: list[str] = []
    with DriveLogReader(path) as log:
        log.on_damage = lambda damage: warnings.append(damage.message())
        records = list(log.records())  # frames and masks decoded too
    assert [r.seq for r in records] == list(range(readable))
    assert all(r.rgb is not None for r in records if r.frame_seq is not None)
    assert len(warnings) == 1 and f"the {readable} records before it still read" in warnings[0]


def test_log_info_reads_up_to_the_damage(
    damaged: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    path, readable = damaged
    assert main(["log", "info", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"the {readable} records before it still read" in damage_line(captured.err, path)
    assert '"log"' in captured.out


def test_replay_replays_up_to_the_damage(
    damaged: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, readable = damaged
    # the drive's tiny network takes 64x64 frames, the log holds 224x224 ones: replay with a 224 network
    other = tiny_bundle(tmp_path / "bundles", "always_go")
    assert main(["replay", str(path), "--model", str(other)]) == 0
    captured = capsys.readouterr()
    damage_line(captured.err, path)
    assert f"replayed {readable - 1} frames" in captured.out  # seq 5 has no frame


def test_explain_explains_up_to_the_damage(
    damaged: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, readable = damaged
    args = ["explain", str(path), "--out", str(tmp_path / "audit"), "--select", "stride:8"]
    assert main([*args, "--background", "sim:0@4", "--no-progress", "--occlusion-frames", "1"]) == 0
    assert f"the {readable} records before it still read" in damage_line(capsys.readouterr().err, path)
