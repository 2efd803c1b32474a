"""``aura-otel serve``: the read-only Run Details web page and HTTP API over a jobs folder."""

from __future__ import annotations

import logging
from pathlib import Path

from ..stores import Store
from .app import create_app
from .security import check_bind, is_loopback_host

__all__ = ["create_app", "is_loopback_host", "run"]

logger = logging.getLogger("aura_otel.server")


def run(
    *,
    jobs_dir: str | Path | Store,
    host: str = "127.0.0.1",
    port: int = 8765,
    jaeger_url: str | None = None,
    trace_url: str | None = None,
    access_token: str | None = None,
    max_file_bytes: int | None = None,
    abandoned_after: float | None = None,
) -> None:
    """Serve ``jobs_dir`` (a jobs folder, a ``postgresql://`` URL or a Store) until interrupted.

    Raises ConfigurationError before binding anything when ``host`` is reachable from other
    machines and no ``access_token`` is configured.
    """
    check_bind(host, access_token)
    app = create_app(
        jobs_dir,
        jaeger_url=jaeger_url,
        trace_url=trace_url,
        access_token=access_token,
        max_file_bytes=max_file_bytes,
        abandoned_after=abandoned_after,
    )
    import uvicorn  # imported late: only serving needs it

    shown = f"[{host}]" if ":" in host else host
    where = getattr(app.state, "store_description", "")
    print(f"aura-otel: serving {where} at http://{shown}:{port}/jobs", flush=True)
    uvicorn.run(
        app, host=host, port=port, log_level="warning", server_header=False, proxy_headers=False
    )
