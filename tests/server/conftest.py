"""Fixtures of the server tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", params=["folder", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """A module's tests run on the jobs folder and on PostgreSQL: the server must not tell
    them apart."""
    return str(request.param)
