"""Who may see the car and who may command it: one ASGI middleware in front of every route and socket.

The model (README, "Web console, teleop and labelling"):

- **Where it listens.** 127.0.0.1 by default. Any other address needs a token (`web.token`, or the
  environment's `CAR_WEB_TOKEN`; `auto` makes a random one and prints it); without one it refuses to start.
- **Every request and socket** must then carry the token: the `X-Car-Token` header, `Authorization:
  Bearer`, or the `car_token` cookie that opening `/?token=...` once sets (HttpOnly, SameSite=Strict).
  The comparison is constant-time (`hmac.compare_digest`). Missing or wrong: HTTP 401, or the socket is
  closed before it opens.
- **Bound to loopback** the Host header must name a loopback host, so a web page that re-binds its own
  DNS name to 127.0.0.1 cannot read the page (DNS rebinding).
- **Controls** are POST requests or socket messages, never GET. A POST needs the `X-Car-Token` header
  (always; on loopback without a configured token it is a random per-process value the page carries), and
  a browser's `Origin` / `Sec-Fetch-Site` must say same-origin; a socket's `Origin` must match its Host. A
  page on another site can neither read the token nor send that header without a CORS preflight, which
  this server never answers: a cross-origin request cannot stop or drive the car.
- **Files**: only the package's own page and assets, looked up by exact name in a fixed table; nothing is
  read from a path in the request.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from car.errors import CarError

TOKEN_ENV = "CAR_WEB_TOKEN"
TOKEN_HEADER = "x-car-token"
TOKEN_COOKIE = "car_token"
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_listen(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[V6]:PORT` → (host, port); a bad value is a one-line CarError."""
    text = str(value).strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    host = host.strip("[]") or default_host
    try:
        port = int(port_text)
    except ValueError:
        raise CarError(f"--web {value!r}: expected [HOST:]PORT, e.g. 8080 or 0.0.0.0:8080") from None
    if not 0 <= port <= 65535:
        raise CarError(f"--web {value!r}: port {port} is not in 0..65535")
    return host, port


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """`token` is always set (controls need it in a header); `required` says every request must carry it."""

    token: str
    required: bool
    loopback: bool
    generated: bool  # made up here (print it so the operator can log in)

    @classmethod
    def resolve(
        cls, host: str, configured: str, environ: MutableMapping[str, str] | None = None
    ) -> AccessPolicy:
        """From the listen host, `web.token` and `CAR_WEB_TOKEN`; refuses a public address without a token."""
        env = os.environ if environ is None else environ
        token = env.get(TOKEN_ENV, "") or configured
        loopback = is_loopback(host)
        if token == "auto":
            return cls(secrets.token_urlsafe(24), True, loopback, True)
        if token:
            if len(token) < MIN_TOKEN_CHARS:
                raise CarError(
                    f"web token of {len(token)} characters is too short; use at least {MIN_TOKEN_CHARS} "
                    "(or web.token=auto for a random one)"
                )
            return cls(token, True, loopback, False)
        if not loopback:
            raise CarError(
                f"the web console on {host} needs a token: set {TOKEN_ENV}, or --set web.token=auto for a "
                "random one printed at start (only 127.0.0.1 may go without)"
            )
        return cls(secrets.token_urlsafe(24), False, loopback, True)

    def matches(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self.token.encode("utf-8"))


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_token(scope: Scope, headers: dict[str, str]) -> str | None:
    """The token a request carries: header, bearer, cookie, or (page loads only) `?token=`."""
    if TOKEN_HEADER in headers:
        return headers[TOKEN_HEADER]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "cookie" in headers:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:
            cookie = SimpleCookie()
        if TOKEN_COOKIE in cookie:
            return cookie[TOKEN_COOKIE].value
    if scope["type"] == "http" and scope.get("method") in SAFE_METHODS:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


def same_origin(headers: dict[str, str], scheme: str) -> bool:
    """A browser's request came from this server's own page (absent headers: not a browser, allowed)."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    scheme = "https" if scheme in ("https", "wss") else "http"
    return origin == f"{scheme}://{host}"


def host_allowed(headers: dict[str, str], policy: AccessPolicy) -> bool:
    if not policy.loopback:
        return True
    host = headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name)


def refusal(scope: Scope, headers: dict[str, str], policy: AccessPolicy) -> tuple[int, str] | None:
    """Why this request or socket is refused (status, text), or None to let it through."""
    if not host_allowed(headers, policy):
        return 403, "host not allowed (this console answers to 127.0.0.1 / localhost only)"
    if policy.required and not policy.matches(presented_token(scope, headers)):
        return 401, "missing or wrong token"
    state_changing = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
    if state_changing and not same_origin(headers, str(scope.get("scheme", "http"))):
        return 403, "cross-origin request refused"
    if scope["type"] == "http" and state_changing and not policy.matches(headers.get(TOKEN_HEADER)):
        return 403, f"controls need the {TOKEN_HEADER} header"
    return None


class Guard:
    """ASGI middleware applying `refusal` to every HTTP request and WebSocket before any route sees it."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refused = refusal(scope, headers, self.policy)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, text = refused
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008, "reason": text})
            return
        body = text.encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
