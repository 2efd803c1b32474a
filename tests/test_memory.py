"""Returning freed memory to the OS: rate-limited, and a no-op where glibc is absent."""

from __future__ import annotations

import sys

import pytest

from aura_otel._memory import MemoryTrimmer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trims_at_most_once_per_interval_unless_forced() -> None:
    trimmer = MemoryTrimmer(interval=3600)
    assert trimmer.available
    assert trimmer.maybe_trim() is False  # the interval starts at construction
    assert trimmer.maybe_trim(force=True) is True
    assert trimmer.maybe_trim() is False
    assert MemoryTrimmer(interval=0).maybe_trim() is True


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from aura_otel import _memory

    monkeypatch.setattr(_memory.sys, "platform", "darwin")
    trimmer = MemoryTrimmer(interval=0)
    assert not trimmer.available
    assert trimmer.maybe_trim(force=True) is False
