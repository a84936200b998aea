"""Drawing shared by the reports: shap.image_plot's colours, the colour bar, inline images, tables."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

import numpy as np

_BLUE = (30.0 / 255, 136.0 / 255, 229.0 / 255)
_RED = (255.0 / 255, 13.0 / 255, 87.0 / 255)
_LUT_SIZE = 256


def _red_transparent_blue_lut() -> np.ndarray:
    """shap's `red_transparent_blue` colour map as a 256-entry RGBA table, built here so that drawing a map
    does not import shap (1.7 s, once per audit worker).

    shap defines it as 200 evenly spaced stops (blue, opaque → transparent, then red, transparent → opaque)
    given to matplotlib's `LinearSegmentedColormap.from_list`, which samples the piecewise-linear ramp at 256
    evenly spaced points; `tests/test_explain_drawing.py` checks the table against shap's own."""
    fade = np.linspace(0.0, 1.0, 100)
    stops = np.concatenate(
        [
            np.column_stack([np.tile(_BLUE, (100, 1)), fade[::-1]]),
            np.column_stack([np.tile(_RED, (100, 1)), fade]),
        ]
    )
    where = np.linspace(0.0, 1.0, len(stops))
    at = np.linspace(0.0, 1.0, _LUT_SIZE)
    return np.column_stack([np.interp(at, where, stops[:, c]) for c in range(4)])


_LUT = _red_transparent_blue_lut()


def red_transparent_blue(values: np.ndarray) -> np.ndarray:
    """RGBA (…, 4) in 0..1 for values in 0..1, as matplotlib looks a float up in a colour map's table."""
    index = np.clip((np.asarray(values, dtype=np.float64) * _LUT_SIZE).astype(np.int64), 0, _LUT_SIZE - 1)
    return _LUT[index]


def colour_map(pmap: np.ndarray, grey: np.ndarray, scale: float) -> np.ndarray:
    """shap.image_plot's look: red_transparent_blue over a faint (alpha 0.15) grey copy of the frame."""
    rgba = red_transparent_blue(np.clip(pmap / scale, -1.0, 1.0) * 0.5 + 0.5)
    under = 255.0 * 0.85 + 0.15 * grey
    alpha = rgba[..., 3:4]
    return (rgba[..., :3] * 255.0 * alpha + under[..., None] * (1.0 - alpha)).astype(np.uint8)


def colour_bar(width: int, height: int = 10) -> np.ndarray:
    """The colour scale, −scale (blue) on the left to +scale (red) on the right."""
    rgba = red_transparent_blue(np.linspace(0.0, 1.0, width))
    colours = (rgba[:, :3] * 255.0 * rgba[:, 3:4] + 255.0 * (1.0 - rgba[:, 3:4])).astype(np.uint8)
    return np.repeat(colours[None], height, axis=0)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# Counts loaded images into <body data-images-loaded="ok/total">, so a headless browser can check them.
IMAGE_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
});
</script>"""

STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.9em} td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.first{padding:0.6em;background:#eef3fb;border-left:4px solid #2060c0}
.warn{background:#fdecea;border-left-color:#c03030} figure{margin:1em 0} figcaption{font-size:0.85em}
img{max-width:100%}
</style>"""
