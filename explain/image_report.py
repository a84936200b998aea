"""`car explain-image`'s report: one self-contained HTML page (images inline), the rows as PNG files and
the numbers as `image_audit.json`.

Each image gets a row *image | map of class 1 | … | map of class k* (red raises that class's output, blue
lowers it, shap.image_plot's colours, one colour scale for every map of the image, the masked rows
included), then one row per masked variant with its own top-k classes.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from explain.drawing import IMAGE_CHECK, STYLE, colour_bar, colour_map, data_uri, table
from explain.image_audit import Explained, ImageAuditResult, ImageFinding, figure_name, image_audit_json

PANEL_MIN_SIDE = 160  # small network inputs are enlarged (nearest neighbour) to stay readable
GAP = 6


def panels(view: Explained, scale: float) -> list[np.ndarray]:
    """The image, then one colour map per top class, enlarged to at least PANEL_MIN_SIDE."""
    import cv2

    grey = view.rgb.astype(np.float64).mean(axis=2)
    out = [view.rgb, *(colour_map(m, grey, scale) for m in view.maps)]
    factor = max(1, -(-PANEL_MIN_SIDE // view.rgb.shape[0]))
    if factor > 1:
        out = [cv2.resize(p, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) for p in out]
    return out


def row_png(parts: list[np.ndarray]) -> bytes:
    """Panels side by side with the colour bar (−scale blue … +scale red) under them."""
    from vision.imageio import encode_png

    gap = np.full((parts[0].shape[0], GAP, 3), 255, dtype=np.uint8)
    row = np.concatenate([x for p in parts for x in (p, gap)][:-1], axis=1)
    white = np.full((GAP, row.shape[1], 3), 255, dtype=np.uint8)
    return encode_png(np.concatenate([row, white, colour_bar(row.shape[1])], axis=0))


def _panel_html(view: Explained, scale: float, title: str) -> str:
    from vision.imageio import encode_png

    parts = panels(view, scale)
    captions = [title, *(f"{c.label}: {c.probability:.3f}" for c in view.top)]
    cells = "".join(
        f'<figure class="panel"><img alt="{html.escape(cap)}" src="{data_uri(encode_png(p))}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for p, cap in zip(parts, captions, strict=True)
    )
    return f'<div class="row">{cells}</div>'


def _image_section(index: int, finding: ImageFinding) -> str:
    original = finding.original
    rows = [
        (
            html.escape(f"{m.half} half {m.fill}"),
            html.escape(", ".join(f"{c.label} {c.probability:.3f}" for c in m.view.top)),
            "<b>yes</b>" if m.top1_changed else "no",
        )
        for m in finding.masked
    ]
    masked = "".join(
        _panel_html(
            m.view, finding.scale, f"{m.half} half {m.fill}" + (" (top-1 changed)" if m.top1_changed else "")
        )
        for m in finding.masked
    )
    bar = data_uri(row_png_bar())
    return (
        f"<h2>{index + 1}. {html.escape(finding.path.name)}</h2>"
        f"<p>Top {len(original.top)}: "
        + html.escape(", ".join(f"{c.label} {c.probability:.3f}" for c in original.top))
        + f". Colour scale ±{finding.scale:.3g} for every map of this image "
        f'(<img class="bar" alt="colour bar" src="{bar}"> blue lowers, red raises the class).</p>'
        + _panel_html(original, finding.scale, "image")
        + "<h3>Half the image masked</h3>"
        + table(["masked", "new top classes", "top-1 changed"], rows)
        + masked
    )


def row_png_bar() -> bytes:
    from vision.imageio import encode_png

    return encode_png(colour_bar(160, 10))


PAGE_STYLE = """<style>
.row{display:flex;flex-wrap:wrap;gap:6px;margin:0.4em 0}
.panel{margin:0;text-align:center} .panel img{display:block;border:1px solid #bbb}
.panel figcaption{max-width:170px}
img.bar{vertical-align:middle;height:10px}
</style>"""


def render_image_html(result: ImageAuditResult) -> str:
    o = result.options
    labels = (
        "from the bundle's manifest" if result.labels_from_manifest else "numbered (the manifest names none)"
    )
    sections = "".join(_image_section(i, f) for i, f in enumerate(result.images))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Image audit: {html.escape(result.bundle_name)}</title>
{STYLE}{PAGE_STYLE}</head>
<body>
<p class="first">{html.escape(result.bundle_name)} ({html.escape(str(o.model))}),
method {html.escape(o.method)},
{len(result.background_ids)} background frames ({html.escape(o.background)}); class names {labels}.</p>
<h1>Image audit of {len(result.images)} image(s)</h1>
<p>Each image, then the map of each of its top classes (up to {o.top}): red raises that class's output, blue
lowers it. Then the top or bottom half replaced by white, black and noise: the new top classes and their
maps, on the same colour scale.</p>
{sections}
{IMAGE_CHECK}
</body></html>
"""


def write_image_report(result: ImageAuditResult) -> Path:
    out = Path(result.options.out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for i, finding in enumerate(result.images):
        (out / figure_name(i)).write_bytes(row_png(panels(finding.original, finding.scale)))
        for m in finding.masked:
            (out / figure_name(i, f"{m.half} {m.fill}")).write_bytes(row_png(panels(m.view, finding.scale)))
    (out / "image_audit.json").write_text(
        json.dumps(image_audit_json(result), indent=2) + "\n", encoding="utf-8"
    )
    page = out / "report.html"
    tmp = page.with_suffix(".html.tmp")
    tmp.write_text(render_image_html(result), encoding="utf-8")
    tmp.replace(page)
    return page
