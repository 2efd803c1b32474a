"""Give freed memory back to the operating system, on glibc.

A long-running exporter allocates and frees a job's worth of objects on several threads,
job after job, and glibc keeps what is freed in per-thread arenas rather than giving it back:
after a burst of jobs the process stays at its peak size. ``malloc_trim(0)`` returns the free
pages; it is called from the writer thread, a few times a minute at most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import time
from collections.abc import Callable

TRIM_INTERVAL_SECONDS = 10.0


def _load_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim  # glibc only: musl and others have no such function
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class MemoryTrimmer:
    """Calls ``malloc_trim`` when asked, at most once per interval; a no-op off glibc."""

    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS) -> None:
        self._trim = _load_malloc_trim()
        self._interval = interval
        self._last = time.monotonic()

    @property
    def available(self) -> bool:
        return self._trim is not None

    def maybe_trim(self, force: bool = False) -> bool:
        """Trim if the interval has passed (or ``force``); True when it trimmed."""
        if self._trim is None:
            return False
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return False
        self._last = now
        self._trim(0)  # ctypes releases the GIL for the call
        return True
