"""The fleet report: per drive and per bundle hash, a trend across bundle versions, the worst frames.

Writes into DIR: `fleet.json` (every number), `frames.parquet` (one row per explained frame of every drive:
readable with pyarrow, pandas or duckdb) and `report.html` (opens from disk; images embedded).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORST_IN_REPORT = 12


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


@dataclass(frozen=True, slots=True)
class Group:
    """The numbers of a set of drives (one drive, one bundle, the fleet)."""

    drives: int
    frames_explained: int
    stop_focus_mean: float | None  # STOP attribution on the can, over frames with the can in view
    pointing_hit_rate: float | None
    flagged: int  # the network's STOPs resting mostly on background
    faults: int  # ticks with a fault
    not_reproduced: int  # logged decisions the torch twin did not reproduce

    @classmethod
    def of(cls, docs: Sequence[dict[str, Any]]) -> Group:
        frames = [row for d in docs for row in d["frames"]]
        on_can = [float(r["stop_on_can"]) for r in frames if r["stop_on_can"] is not None]
        hits = [float(r["pointing_hit"]) for r in frames if r["pointing_hit"] is not None]
        return cls(
            drives=len(docs),
            frames_explained=len(frames),
            stop_focus_mean=_mean(on_can),
            pointing_hit_rate=_mean(hits),
            flagged=sum(bool(r["flagged"]) for r in frames),
            faults=sum(int(d["summary"]["faults"]) for d in docs),
            not_reproduced=sum(int(d["summary"]["not_reproduced"]) for d in docs),
        )


def by_bundle(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per bundle hash, oldest first (by its first drive): the trend across bundle versions."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        groups.setdefault(d["summary"]["bundle_sha256"], []).append(d)
    rows = []
    for sha, members in groups.items():
        started = sorted(m["summary"]["started_utc"] for m in members)
        rows.append(
            {
                "bundle_sha256": sha,
                "bundle_name": members[0]["summary"]["bundle_name"],
                "first_drive_utc": started[0],
                "last_drive_utc": started[-1],
                **_group_dict(Group.of(members)),
            }
        )
    return sorted(rows, key=lambda r: r["first_drive_utc"])


def _group_dict(group: Group) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(group)


def worst_frames(docs: Sequence[dict[str, Any]], n: int = WORST_IN_REPORT) -> list[dict[str, Any]]:
    candidates = [w for d in docs for w in d.get("worst", [])]
    return sorted(candidates, key=lambda w: (-w["badness"], w["drive"], w["seq"]))[:n]


def write_parquet(docs: Sequence[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row for d in docs for row in d["frames"]]
    table = pa.Table.from_pylist(rows) if rows else pa.table({"drive": pa.array([], pa.string())})
    pq.write_table(table, path)


def fleet_document(
    docs: Sequence[dict[str, Any]], failed: Sequence[dict[str, Any]], run: dict[str, Any]
) -> dict[str, Any]:
    return {
        "run": run,
        "fleet": _group_dict(Group.of(docs)),
        "drives": [
            {**d["summary"], **_group_dict(Group.of([d])), "resumed": d.get("resumed", False)} for d in docs
        ],
        "bundles": by_bundle(docs),
        "worst_frames": worst_frames(docs),
        "failed": list(failed),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


GROUP_HEADER = ("frames", "STOP on the can", "pointing game", "flagged STOPs", "faults", "not reproduced")


def _group_cells(g: dict[str, Any]) -> list[object]:
    return [
        g["frames_explained"],
        _pct(g["stop_focus_mean"]),
        _pct(g["pointing_hit_rate"]),
        g["flagged"],
        g["faults"],
        g["not_reproduced"],
    ]


def _trend_png(bundles: Sequence[dict[str, Any]]) -> bytes | None:
    if len(bundles) < 2:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    xs = range(len(bundles))
    on_can = [np.nan if b["stop_focus_mean"] is None else b["stop_focus_mean"] for b in bundles]
    flagged = [b["flagged"] / max(1, b["frames_explained"]) for b in bundles]
    ax.plot(xs, on_can, "o-", label="STOP on the can")
    ax.plot(xs, flagged, "s-", label="flagged STOPs per frame")
    ax.set_xticks(list(xs), [f"{b['bundle_name']}\n{b['bundle_sha256'][:8]}" for b in bundles], fontsize=7)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _img(png: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def render_html(doc: dict[str, Any]) -> str:
    fleet, run = doc["fleet"], doc["run"]
    drive_rows = [
        [
            f'<a href="{html.escape(d["drive"])}/report.html">{html.escape(d["drive"])}</a>',
            html.escape(d["bundle_name"]),
            d["bundle_sha256"][:12],
            *_group_cells(d),
        ]
        for d in doc["drives"]
    ]
    bundle_rows = [
        [
            html.escape(b["bundle_name"]),
            b["bundle_sha256"][:12],
            b["first_drive_utc"],
            b["drives"],
            *_group_cells(b),
        ]
        for b in doc["bundles"]
    ]
    trend = _trend_png(doc["bundles"])
    worst = []
    for w in doc["worst_frames"]:
        picture = _img(Path(w["png"]).read_bytes()) if w["png"] and Path(w["png"]).is_file() else "(no map)"
        caption = (
            f"{html.escape(w['drive'])} frame {w['seq']}: P(STOP) {w['p_stop']:.2f}, "
            f"{_pct(w['share'])} {w['share_of']}{' (flagged)' if w['flagged'] else ''}"
        )
        worst.append(f"<figure>{picture}<figcaption>{caption}</figcaption></figure>")
    failed = "".join(f"<li>{html.escape(f['drive'])}: {html.escape(f['error'])}</li>" for f in doc["failed"])
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'><title>Fleet audit</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
            "figure{display:inline-block}</style>",
            "</head><body>",
            f"<h1>Fleet audit: {fleet['drives']} drives, {fleet['frames_explained']} frames explained</h1>",
            f"<p>engine {html.escape(run['engine'])}, {run['workers']} workers, {run['wall_s']:.1f} s</p>",
            "<h2>Fleet</h2>",
            _table(GROUP_HEADER, [_group_cells(fleet)]),
            "<h2>Per bundle (oldest first: the trend across versions)</h2>",
            _table(("bundle", "sha256", "first drive", "drives", *GROUP_HEADER), bundle_rows),
            _img(trend) if trend else "",
            "<h2>Per drive</h2>",
            _table(("drive", "bundle", "sha256", *GROUP_HEADER), drive_rows),
            "<h2>Worst frames of the fleet</h2><p>The network's STOPs with the least attribution on the can "
            "(flagged first); frame | STOP map | GO map, red raises the output, blue lowers it.</p>",
            *worst,
            f"<h2>Failed drives</h2><ul>{failed}</ul>" if failed else "",
            "</body></html>",
        ]
    )


def write_fleet_report(out: Path, doc: dict[str, Any], docs: Sequence[dict[str, Any]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "fleet.json").write_text(json.dumps(doc, indent=2, default=float), encoding="utf-8")
    write_parquet(docs, out / "frames.parquet")
    (out / "report.html").write_text(render_html(doc), encoding="utf-8")
