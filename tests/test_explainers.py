"""The explainer registry, the audit-metric registry and faithfulness, on a tiny drive log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from car.cli import main
from explain.audit import AuditOptions, run_audit
from explain.audit_metrics import FRAME_METRICS
from explain.explainers import EXPLAINERS, ExplainContext, build_explainer
from explain.explainers.sliding_window import onnx_predict
from explain.faithfulness import deletion_gap
from explain.metrics import pixel_map
from tests.test_explain_support import PREP, can_detector, make_bundle, tiny_arch_registered, write_drive
from vision.labels import GO, STOP

TICKS = 16


@pytest.fixture(scope="module", autouse=True)
def tiny_arch() -> Iterator[None]:
    with tiny_arch_registered():
        yield


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory, tiny_arch: None) -> Path:
    root = tmp_path_factory.mktemp("explainers")
    bundle = make_bundle(root, can_detector(), int8=True)
    return write_drive(root / "drive.sqlite", bundle, TICKS, runtime="int8")


def options(drive: Path, out: Path, **kw: object) -> AuditOptions:
    base = AuditOptions(
        log=drive,
        out=out,
        select="frames:12-15",
        background=f"log:{drive}@4",
        progress=False,
        occlusion_frames=2,
        sanity_frames=0,
        faithfulness_frames=2,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", list(EXPLAINERS))
def test_every_registered_method_audits_a_drive(method: str, drive: Path, tmp_path: Path) -> None:
    result = run_audit(options(drive, tmp_path / method, method=method))
    assert result.numbers.method == method
    assert result.numbers.frames_explained == 4
    fingerprint = json.loads((tmp_path / method / "attributions" / "fingerprint.json").read_text())
    assert fingerprint["method"] == method
    with np.load(next((tmp_path / method / "attributions").glob("seq_*.npz"))) as z:
        assert z["values"].shape == (2, 3, PREP.input_size, PREP.input_size)
        assert np.isfinite(z["values"]).all() and np.abs(z["values"]).sum() > 0
    assert set(result.numbers.faithfulness_by_method) == set(EXPLAINERS)
    assert result.numbers.faithfulness == result.numbers.faithfulness_by_method[method]
    # The can detector's STOP rests on the dark can below the horizon, whatever the method.
    assert result.numbers["below_horizon_mean"] > 0.8


def test_cli_method_choices_come_from_the_registry_and_json_keeps_its_keys(
    drive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    args = [
        "explain",
        str(drive),
        "--out",
        str(out),
        "--select",
        "frames:12-15",
        "--background",
        f"log:{drive}@4",
    ]
    quick = ["--no-progress", "--sanity-frames", "0", "--occlusion-frames", "1", "--faithfulness-frames", "2"]
    assert main([*args, *quick, "--method", "gradcam", "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    old_keys = {
        "frames_explained", "frames_total", "stop_focus_mean", "random_focus_mean", "pointing_hit_rate",
        "frames_with_can", "flagged", "agree", "agree_of", "below_horizon_mean",
        "sanity_final_rank_correlation", "sanity_passed", "seconds",
    }  # fmt: skip
    assert old_keys <= set(numbers)
    assert numbers["method"] == "gradcam" and isinstance(numbers["faithfulness"], float)
    # Every registered metric is in every frame of audit.json, and every summary in the numbers.
    audit = json.loads((out / "audit.json").read_text())
    for name, metric in FRAME_METRICS.items():
        assert all(name in f for f in audit["frames"])
        assert all(s.key in numbers for s in metric.summaries)
    assert [f["method"] for f in audit["faithfulness"]] == list(EXPLAINERS)
    page = (out / "report.html").read_text()
    assert "Grad-CAM audit" in page and "which explanation to trust" in page
    # The same folder with another method: the store refuses, it does not mix methods.
    assert main([*args, *quick, "--method", "occlusion"]) == 2
    assert "method" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not a registered choice
        main([*args, "--method", "lime"])
    assert "invalid choice" in capsys.readouterr().err


def test_occlusion_runs_the_int8_onnx_that_drove(drive: Path, tmp_path: Path) -> None:
    from car.drivelog import DriveLogReader
    from explain.audit import frame_inputs
    from vision.bundle import load_bundle

    with DriveLogReader(drive) as log:
        bundle = load_bundle(log.meta.bundle_path)
        frames = [r.rgb for r in log.records() if r.rgb is not None][12:14]
    x = frame_inputs(frames, PREP)
    int8 = bundle.path_of("onnx_int8")
    context = ExplainContext(can_detector(), x, onnx=int8)
    result = build_explainer("occlusion", context).explain(x, (GO, STOP))
    np.testing.assert_allclose(result.model_output, onnx_predict(int8)(x)[:, [GO, STOP]])
    torch_out = can_detector()(torch.from_numpy(x)).detach().numpy()
    assert np.abs(result.model_output - torch_out).max() > 0  # INT8, not the float twin
    # A bundle whose ONNX columns differ from the explained view maps them with `onnx_outputs`.
    swapped = ExplainContext(can_detector(), x, onnx=int8, onnx_outputs=lambda p: p[:, ::-1])
    flipped = build_explainer("occlusion", swapped).explain(x, (GO, STOP))
    np.testing.assert_allclose(flipped.model_output, result.model_output[:, ::-1])


def test_integrated_gradients_is_complete_up_to_its_riemann_error(drive: Path) -> None:
    from car.drivelog import DriveLogReader
    from explain.audit import frame_inputs

    with DriveLogReader(drive) as log:
        frames = [r.rgb for r in log.records() if r.rgb is not None]
    x = frame_inputs(frames, PREP)
    result = build_explainer("integrated-gradients", ExplainContext(can_detector(), x[:4])).explain(
        x[7:9], (STOP,)
    )
    total = result.values.reshape(2, -1).astype(np.float64).sum(1) + result.expected[0]
    np.testing.assert_allclose(total, result.model_output[:, 0], atol=0.05)


# ------------------------------------------------------------------------------------------ faithfulness


class Spotter(nn.Module):
    """STOP when a bright square is in the image."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * 8 * 8, 2),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def squares(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(0.0, 0.3, size=(n, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(y):
        top, left = rng.integers(0, 12, size=2)
        x[i, :, top : top + 4, left : left + 4] += 2.0
    return x, y


