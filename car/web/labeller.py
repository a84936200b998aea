"""The labeller app (`car label --web`): the queue, the frames, and label/undo as POSTs, behind the guard.

| route | method | what |
| --- | --- | --- |
| `/` | GET | the page |
| `/static/{name}` | GET | the package's assets, by exact name |
| `/api/items` | GET | every item: log, tick, P(STOP) logged and suggested, label so far; counts |
| `/api/frame/{index}` | GET | item `index`'s frame as PNG (an integer, never a path) |
| `/api/label` | POST | `{"indices": [...], "label": "go" / "stop" / "skip"}` (one action) |
| `/api/undo` | POST | take back the newest action |
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from car.errors import CarError
from car.label_session import LabelSession
from car.web.assets import load_assets
from car.web.console import NO_STORE, asset_routes, page_response
from car.web.security import AccessPolicy, Guard


def items_view(session: LabelSession) -> dict[str, Any]:
    return {
        "items": [
            {
                "i": i,
                "log": Path(item.log).name,
                "seq": item.seq,
                "p_logged": item.p_stop_logged,
                "p_model": item.p_stop_model,
                "decision": item.decision_logged,
                "network": item.network_logged,
                "label": session.label_of(i),
            }
            for i, item in enumerate(session.items)
        ],
        "counts": session.counts(),
        "threshold": session.threshold,
        "has_model": any(item.p_stop_model is not None for item in session.items),
        "out": str(session.out),
    }


def labeller_app(session: LabelSession, policy: AccessPolicy) -> Any:
    page = load_assets()["labeller.html"][0]
    lock = threading.Lock()  # one writer at a time (two tabs may be open)

    async def index(request: Request) -> Response:
        return page_response(request, policy, page, "car label")

    async def items(request: Request) -> Response:
        with lock:
            return JSONResponse(items_view(session), headers=NO_STORE)

    async def frame(request: Request) -> Response:
        i = int(request.path_params["index"])
        if not 0 <= i < len(session.items):
            return Response("no such item", status_code=404, media_type="text/plain")

        def encode() -> bytes:
            with lock:
                return session.image_png(i)

        return Response(await asyncio.to_thread(encode), media_type="image/png")

    async def label(request: Request) -> Response:
        try:
            body = await request.json()
            indices = [int(i) for i in body["indices"]]
            name = str(body["label"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'expected {"indices": [...], "label": "go|stop|skip"}'}, 400)
        try:
            with lock:
                action, changed = session.label(indices, name)
                counts = session.counts()
        except CarError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"action": action, "changed": changed, "counts": counts})

    async def undo(request: Request) -> Response:
        with lock:
            restored = session.undo()
            counts = session.counts()
        return JSONResponse({"restored": restored, "counts": counts})

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/items", items, methods=["GET"]),
        Route("/api/frame/{index:int}", frame, methods=["GET"]),
        Route("/api/label", label, methods=["POST"]),
        Route("/api/undo", undo, methods=["POST"]),
        *asset_routes(),
    ]
    return Guard(Starlette(routes=routes), policy)
