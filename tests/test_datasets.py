from pathlib import Path

import numpy as np
import pytest

from vision.datasets import (
    MANIFEST_NAME,
    FolderScan,
    ManifestRecord,
    SkipReason,
    load_dataset,
    load_images,
    read_manifest,
    scan_folder,
)
from vision.errors import VisionError
from vision.imageio import ImageReadError, write_rgb


def _solid(value: int, h: int = 224, w: int = 224) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def _label_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_rgb(root / "0_aaa.jpg", _solid(200))
    write_rgb(root / "1_bbb.jpg", _solid(20))
    write_rgb(root / "1_ccc.png", _solid(30, 480, 640))  # another size: centre-cropped and resized
    (root / "masks").mkdir()
    mask = np.zeros((224, 224, 3), np.uint8)
    mask[100:150, 90:120] = 255
    write_rgb(root / "masks" / "1_bbb.png", mask)
    (root / MANIFEST_NAME).write_text("")
    (root / "notes.txt").write_text("hello")
    write_rgb(root / "cat.jpg", _solid(1))  # wrong name
    write_rgb(root / "7_ddd.jpg", _solid(1))  # wrong label
    (root / "1_broken.jpg").write_bytes(b"not a jpeg at all")
    write_rgb(root / "0_tiny.jpg", _solid(100, 8, 8))
    return root


def test_label_prefix_scan_counts_and_masks(tmp_path: Path) -> None:
    scan = scan_folder(_label_folder(tmp_path / "set"))
    assert isinstance(scan, FolderScan)
    assert scan.layout == "label_prefix"
    names = [item.path.name for item in scan.items]
    # manifest and masks/ are never frames; bad names are counted, undecodable files only show on load
    assert names == ["0_aaa.jpg", "0_tiny.jpg", "1_bbb.jpg", "1_broken.jpg", "1_ccc.png"]
    assert scan.skipped == {SkipReason.BAD_NAME: 2, SkipReason.NOT_IMAGE: 1}
    by_name = {item.path.name: item for item in scan.items}
    assert by_name["1_bbb.jpg"].mask_path == tmp_path / "set" / "masks" / "1_bbb.png"
    assert by_name["0_aaa.jpg"].mask_path is None
    assert "skipped" in scan.summary()


def test_load_dataset_skips_bad_files_and_keeps_labels_aligned(tmp_path: Path) -> None:
    data = load_dataset(_label_folder(tmp_path / "set"))
    assert data.images.shape == (3, 224, 224, 3) and data.images.dtype == np.uint8
    assert [it.path.name for it in data.items] == ["0_aaa.jpg", "1_bbb.jpg", "1_ccc.png"]
    assert data.labels.tolist() == [0, 1, 1]
    assert abs(int(data.images[0].mean()) - 200) <= 2 and abs(int(data.images[2].mean()) - 30) <= 2
    assert data.skipped[SkipReason.UNREADABLE] == 1
    assert data.skipped[SkipReason.TOO_SMALL] == 1
    masks = data.masks()
    assert masks[0] is None and masks[2] is None
    assert masks[1] is not None and masks[1].dtype == bool and masks[1].sum() == 50 * 30


def test_load_images_is_strict_and_names_the_file(tmp_path: Path) -> None:
    scan = scan_folder(_label_folder(tmp_path / "set"))
    broken = [it for it in scan.items if it.path.name == "1_broken.jpg"]
    with pytest.raises(ImageReadError, match=r"1_broken\.jpg"):
        load_images(broken)
    good = [it for it in scan.items if it.path.name in ("0_aaa.jpg", "1_ccc.png")]
    assert load_images(good, size=64).shape == (2, 64, 64, 3)


def test_free_blocked_layout(tmp_path: Path) -> None:
    for sub, value in (("free", 200), ("blocked", 10)):
        (tmp_path / sub).mkdir()
        for i in range(2):
            write_rgb(tmp_path / sub / f"img{i}.jpg", _solid(value, 300, 400))
    (tmp_path / "free" / "README").write_text("x")
    scan = scan_folder(tmp_path)
    assert scan.layout == "free_blocked"
    assert scan.label_counts() == (2, 2)
    assert scan.skipped == {SkipReason.NOT_IMAGE: 1}
    data = load_dataset(tmp_path)
    assert data.labels.tolist() == [1, 1, 0, 0]  # sorted by path: blocked/ before free/
    assert data.images[0].mean() < 20 < data.images[3].mean()


def test_empty_or_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VisionError, match="no such folder"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_text("")
    with pytest.raises(VisionError, match=r"no usable images.*not_image"):
        scan_folder(tmp_path / "bad")


