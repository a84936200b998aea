"""The fleet's pieces that need no Ray: which logs, report folder names, the engine seam, CLI errors."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from car.cli import main
from car.engines import ENGINES, EngineChoice, EngineError, EngineOptions, item_first, map_items
from explain.errors import ExplainError
from explain.fleet.drives import drive_names, find_logs


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_logs_come_from_files_folders_and_globs_once_each(tmp_path: Path) -> None:
    a = _touch(tmp_path / "x" / "drive.sqlite")
    b = _touch(tmp_path / "y" / "deep" / "drive.sqlite")
    c = _touch(tmp_path / "y" / "other.sqlite")
    _touch(tmp_path / "y" / "notes.txt")
    found = find_logs([str(tmp_path / "y"), str(a), str(tmp_path / "*" / "*.sqlite")])
    assert sorted(found) == sorted([a, b, c])
    names = drive_names(found)
    assert len(set(names)) == 3 and "other" in names
    assert all(n.startswith("drive-") for n in names if n != "other")  # same stem: a path hash appended
    assert drive_names(found) == names  # stable, so a second run resumes into the same folders
    with pytest.raises(ExplainError, match="no such drive log"):
        find_logs([str(tmp_path / "missing.sqlite")])
    with pytest.raises(ExplainError, match="matches no drive log"):
        find_logs([str(tmp_path / "x" / "*.mp4")])


def _setup(offset: int) -> int:
    return offset


def _work(offset: int, item: int) -> int:
    return offset + item * item


def _task(item: int, offset: int) -> int:
    return offset - item


def test_local_engine_keeps_item_order_in_process_and_in_a_pool() -> None:
    items = list(range(7))
    serial = list(map_items(EngineChoice(), partial(_setup, 3), _work, items, EngineOptions()))
    assert serial == [3 + i * i for i in items]
    pooled = list(
        map_items(EngineChoice("local"), partial(_setup, 3), _work, items, EngineOptions(workers=2))
    )
    assert pooled == serial
    swapped = list(map_items(EngineChoice(), partial(_setup, 10), item_first(_task), items, EngineOptions()))
    assert swapped == [10 - i for i in items]


def test_engine_choices_are_checked() -> None:
    assert set(ENGINES) == {"local", "ray"}
    with pytest.raises(EngineError, match="--engine 'spark'"):
        list(map_items(EngineChoice("spark"), partial(_setup, 0), _work, [1], EngineOptions()))
    with pytest.raises(EngineError, match="only --engine ray"):
        list(map_items(EngineChoice("local", "auto"), partial(_setup, 0), _work, [1], EngineOptions()))
    with pytest.raises(EngineError, match="at least 1"):
        list(map_items(EngineChoice(), partial(_setup, 0), _work, [1], EngineOptions(workers=0)))


def test_fleet_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fleet", "audit", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("car fleet: error:") and "no such drive log" in err and "\n" not in err


def test_local_fleet_report_shows_the_worst_stop_frames_with_their_maps(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from explain.fleet.run import audit_fleet
    from explain.fleet.work import AuditSettings
    from tests.fleet_support import shipped_bundle, write_shipped_drive

    write_shipped_drive(
        tmp_path / "logs" / "near.sqlite", shipped_bundle(), 14, seed=3
    )  # drives up to the can
    settings = AuditSettings(select="frames:11-13", background="sim:0@4", occlusion_frames=0, sanity_frames=0)
    result = audit_fleet([str(tmp_path / "logs")], tmp_path / "out", settings)
    worst = result.document["worst_frames"]
    assert worst and all(w["drive"] == "near" and w["p_stop"] >= 0.5 for w in worst)
    assert [w["badness"] for w in worst] == sorted((w["badness"] for w in worst), reverse=True)
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= len(worst) and "near/report.html" in page
    rows = pq.read_table(tmp_path / "out" / "frames.parquet").to_pylist()
    assert [r["seq"] for r in rows] == [11, 12, 13] and result.fleet.frames_explained == 3
