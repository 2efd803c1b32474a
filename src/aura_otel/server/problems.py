"""Problem objects (RFC 9457), spelled the way the old ASP.NET backend spelled them.

The legacy front end reads ``title``, ``status``, ``detail`` and ``correlationId``; the 404
adds ``guidance``. A 500 never carries a stack trace, a file path or an exception message: the
details go to the server log under the same correlation id, so an operator can find them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
CORRELATION_HEADER = "X-Correlation-Id"

_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    405: "https://tools.ietf.org/html/rfc9110#section-15.5.6",
    422: "https://tools.ietf.org/html/rfc9110#section-15.5.21",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
}
TITLES = {
    400: "Invalid Request",
    401: "Unauthorized",
    404: "Telemetry Not Found",
    405: "Method Not Allowed",
    422: "Telemetry Too Large",
    500: "Internal Server Error",
}
NOT_FOUND_GUIDANCE = (
    "Check the job id. A job's telemetry.json appears when its first stage ends; "
    "GET /api/jobs lists the jobs that have one."
)

# A caller's correlation id is echoed back only if it is short and plain (it ends up in logs).
_SAFE_CORRELATION = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def correlation_id(request: Request) -> str:
    """The request's correlation id: the caller's ``X-Correlation-Id`` if sane, else a new one."""
    cached = request.scope.get("aura_otel.correlation_id")
    if isinstance(cached, str):
        return cached
    given = request.headers.get(CORRELATION_HEADER, "")
    value = given if _SAFE_CORRELATION.match(given) else str(uuid.uuid4())
    request.scope["aura_otel.correlation_id"] = value
    return value


def problem(
    request: Request, status: int, detail: str, *, title: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPES.get(status, "about:blank"),
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "correlationId": correlation_id(request),
    }
    body.update(extra)
    return JSONResponse(
        body,
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={CORRELATION_HEADER: body["correlationId"]},
    )
