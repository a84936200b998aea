"""The live console app: one page, its assets, a state/frame WebSocket, and the controls (POST or socket).

Routes (all behind `security.Guard`):

| route | method | what |
| --- | --- | --- |
| `/` | GET | the page (`?token=` once sets the login cookie, then redirects to `/`) |
| `/static/{name}` | GET | one of the package's assets, by exact name (`assets.ASSET_NAMES`) |
| `/api/state` | GET | the newest snapshot as JSON |
| `/api/frame.jpg` | GET | the newest frame the network saw, as JPEG |
| `/api/stop`, `/api/resume` | POST | latch / clear the e-stop |
| `/api/teleop` | POST | `{"drive": bool, "speed": float}` (manual mode; a dead-man heartbeat) |
| `/ws` | WebSocket | server → page: JSON snapshots (text), JPEG frames (binary), newest only |
|  |  | page → server: `{"type": "stop" / "resume" / "teleop", ...}` |
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from car.operator import OperatorInbox
from car.web.assets import load_assets
from car.web.hub import LiveHub
from car.web.security import TOKEN_COOKIE, AccessPolicy, Guard

NO_STORE = {"cache-control": "no-store"}


def page_response(request: Request, policy: AccessPolicy, page: bytes, title: str) -> Response:
    """The page with the control token in a meta tag; `?token=` (already checked by the guard) sets the
    cookie and redirects, so the token does not stay in the address bar or the history."""
    if "token" in request.query_params and policy.required:
        response: Response = RedirectResponse("/", status_code=303, headers=NO_STORE)
        response.set_cookie(TOKEN_COOKIE, policy.token, httponly=True, samesite="strict", path="/")
        return response
    text = page.decode("utf-8").replace("{{TOKEN}}", html.escape(policy.token)).replace("{{TITLE}}", title)
    return Response(text, media_type="text/html; charset=utf-8", headers=NO_STORE)


def asset_routes() -> list[Route]:
    assets = load_assets()

    async def asset(request: Request) -> Response:
        found = assets.get(str(request.path_params.get("name", "")))
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        body, media = found
        return Response(body, media_type=media, headers=NO_STORE)

    return [Route("/static/{name}", asset, methods=["GET"])]


def apply_control(inbox: OperatorInbox, message: dict[str, Any]) -> str | None:
    """One control message (POST body or socket message); returns an error text or None."""
    kind = message.get("type")
    if kind == "stop":
        inbox.emergency_stop("web console")
    elif kind == "resume":
        inbox.resume()
    elif kind == "teleop":
        if not inbox.manual:
            return "teleop needs manual mode (car drive --mode manual)"
        speed = message.get("speed")
        inbox.teleop(bool(message.get("drive")), None if speed is None else float(speed))
    else:
        return f"unknown control {kind!r}; expected stop, resume or teleop"
    return None


def console_app(hub: LiveHub, inbox: OperatorInbox, policy: AccessPolicy) -> Any:
    page = load_assets()["console.html"][0]

    async def index(request: Request) -> Response:
        return page_response(request, policy, page, "car console")

    async def state(request: Request) -> Response:
        return Response(json.dumps(hub.state()), media_type="application/json", headers=NO_STORE)

    async def frame(request: Request) -> Response:
        newest = hub.newest_frame()
        if newest is None:
            return Response(status_code=204, headers=NO_STORE)
        return Response(newest[1], media_type="image/jpeg", headers=NO_STORE)

    def control(kind: str) -> Any:
        async def endpoint(request: Request) -> Response:
            body: dict[str, Any] = {}
            if kind == "teleop":
                try:
                    body = dict(await request.json())
                except (ValueError, TypeError):
                    return JSONResponse({"error": "expected a JSON object"}, status_code=400)
            error = apply_control(inbox, {**body, "type": kind})
            if error is not None:
                return JSONResponse({"error": error}, status_code=409)
            return JSONResponse({"ok": True, "operator": hub.state()["operator"]}, headers=NO_STORE)

        return endpoint

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        hub.viewer_joined()
        reader = asyncio.create_task(_read_controls(ws, inbox))
        try:
            await _feed(ws, hub, reader)
        finally:
            hub.viewer_left()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/api/state", state, methods=["GET"]),
        Route("/api/frame.jpg", frame, methods=["GET"]),
        Route("/api/stop", control("stop"), methods=["POST"]),
        Route("/api/resume", control("resume"), methods=["POST"]),
        Route("/api/teleop", control("teleop"), methods=["POST"]),
        WebSocketRoute("/ws", socket),
        *asset_routes(),
    ]
    return Guard(Starlette(routes=routes), policy)


async def _read_controls(ws: WebSocket, inbox: OperatorInbox) -> None:
    while True:
        text = await ws.receive_text()
        try:
            message = json.loads(text)
            error = apply_control(inbox, message) if isinstance(message, dict) else "expected a JSON object"
        except (ValueError, TypeError) as exc:
            error = f"bad message: {exc}"
        if error is not None:
            await ws.send_text(json.dumps({"error": error}))


async def _feed(ws: WebSocket, hub: LiveHub, reader: asyncio.Task[None]) -> None:
    """Send the newest snapshot and frame whenever they change; a slow socket just skips ahead."""
    sent_version, sent_frame = hub.newest_snapshot()[0], -1
    poll = min(hub.period / 2.0, 0.05)
    await ws.send_text(json.dumps(hub.state()))  # at once, before the hub's next refresh
    while not reader.done():
        version, snapshot = hub.newest_snapshot()
        try:
            if version != sent_version:
                await ws.send_text(snapshot)
                sent_version = version
            frame = hub.newest_frame()
            if frame is not None and frame[0] != sent_frame:
                await ws.send_bytes(frame[1])
                sent_frame = frame[0]
        except Exception:  # the viewer went away (disconnect, reset): its connection just ends
            return
        await asyncio.sleep(poll)