def test_manifest_round_trip_and_bad_line(tmp_path: Path) -> None:
    record = ManifestRecord("1_x.jpg", 1, "can_path", 0.2, -0.01, "masks/1_x.png", 3, 0)
    (tmp_path / MANIFEST_NAME).write_text(record.to_json() + "\n\n")
    assert read_manifest(tmp_path) == [record]
    (tmp_path / MANIFEST_NAME).write_text(record.to_json() + "\n{broken\n")
    with pytest.raises(VisionError, match=r"manifest.jsonl:2"):
        read_manifest(tmp_path)


def _free_blocked_folder(root: Path) -> Path:
    for name, value in (("free", 180), ("blocked", 40)):
        (root / name).mkdir(parents=True)
        for i in range(2):
            write_rgb(root / name / f"img{i}.jpg", _solid(value + i))
    return root


def test_load_folders_combines_layouts_in_order_and_counts_each_folder(tmp_path: Path) -> None:
    from vision.datasets import load_folders

    first = _label_folder(tmp_path / "set")
    second = _free_blocked_folder(tmp_path / "fb")
    data = load_folders([first, second])
    assert data.images.shape == (7, 224, 224, 3) and data.images.dtype == np.uint8
    # folder order, then each folder's own (path) order: blocked/ before free/
    assert data.labels.tolist() == [0, 1, 1, 1, 1, 0, 0]
    assert [it.path.parent.name for it in data.items] == ["set"] * 3 + ["blocked"] * 2 + ["free"] * 2
    a, b = data.parts
    assert (a.root, a.layout, a.n_go, a.n_stop) == (first, "label_prefix", 1, 2)
    assert a.skipped[SkipReason.UNREADABLE] == 1 and a.skipped[SkipReason.TOO_SMALL] == 1
    assert (b.root, b.layout, b.n_go, b.n_stop, b.skipped) == (second, "free_blocked", 2, 2, {})
    assert data.describe() == f"{first} (3: GO 1, STOP 2) + {second} (4: GO 2, STOP 2)"
    # images stay aligned with their labels across the folder boundary
    for image, item in zip(data.images, data.items, strict=True):
        np.testing.assert_array_equal(image, load_images([item])[0])


def test_load_folders_limit_draws_from_all_folders_and_repeats(tmp_path: Path) -> None:
    from vision.datasets import load_folders

    roots = []
    for f in range(2):
        root = tmp_path / f"f{f}"
        root.mkdir()
        for i in range(10):
            write_rgb(root / f"{i % 2}_{f}{i:02d}.jpg", _solid(10 * i + f))
        roots.append(root)
    a = load_folders(roots, limit=8, seed=3)
    b = load_folders(roots, limit=8, seed=3)
    c = load_folders(roots, limit=8, seed=4)
    assert len(a.labels) == 8 and sum(p.n for p in a.parts) == 8 and all(p.n > 0 for p in a.parts)
    assert [it.path for it in a.items] == [it.path for it in b.items]
    assert [it.path for it in a.items] != [it.path for it in c.items]
    assert len(load_folders(roots, limit=100).labels) == 20


def test_load_folders_rejects_a_folder_given_twice_or_none(tmp_path: Path) -> None:
    from vision.datasets import load_folders

    root = _label_folder(tmp_path / "set")
    with pytest.raises(VisionError, match="the same folder as") as exc:
        load_folders([root, tmp_path / "." / "set"])
    assert "\n" not in str(exc.value)
    with pytest.raises(VisionError, match="no data folder"):
        load_folders([])
    with pytest.raises(VisionError, match="no such folder"):
        load_folders([root, tmp_path / "missing"])
    with pytest.raises(VisionError, match="--limit 0"):
        load_folders([root], limit=0)


def test_manifest_keeps_closed_loop_fields_and_old_lines_still_read(tmp_path: Path) -> None:
    from vision.datasets import ClosedLoopFields

    loop = ClosedLoopFields(3, 123456, 41, 0.8125, "STOP", "stop_probability", "false_stop", "wrong", "m")
    records = [
        ManifestRecord("0_x.jpg", 0, "dark_mat", None, None, None, 10, 0, loop),
        ManifestRecord("1_y.jpg", 1, "can_path", 0.2, -0.01, "masks/1_y.png", 10, 1),
    ]
    (tmp_path / MANIFEST_NAME).write_text("".join(r.to_json() + "\n" for r in records))
    assert read_manifest(tmp_path) == records
    import json

    line = json.loads(records[0].to_json())
    assert {"run", "run_seed", "frame", "p_stop", "decision", "outcome", "kept_because"} <= set(line)
    assert line["label"] == 0 and line["scene"] == "dark_mat"
