"""Who may talk to the server: loopback only, unless an access token guards every request.

The server shows job data (costs, prompts' error messages), so binding it to a network address
without a credential would publish that data. With a token configured, every request — pages,
API, static files — must present it, as ``Authorization: Bearer <token>`` or, for a browser,
once as ``?token=<token>`` (which sets an HttpOnly cookie and redirects to the clean URL).
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError
from .problems import problem

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TOKEN_COOKIE = "aura_otel_token"
TOKEN_QUERY = "token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})

#: Headers on every response: no framing, no sniffing, no referrer, and a CSP that allows only
#: this server's own scripts and styles (the pages use no inline script or style at all).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_loopback_host(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, access_token: str | None) -> None:
    """Refuse to serve job data on a network address without an access token."""
    if access_token is not None and not access_token.strip():
        raise ConfigurationError("the access token is empty; give a real secret or none at all")
    if access_token is not None and not all("!" <= ch <= "~" for ch in access_token):
        # A header carries visible ASCII: a space at either end is stripped from what a
        # client sends and other characters arrive re-encoded, so such a token never matches.
        raise ConfigurationError(
            "the access token must be visible ASCII characters only (no spaces, no accents)"
        )
    if not is_loopback_host(host) and not access_token:
        raise ConfigurationError(
            f"refusing to listen on {host!r}: it is reachable from other machines and no access "
            "token is configured. Bind to 127.0.0.1, or set an access token "
            "(--access-token or AURA_OTEL_ACCESS_TOKEN) that every request must present."
        )


class TokenGate:
    """ASGI middleware: every HTTP request must carry the access token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _matches(self, candidate: str | None) -> bool:
        return (
            candidate is not None
            and candidate != ""
            and hmac.compare_digest(candidate.encode(), self._token)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        # A token in the address is traded for the cookie even when the request is signed in
        # already (a bookmarked link): a page is never served with the token in its URL.
        if self._matches(request.query_params.get(TOKEN_QUERY)):
            response = self._login_redirect(request)
        elif self._matches(bearer) or self._matches(request.cookies.get(TOKEN_COOKIE)):
            await self.app(scope, receive, send)
            return
        else:
            response = self._refuse(request)
        await response(scope, receive, send)

    def _login_redirect(self, request: Request) -> Response:
        # Trade the token in the URL for a cookie at once, so it leaves the address bar/history.
        # The path as the client spelled it: decoded, a job id holding "%20" would come back
        # as another job. One leading slash: "//host/..." would leave this server.
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else quote(request.url.path)
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != TOKEN_QUERY]
        target = "/" + path.lstrip("/") + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            TOKEN_COOKIE,
            self._token.decode(),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    @staticmethod
    def _refuse(request: Request) -> Response:
        if request.url.path.startswith("/api/"):
            response: Response = problem(
                request,
                401,
                "This server requires an access token: send 'Authorization: Bearer <token>'.",
            )
        else:
            response = HTMLResponse(
                "<!doctype html><html lang=en><meta charset=utf-8><title>Access token needed"
                "</title><h1>Access token needed</h1><p>This aura-otel server is protected. "
                "Open it with <code>?token=&lt;your access token&gt;</code> once; a cookie "
                "keeps you signed in.</p></html>",
                status_code=401,
            )
        response.headers["WWW-Authenticate"] = 'Bearer realm="aura-otel"'
        return response


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ControlCharacterGate:
    """ASGI middleware: a decoded path holding control characters (``%0A``, ``%00``) is a 400.

    Route patterns do not match across a newline, so without this such a path would fall
    through to a misleading 404 instead of the "unsafe id" answer the spec asks for.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL.search(scope.get("path", "")):
            request = Request(scope)
            if request.url.path.startswith("/api/"):
                response: Response = problem(
                    request,
                    400,
                    "Invalid job id: the path holds "
                    "control characters, which no job id may contain.",
                )
            else:
                response = HTMLResponse(
                    "<!doctype html><html lang=en><meta charset=utf-8>"
                    "<title>Invalid request</title><h1>Invalid request</h1>"
                    "<p>The address holds control characters.</p>"
                    '<p><a href="/jobs">Back to the job list</a></p></html>',
                    status_code=400,
                )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def host_name(host_header: str) -> str:
    """The name part of a Host header (``[::1]:8765`` -> ``::1``, ``a:80`` -> ``a``)."""
    value = host_header.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class LoopbackHostGate:
    """ASGI middleware for a server without a token: only loopback Host headers are served.

    Binding to 127.0.0.1 keeps other machines out, but a web page in the user's own browser
    could still reach it through DNS rebinding (``evil.example`` resolving to 127.0.0.1); such a
    request carries the attacker's host name, so it is refused here.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = Request(scope)
            if not is_loopback_host(host_name(request.headers.get("host", ""))):
                response = problem(
                    request,
                    400,
                    "Invalid Host header: this server answers only "
                    "to localhost / 127.0.0.1 / [::1] unless an access token is set.",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
