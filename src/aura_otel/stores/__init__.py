"""Stores: the jobs folder (default) or PostgreSQL, chosen by a URL.

``open_store("postgresql://user@host/db")`` opens the shared store; anything else (a path,
``file:///srv/jobs`` or nothing) is the jobs folder. ``--store`` on ``collect`` and ``serve``,
``configure(store=...)`` and ``AURA_OTEL_STORE`` all go through here. See docs/stores.md.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError
from .base import JobFilter, JobLister, Store
from .local import LocalStore

__all__ = [
    "JobFilter",
    "JobLister",
    "LocalStore",
    "Store",
    "is_postgres_url",
    "open_store",
    "redact_url",
]

_PG_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(value: str | os.PathLike[str] | None) -> bool:
    return (
        isinstance(value, str) and value.split(":", 1)[0].lower() in _PG_SCHEMES and "://" in value
    )


#: libpq parameters that hold a secret when given in a URL's query string.
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def redact_url(url: str) -> str:
    """``url`` without its password (``user:password@`` or ``?password=``), for logs and
    start-up lines.

    Split as libpq splits it, not as a URL parser would: libpq takes everything before the
    first ``@`` or ``/`` as the user and password, and everything after the first ``?`` as
    parameters, so a password holding ``#``, ``?`` or ``[`` (common in generated ones) is
    still the password, and must be hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    user_info = ""
    stop = next((i for i, ch in enumerate(rest) if ch in "@/"), -1)
    if stop >= 0 and rest[stop] == "/":
        # A password with a '/' not percent-encoded (base64): libpq refuses such a URL, and
        # the error that quotes it must not show the password; an '@' before the parameters
        # still ends a user and password.
        query_start = rest.find("?")
        stop = rest.rfind("@", 0, len(rest) if query_start < 0 else query_start)
    if stop >= 0 and rest[stop] == "@":
        user, colon, _password = rest[:stop].partition(":")
        user_info = f"{user}:***@" if colon else rest[: stop + 1]
        rest = rest[stop + 1 :]
    location, question, query = rest.partition("?")
    if query:
        pairs = [pair.partition("=") for pair in query.split("&")]
        query = "&".join(
            f"{name}={'***' if unquote(name).lower() in _SECRET_PARAMETERS else value}"
            if eq
            else name
            for name, eq, value in pairs
        )
    return f"{scheme}://{user_info}{location}{question}{query}"


def open_store(
    target: str | os.PathLike[str] | Store | None, *, jobs_dir: str | None = None, **options: Any
) -> Store:
    """The store ``target`` names: a Store as is, a ``postgresql://`` URL, a ``file://`` URL or
    a folder path; None means ``jobs_dir`` (the folder). Options go to the store's class
    (``max_file_bytes`` for both; ``migrate``, pool sizes and timeouts for PostgreSQL)."""
    if isinstance(target, Store):
        return target
    if target is None or (isinstance(target, str) and not target.strip()):
        if jobs_dir is None:
            raise ConfigurationError("no store given: pass a postgresql:// URL or a jobs folder")
        target = jobs_dir
    if is_postgres_url(target):
        from .postgres import PostgresStore

        return PostgresStore(str(target), **options)
    text = os.fspath(target)
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() != "file":
            raise ConfigurationError(
                f"unsupported store URL scheme {parts.scheme!r}: use postgresql://user@host/db, "
                "file:///path/to/jobs or a folder path"
            )
        text = unquote(parts.path)
    local = {k: v for k, v in options.items() if k in ("max_file_bytes", "sync")}
    return LocalStore(text, **local)
