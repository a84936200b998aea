"""The console's security model: tokens, same-origin controls, loopback Host names, no file paths.

Requests go through Starlette's in-process client (the real app and middleware); one test also checks the
real uvicorn server on an ephemeral 127.0.0.1 port.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from car.errors import CarError
from car.operator import OperatorInbox
from car.web.console import console_app
from car.web.hub import LiveHub
from car.web.security import AccessPolicy, parse_listen
from car.web.server import WebServer

TOKEN = "s3cret-token-for-the-tests"
BASE = "http://127.0.0.1:8765"
SAME_ORIGIN = {"origin": BASE}
WS_HOST = {"host": "127.0.0.1:8765"}  # the test client's sockets otherwise say "testserver"


def make_app(policy: AccessPolicy, manual: bool = False) -> tuple[TestClient, OperatorInbox]:
    inbox = OperatorInbox(manual=manual)
    hub = LiveHub(threshold=0.5, operator=inbox)
    return TestClient(console_app(hub, inbox, policy), base_url=BASE), inbox


def required() -> AccessPolicy:
    return AccessPolicy.resolve("127.0.0.1", TOKEN, environ={})


def test_public_address_needs_a_token_and_a_long_one() -> None:
    with pytest.raises(CarError, match="needs a token"):
        AccessPolicy.resolve("0.0.0.0", "", environ={})
    with pytest.raises(CarError, match="too short"):
        AccessPolicy.resolve("0.0.0.0", "short", environ={})
    from_env = AccessPolicy.resolve("0.0.0.0", "", environ={"CAR_WEB_TOKEN": TOKEN})
    assert from_env.required and from_env.token == TOKEN and not from_env.loopback
    auto = AccessPolicy.resolve("192.168.1.5", "auto", environ={})
    assert auto.required and auto.generated and len(auto.token) >= 16
    local = AccessPolicy.resolve("127.0.0.1", "", environ={})
    assert not local.required and local.loopback
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_listen("[::1]:7000") == ("::1", 7000)
    with pytest.raises(CarError):
        parse_listen("localhost:http")


def test_no_token_or_a_wrong_token_gets_401_for_pages_api_and_sockets() -> None:
    client, inbox = make_app(required())
    for path in ("/", "/api/state", "/static/console.js", "/api/frame.jpg"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"x-car-token": "wrong-token-wrong-token"}).status_code == 401
        assert client.get(path, headers={"authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert client.post("/api/stop", headers=SAME_ORIGIN).status_code == 401
    assert client.post("/api/stop", headers={**SAME_ORIGIN, "x-car-token": TOKEN[:-1]}).status_code == 401
    assert not inbox.state().latched
    for headers in (WS_HOST, {**WS_HOST, "x-car-token": "nope-nope-nope-nope"}):
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws", headers=headers):
            pass
        assert closed.value.code == 1008 and "token" in closed.value.reason
    # the right token, by header, bearer, or the cookie that ?token= sets
    assert client.get("/api/state", headers={"x-car-token": TOKEN}).status_code == 200
    assert client.get("/api/state", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    login = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
    assert (
        "httponly" in login.headers["set-cookie"].lower()
        and "samesite=strict" in login.headers["set-cookie"].lower()
    )
    client.cookies.set("car_token", TOKEN)
    page = client.get("/")
    assert page.status_code == 200 and "STOP" in page.text
    with client.websocket_connect("/ws", headers={**WS_HOST, **SAME_ORIGIN}) as ws:
        ws.send_text(json.dumps({"type": "stop"}))
        assert "threshold" in json.loads(ws.receive_text())
    assert inbox.state().latched


def test_cross_origin_requests_cannot_stop_or_drive_the_car() -> None:
    policy = AccessPolicy.resolve("127.0.0.1", "", environ={})  # loopback, no configured token
    client, inbox = make_app(policy, manual=True)
    token = policy.token  # the page's control token
    evil = [
        {"origin": "http://evil.example", "x-car-token": token},
        {"origin": "null", "x-car-token": token},
        {"sec-fetch-site": "cross-site", "x-car-token": token},
        {"sec-fetch-site": "same-site", "x-car-token": token},
        {**SAME_ORIGIN},  # a form post or sendBeacon cannot add the token header
        {"content-type": "application/x-www-form-urlencoded"},
    ]
    for headers in evil:
        for path in ("/api/stop", "/api/teleop", "/api/resume"):
            response = client.post(path, headers=headers, content=b'{"drive": true}')
            assert response.status_code == 403, (path, headers)
    assert client.get("/api/stop").status_code == 405  # controls are never GET
    state = inbox.state()
    assert not state.latched and not state.drive_held
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws", headers={**WS_HOST, "origin": "http://evil.example"}),
    ):
        pass
    assert not inbox.state().latched
    # the page itself (same origin, with its token) can
    ok = {**SAME_ORIGIN, "x-car-token": token, "sec-fetch-site": "same-origin"}
    assert client.post("/api/teleop", headers=ok, json={"drive": True, "speed": 0.2}).status_code == 200
    assert inbox.state().drive_held
    assert client.post("/api/stop", headers=ok).status_code == 200
    assert inbox.state().latched
    assert client.post("/api/resume", headers=ok).status_code == 200
    assert not inbox.state().latched


def test_dns_rebinding_host_names_are_refused_on_loopback() -> None:
    policy = AccessPolicy.resolve("127.0.0.1", "", environ={})
    client, _ = make_app(policy)
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 403
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200
    assert policy.token in client.get("/").text  # the page carries its control token


def test_path_traversal_gets_nothing() -> None:
    client, _ = make_app(AccessPolicy.resolve("127.0.0.1", "", environ={}))
    assert client.get("/static/console.js").status_code == 200
    for path in (
        "/static/../security.py",
        "/static/..%2fsecurity.py",
        "/static/%2e%2e%2f%2e%2e%2fconfig.py",
        "/static/..%5c..%5cconfig.py",
        "/static/static/console.js",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/../../car/config.py",
        "/car/web/security.py",
        "/static/console.js%00.py",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "import" not in response.text and "root:" not in response.text


def test_the_real_server_refuses_without_the_token() -> None:
    policy = required()
    inbox = OperatorInbox()
    app = console_app(LiveHub(threshold=0.5, operator=inbox), inbox, policy)
    with WebServer(app, "127.0.0.1", 0) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server.url + "api/state", timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(server.url + "api/state", headers={"X-Car-Token": TOKEN})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["threshold"] == 0.5
