"""Context propagation into ``Thread`` and ``ThreadPoolExecutor`` work.

OpenTelemetry's context is a contextvar, which new threads do not inherit, so a stage run
on a pool thread would start a new trace outside its job. The contrib package
``opentelemetry-instrumentation-threading`` does this too, but it is released in lockstep
with the SDK and pinning it made the package uninstallable whenever the two release trains
drifted apart; the few lines here have no such coupling.

Only OpenTelemetry's context travels (not every contextvar): that is the behaviour the
instrumentation had, and it leaves other libraries' thread-local assumptions alone.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from opentelemetry import context

_lock = threading.Lock()
_installed = False


def _bound(captured: context.Context, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = context.attach(captured)
        try:
            return fn(*args, **kwargs)
        finally:
            context.detach(token)

    return run


def install() -> None:
    """Patch ``Thread.start`` and ``ThreadPoolExecutor.submit`` once per process."""
    global _installed
    with _lock:
        if _installed:
            return
        original_start = threading.Thread.start
        original_submit: Any = ThreadPoolExecutor.submit

        @functools.wraps(original_start)
        def start(self: threading.Thread) -> None:
            # An instance attribute shadows ``run`` of any subclass as well, so threads that
            # override ``run`` instead of passing ``target`` are covered too.
            self.run = _bound(context.get_current(), self.run)  # type: ignore[method-assign]
            original_start(self)

        @functools.wraps(original_submit)
        def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            return original_submit(self, _bound(context.get_current(), fn), *args, **kwargs)

        threading.Thread.start = start  # type: ignore[method-assign]
        ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]
        _installed = True