def test_a_good_attribution_beats_a_random_one_on_a_tiny_trained_network() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    net = Spotter()
    x_train, y_train = squares(64, rng)  # training frames; the scored frames below are fresh ones
    target = torch.from_numpy(np.stack([1 - y_train, y_train], axis=1).astype(np.float32))
    opt = torch.optim.Adam(net.parameters(), lr=0.03)
    for _ in range(40):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy(net(torch.from_numpy(x_train)), target)
        loss.backward()
        opt.step()
    net.eval()
    x_test, y_test = squares(64, np.random.default_rng(1))
    stops = x_test[y_test == 1][:8]
    background, _ = squares(8, np.random.default_rng(2))
    context = ExplainContext(net, background)
    fill = background.mean(axis=0)
    from explain.explainers.base import torch_predict

    predict = torch_predict(net, "cpu")
    stops = stops[predict(stops)[:, STOP] > 0.9]  # the frames it calls STOP, confidently
    assert len(stops) >= 5  # it learned the squares
    scores = {}
    for method in EXPLAINERS:
        maps = np.stack(
            [pixel_map(v) for v in build_explainer(method, context).explain(stops, (STOP,)).of_output(STOP)]
        )
        scores[method] = deletion_gap(method, stops, maps, fill=fill, predict=predict, output=STOP).score
    noise = np.random.default_rng(3).normal(size=(len(stops), 16, 16))
    scores["random"] = deletion_gap("random", stops, noise, fill=fill, predict=predict, output=STOP).score
    assert abs(scores["random"]) < 0.1
    for method in ("deepshap", "integrated-gradients", "occlusion"):
        assert scores[method] > scores["random"] + 0.2, scores


def test_the_verdict_names_the_most_faithful_methods_together_and_the_useless_ones() -> None:
    from explain.faithfulness import Faithfulness, verdict

    scores = {"deepshap": 0.773, "integrated-gradients": 0.777, "gradcam": 0.709, "occlusion": 0.01}
    rows = {m: Faithfulness(m, 4, s, (), (), ()) for m, s in scores.items()}
    text = verdict(rows, "gradcam")
    assert "integrated-gradients (0.777) and deepshap (0.773)" in text
    assert "this report (gradcam) score 0.709" in text and "no better than random: occlusion" in text
    assert "this report" not in verdict(rows, "deepshap")


def test_a_drive_without_a_stop_worth_deleting_reports_no_faithfulness(drive: Path, tmp_path: Path) -> None:
    result = run_audit(options(drive, tmp_path / "go", select="frames:0-3", occlusion_frames=0))
    assert max(f.p_stop for f in result.frames) < 0.1  # the can is still far away
    assert result.numbers.faithfulness is None and not result.numbers.faithfulness_by_method
    assert "no explained frame has P(STOP)" in (tmp_path / "go" / "report.html").read_text()


def test_a_store_written_before_methods_were_recorded_counts_as_deepshap(tmp_path: Path) -> None:
    from explain.errors import ExplainError
    from explain.store import AttributionStore, Fingerprint

    old = Fingerprint("w", "b", "i", (GO, STOP))
    AttributionStore(tmp_path, old)
    marker = tmp_path / "attributions" / "fingerprint.json"
    doc = json.loads(marker.read_text())
    del doc["method"]  # as an earlier version wrote it
    marker.write_text(json.dumps(doc))
    AttributionStore(tmp_path, old)  # deepshap: resumes
    with pytest.raises(ExplainError, match="method"):
        AttributionStore(tmp_path, Fingerprint("w", "b", "i", (GO, STOP), "gradcam"))
