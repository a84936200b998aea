"""The audit's report: one self-contained HTML page (every image inline as a data: URI; no server, no
network), plus the same figures as PNG files beside it and the numbers as `audit.json`.

Overlays follow the published (shap.image_plot) style: the frame, then the STOP map and the GO map over a
faint grey copy of the frame, red where a pixel raises that output and blue where it lowers it, both maps
on one colour scale (the 99.9th percentile of |value|).
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explain.audit_metrics import caption, summary_rows
from explain.audit_types import AuditResult, FrameAudit
from explain.drawing import IMAGE_CHECK, STYLE, colour_bar, colour_map, data_uri, table
from explain.faithfulness import MIN_OUTPUT, verdict
from explain.metrics import pixel_map
from vision.labels import GO, STOP, label_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from explain.store import StoredFrame

MAX_FRAME_FIGURES = 24  # flagged frames first, then the most confident STOPs


def _png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


OVERLAY_MIN_SIDE = 224  # small network inputs are enlarged (nearest neighbour) to stay readable
GAP = 6


@dataclass(frozen=True, slots=True)
class Overlay:
    """One frame's figure: PNG bytes of [frame | STOP map | GO map] and the shared colour scale."""

    png: bytes
    scale: float


def overlay(rgb: np.ndarray, stored: StoredFrame) -> Overlay:
    """The frame, then the STOP and GO maps (red raises that output, blue lowers it; the GO map only
    when it was explained), one colour scale
    for both: the 99.9th percentile of |value|, as shap.image_plot chooses it. Drawn with numpy (no
    figure per frame), so a report with dozens of frames takes well under a second to draw."""
    import cv2

    from vision.imageio import encode_png

    maps = [
        pixel_map(stored.values[stored.outputs.index(out)]) for out in (STOP, GO) if out in stored.outputs
    ]
    scale = float(np.nanpercentile(np.abs(np.stack(maps)), 99.9)) or 1.0
    grey = rgb.astype(np.float64).mean(axis=2)
    panels = [rgb, *(colour_map(m, grey, scale) for m in maps)]
    factor = max(1, -(-OVERLAY_MIN_SIDE // rgb.shape[0]))
    if factor > 1:
        panels = [cv2.resize(p, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) for p in panels]
    gap = np.full((panels[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    row = np.concatenate([part for p in panels for part in (p, gap)][:-1], axis=1)
    bar = colour_bar(row.shape[1])
    white = np.full((GAP, row.shape[1], 3), 255, dtype=np.uint8)
    return Overlay(encode_png(np.concatenate([row, white, bar], axis=0)), scale)


def timeline_png(result: AuditResult) -> bytes:
    """P(STOP) over the drive with the threshold, STOP decisions, faults, ground truth and flagged frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ticks = result.ticks
    t0 = ticks[0].t
    t = np.asarray([x.t - t0 for x in ticks])
    p = np.asarray([np.nan if x.p_stop is None else x.p_stop for x in ticks])
    stop = np.asarray([x.decision == STOP for x in ticks])
    fig, ax = plt.subplots(figsize=(11, 3.2))
    ax.fill_between(t, 0, 1, where=stop, step="post", color="#f4c7c3", alpha=0.7, label="decision STOP")
    truth = np.asarray([np.nan if x.truth_label is None else x.truth_label for x in ticks], dtype=float)
    if np.isfinite(truth).any():
        ax.fill_between(
            t, -0.08, -0.02, where=truth == STOP, step="post", color="#444", label="ground truth STOP (bar)"
        )
    ax.plot(t, p, color="#b03030", lw=1.0, label="P(STOP) logged")
    ax.axhline(result.model.threshold, color="#555", ls="--", lw=0.8, label="threshold")
    faults = [x.t - t0 for x in ticks if x.faults]
    if faults:
        ax.plot(faults, [1.04] * len(faults), "kx", ms=4, label="fault")
    explained = [(f.t - t0, f.p_stop) for f in result.frames]
    if explained:
        ax.plot(*zip(*explained, strict=True), "o", ms=3, color="#2060c0", label="explained")
    flagged = [(f.t - t0, f.p_stop) for f in result.frames if f.flagged]
    if flagged:
        ax.plot(*zip(*flagged, strict=True), "o", ms=7, mfc="none", mec="#e08000", mew=1.5, label="flagged")
    ax.set_ylim(-0.1, 1.08)
    ax.set_xlabel("seconds into the drive")
    ax.set_ylabel("P(STOP)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return _png(fig)


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _frame_title(frame: FrameAudit) -> str:
    truth = "" if frame.truth_label is None else f", truth {label_name(frame.truth_label)}"
    return f"seq {frame.seq}: car {label_name(frame.decision)}{truth}"


def _frame_caption(frame: FrameAudit) -> str:
    parts = [f"P(STOP) {frame.p_stop:.3f}", *(html.escape(p) for p in caption(frame.metrics))]
    if frame.faults:
        parts.append("faults: " + ", ".join(frame.faults))
    if frame.flagged:
        parts.append("<b>FLAGGED: the network's STOP rests mostly on background</b>")
    return "; ".join(parts)


def figure_frames(frames: Sequence[FrameAudit]) -> list[FrameAudit]:
    """The frames the report draws: the flagged ones, then the most confident STOPs."""
    flagged = [f for f in frames if f.flagged]
    rest = sorted((f for f in frames if not f.flagged), key=lambda f: -f.p_stop)
    return (flagged + rest)[:MAX_FRAME_FIGURES]


METHOD_TITLES = {
    "deepshap": "DeepSHAP",
    "integrated-gradients": "Integrated-gradients",
    "gradcam": "Grad-CAM",
    "occlusion": "Occlusion",
}


def _faithfulness_html(result: AuditResult) -> str:
    rows = {f.method: f for f in result.faithfulness}
    if not rows and result.options.faithfulness_frames == 0:
        return "<p>not run (--faithfulness-frames 0)</p>"
    if not rows:
        return (
            f"<p>not measured: no explained frame has P(STOP) ≥ {MIN_OUTPUT} (a deletion curve needs an "
            "output to take away).</p>"
        )
    first = next(iter(rows.values()))
    intro = (
        f"<p>Deletion curves on the {first.frames} most confident STOP frames: the pixels each method ranks "
        "highest for STOP are replaced by the mean background frame, "
        f"from {first.fractions[1]:.2%} doubling to {first.fractions[-1]:.0%}, against random orders. "
        "<i>Deletion gap</i>: how much faster P(STOP) falls than with random pixels, as a share of P(STOP) "
        "(0: no better than random). The report's maps are those of "
        f"<b>{html.escape(result.options.method)}</b>; the others are made against the first "
        f"{min(25, len(result.background))} background frames.</p>"
        f'<p class="first">{html.escape(verdict(rows, result.options.method))}</p>'
    )
    rows_html = table(
        ["method", "deletion gap", "P(STOP) as pixels go (method)", "P(STOP) as pixels go (random)"],
        [
            (
                ("<b>" + html.escape(m) + "</b>") if m == result.options.method else html.escape(m),
                f"{r.score:.3f}",
                " → ".join(f"{v:.2f}" for v in r.deletion),
                " → ".join(f"{v:.2f}" for v in r.random),
            )
            for m, r in rows.items()
        ],
    )
    return intro + rows_html


def render_html(result: AuditResult, timeline: bytes, overlays: Mapping[int, Overlay]) -> str:
    m, n = result.model, result.numbers
    warn = " warn" if (m.override and not m.hashes_match) else ""
    drive_rows = [
        ("drive log", html.escape(str(result.options.log))),
        ("ticks / frames", f"{len(result.ticks)} / {n.frames_total}"),
        ("STOP decisions", str(sum(t.decision == STOP for t in result.ticks))),
        ("faults", str(sum(bool(t.faults) for t in result.ticks))),
        ("duration", f"{result.ticks[-1].t - result.ticks[0].t:.1f} s"),
    ]
    numbers_rows = [
        ("frames explained", f"{n.frames_explained} (reused from an earlier run: {result.reused})"),
        ("selection", html.escape(result.options.select)),
        ("method", html.escape(n.method)),
        *((html.escape(k), v) for k, v in summary_rows(n.metrics)),
        ("flagged (the network's STOP resting mostly on background)", str(n.flagged)),
        ("decisions the explained network agrees with", f"{n.agree} of {n.agree_of}"),
        ("audit time", f"{n.seconds:.1f} s"),
    ]
    occl = table(
        [
            "occlusion",
            "frames",
            "decisions changed",
            "P(STOP) before → after",
            "top-half share before → after",
        ],
        [
            (
                r.variant,
                str(r.frames),
                str(r.decisions_changed),
                f"{r.stop_before:.3f} → {r.stop_after:.3f}",
                f"{r.top_share_before:.1%} → {r.top_share_after:.1%}",
            )
            for r in result.occlusion
        ],
    )
    if result.sanity is not None:
        s = result.sanity
        sanity = (
            f"<p>{s.frames} frame(s), {s.background} background frames. Weighted layers "
            f"re-initialised from the output down; Spearman ρ of the STOP maps with the trained network's. "
            f"<b>{'PASSED' if s.passed else 'FAILED'}</b>: the fully randomised maps correlate "
            f"{s.final:.3f} (must be below 0.5).</p>"
            + table(
                ["randomised down to", "ρ (signed)", "ρ (|map|)"],
                [
                    (html.escape(st.layer), f"{st.rank_correlation:.3f}", f"{st.rank_correlation_abs:.3f}")
                    for st in s.steps
                ],
            )
        )
    else:
        sanity = "<p>not run (--sanity-frames 0)</p>"
    faithful = _faithfulness_html(result)
    figures = "".join(
        f'<figure><img alt="seq {f.seq}" src="{data_uri(overlays[f.seq].png)}">'
        f"<figcaption><b>{html.escape(_frame_title(f))}</b> (frame, then its maps; colour scale "
        f"±{overlays[f.seq].scale:.2g}): {_frame_caption(f)}</figcaption></figure>"
        for f in figure_frames(result.frames)
        if f.seq in overlays
    )
    bg = result.background
    bg_list = html.escape(", ".join(bg.ids[:12]) + (" …" if len(bg.ids) > 12 else ""))
    network_rows = [
        ("explained bundle", html.escape(f"{m.bundle_name} ({m.bundle_path}), arch {m.arch}")),
        ("weights sha256", m.weights_sha256),
        ("network that drove", html.escape(f"{m.drove_name} ({m.drove_path}), runtime {m.runtime}")),
        ("hashes match the log", "yes" if m.hashes_match else "NO"),
        ("max |ΔP(STOP)| vs logged", f"{m.max_prob_diff:.3g}"),
        ("background", html.escape(f"{bg.spec}: {len(bg)} frames (all listed in audit.json): {bg_list}")),
        ("device", html.escape(result.options.device)),
    ]

    method_title = METHOD_TITLES.get(result.options.method, result.options.method)

    def kv(rows: Sequence[tuple[str, str]]) -> str:
        return table(["", ""], [(html.escape(k), v) for k, v in rows])

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(method_title)} audit: {html.escape(result.options.log.name)}</title>
{STYLE}</head>
<body>
<p class="first{warn}">{html.escape(m.first_line)}</p>
<h1>{html.escape(method_title)} audit of {html.escape(result.options.log.name)}</h1>
<h2>Drive</h2>{kv(drive_rows)}
<h2>Timeline</h2><img alt="timeline" src="{data_uri(timeline)}">
<h2>Where the network looked</h2>{kv(numbers_rows)}
<h2>Flagged and example frames</h2>
<p>The frame, then the STOP and GO maps over a faint copy of the frame: red raises that output, blue
lowers it; the bar below runs from −scale (blue) to +scale (red).</p>{figures}
<h2>Occlusion</h2>
<p>The most confident STOP frames with half of the image replaced (maps against the first
{min(25, len(result.background))} background frames); a STOP resting on the can should fall when the
bottom half is hidden.</p>{occl}
<h2>Faithfulness: which explanation to trust on this network</h2>{faithful}
<h2>Sanity check (cascading randomisation)</h2>{sanity}
<h2>Network and background</h2>{kv(network_rows)}
{IMAGE_CHECK}
</body></html>
"""


def audit_json(result: AuditResult) -> dict[str, object]:
    return {
        "numbers": result.numbers.to_json(),
        "first_line": result.model.first_line,
        "model": asdict(result.model),
        "background": {"spec": result.background.spec, "ids": list(result.background.ids)},
        "frames": [
            {
                "seq": f.seq,
                "p_stop": f.p_stop,
                "decision": label_name(f.decision),
                "truth": None if f.truth_label is None else label_name(f.truth_label),
                **f.metrics,
                "faults": list(f.faults),
                "flagged": f.flagged,
            }
            for f in result.frames
        ],
        "occlusion": [asdict(r) for r in result.occlusion],
        "sanity": None if result.sanity is None else asdict(result.sanity),
        "faithfulness": [asdict(f) for f in result.faithfulness],
        "timings_s": result.timings,
    }


def write_report(
    result: AuditResult, images: Mapping[int, np.ndarray], load: Callable[[int], StoredFrame]
) -> Path:
    out = Path(result.options.out)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    timeline = timeline_png(result)
    (figures_dir / "timeline.png").write_bytes(timeline)
    overlays: dict[int, Overlay] = {}
    for frame in figure_frames(result.frames):
        overlays[frame.seq] = overlay(images[frame.seq], load(frame.seq))
        (figures_dir / f"seq_{frame.seq:08d}.png").write_bytes(overlays[frame.seq].png)
    (out / "audit.json").write_text(
        json.dumps(audit_json(result), indent=2, default=float) + "\n", encoding="utf-8"
    )
    page = out / "report.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(render_html(result, timeline, overlays), encoding="utf-8")
    tmp.replace(page)
    return page
