"""The page and its assets, read once from the package: a fixed table, never a path from a request."""

from __future__ import annotations

from importlib import resources

ASSET_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
ASSET_NAMES = ("console.html", "console.js", "labeller.html", "labeller.js", "style.css", "chart.js")


def load_assets() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, content type) for every file in `ASSET_NAMES`."""
    root = resources.files("car.web") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for name in ASSET_NAMES:
        suffix = name[name.rfind(".") :]
        out[name] = ((root / name).read_bytes(), ASSET_TYPES[suffix])
    return out
